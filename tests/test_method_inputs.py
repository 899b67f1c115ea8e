"""A method's extra inputs come from one table of input kinds (unlearnbench.method_inputs): the unlearn rule's
files, the stage's loading, the config checks and the method facts ask it, never a need's name. A new kind of
input is one entry there, a method module and its registry line."""

import copy
from pathlib import Path

import numpy as np
import pytest
import yaml

from unlearnbench import method_inputs, methods, plan
from unlearnbench.config import ConfigError, validate
from unlearnbench.data import load_dataset, save_splits
from unlearnbench.layout import Layout
from unlearnbench.method_inputs import INPUTS, MethodInput, job_inputs, load_all
from unlearnbench.methods import METHODS, Registered, lookup
from unlearnbench.stack import ModelStack
from unlearnbench.stages.unlearning import unlearn
from unlearnbench.storage import load_arrays, save_npy

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "workflow/schemas/config.schema.yaml"
PATHS = Layout("digits")


@pytest.fixture
def default_config():
    return validate(yaml.safe_load((REPO / "config/config.yaml").read_text()), SCHEMA)


def test_every_need_of_a_registered_method_is_a_known_kind_of_input():
    assert {need for entry in METHODS.values() for need in entry.needs} <= set(INPUTS)
    with pytest.raises(ValueError, match="unknown method input 'no_such_input'"):
        method_inputs.kind("no_such_input")


def test_a_jobs_files_are_the_base_models_and_each_need(default_config):
    config = default_config
    held_out = plan.holdout_oracle_shards(config)
    oracle_family = "oracle/forget_set~2"
    assert job_inputs(lookup("gradient_descent"), PATHS, config, "2", 1) == {
        "weights": PATHS.weights("base", 1), "splits": PATHS.splits, "forget_set": PATHS.forget_set("2")}
    assert job_inputs(lookup("oracle_matching"), PATHS, config, "2", 0)["matching_oracles"] == [
        PATHS.weights(oracle_family, s) for s in held_out]
    assert job_inputs(lookup("oracle"), PATHS, config, "2", 0) == {
        "holdout_margins": PATHS.margins(oracle_family, held_out[0])}  # a margins method reads no weights
    assert job_inputs(lookup("dm_direct"), PATHS, config, "2", 0) == {
        "base_margins": PATHS.margins("base", 0), "datamodel_effect": PATHS.datamodel_effect("2")}


def test_a_job_whose_files_and_needs_disagree_is_refused_naming_both():
    with pytest.raises(ValueError, match=r"the method needs \['base_margins'\]; the job got \['holdout_margins'\]"):
        load_all(("base_margins",), {"holdout_margins": "x.npz"})


def test_the_config_checks_and_method_facts_ask_the_kind_not_its_name(monkeypatch, default_config):
    monkeypatch.setitem(INPUTS, "matching_oracles", MethodInput(
        "three held-out oracles", INPUTS["matching_oracles"].files, INPUTS["matching_oracles"].load,
        held_out_oracles=3, uses_pool=True))
    config = copy.deepcopy(default_config)
    config["n_holdout_oracles"] = 2
    with pytest.raises(ConfigError, match="config key n_holdout_oracles: the oracle_matching method needs three "
                                          "held-out oracles: at least 3 held-out oracles, got 2"):
        validate(config, SCHEMA)
    assert method_inputs.uses_pool(lookup("oracle_matching").needs)
    assert not plan.holds_oracles(default_config, "oracle_matching") and plan.holds_oracles(default_config, "oracle")


# a throwaway kind of input and a finetune method that needs it: what adding one takes
def load_scale(path, device=None):
    return float(np.load(path, allow_pickle=False))


def scaled_descent(ctx, lr: float, batch_size: int = 32):
    from unlearnbench.methods import gradient_descent

    return gradient_descent.build(ctx, lr=lr * ctx.needed["lr_scale"], batch_size=batch_size)


def test_a_new_kind_of_input_is_one_entry_and_a_method_naming_it(tmp_path, monkeypatch, default_config):
    monkeypatch.setitem(INPUTS, "lr_scale", MethodInput(
        "a learning-rate scale per forget set", lambda paths, config, forget_set, shard: f"scale_{forget_set}.npy",
        f"{__name__}:load_scale"))
    monkeypatch.setattr(methods, "METHODS", {**METHODS, "scaled": Registered(f"{__name__}:scaled_descent",
                                                                             needs=("lr_scale",))})
    config = copy.deepcopy(default_config)
    config["methods"]["scaled"] = {"lr": 0.05, "epochs": [1]}
    config = validate(config, SCHEMA)
    entry = lookup("scaled")
    assert entry.ulira is None  # it needs an input per request, which no U-LiRA job makes
    files = job_inputs(entry, PATHS, config, "1", 0)
    assert files["lr_scale"] == "scale_1.npy"

    splits = load_dataset("digits")
    save_splits(tmp_path / "splits.npz", splits)
    save_npy(tmp_path / "forget.npy", np.arange(10))
    ModelStack.initialise("digits_cnn", 10, 1, [1, 2], [0, 1]).save(tmp_path / "base.safetensors")
    common = dict(epochs=[1], seeds=[7, 8], plugins={}, device="cpu", models_per_batch=None, compile=False,
                  weights=str(tmp_path / "base.safetensors"), splits=str(tmp_path / "splits.npz"),
                  forget_set=str(tmp_path / "forget.npy"))
    np.save(tmp_path / "half.npy", np.float64(0.5))
    unlearn(str(tmp_path / "scaled.npz"), "scaled", {"lr": 0.05, "batch_size": 32},
            identity={"method": "scaled", "run": "default"}, lr_scale=str(tmp_path / "half.npy"), **common)
    unlearn(str(tmp_path / "plain.npz"), "gradient_descent", {"lr": 0.025, "batch_size": 32},
            identity={"method": "gradient_descent", "run": "default"}, **common)
    scaled, plain = load_arrays(tmp_path / "scaled.npz"), load_arrays(tmp_path / "plain.npz")
    np.testing.assert_array_equal(scaled["margins"], plain["margins"])  # the input reached the method
    with pytest.raises(ValueError, match="the method needs"):  # and the job cannot leave it out
        unlearn(str(tmp_path / "missing.npz"), "scaled", {"lr": 0.05, "batch_size": 32},
                identity={"method": "scaled", "run": "default"}, **common)
