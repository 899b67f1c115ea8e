"""The registries drive everything about a method, data set or model: config checks, tables, figures and U-LiRA
ask an entry (its role, needs, U-LiRA mode, build signature), never a name; the docs list every name."""

import copy
import re
from pathlib import Path

import pandas as pd
import pytest
import yaml

from unlearnbench import methods, plots, summary_md
from unlearnbench.config import ConfigError, load_schema, validate
from unlearnbench.data import DATASETS, DatasetSpec
from unlearnbench.method_schema import SGD_KEYS, method_schema
from unlearnbench.methods import METHODS, Registered
from unlearnbench.models import MODELS, ModelSpec
from unlearnbench.plan_size import scores_holdout_oracles

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "workflow/schemas/config.schema.yaml"


@pytest.fixture
def default_config():
    return yaml.safe_load((REPO / "config/config.yaml").read_text())


@pytest.fixture
def renamed(monkeypatch):
    """The reference methods registered again under other names (as a package adding its own would)."""
    patched = {
        **METHODS,
        "keep_all": Registered("unlearnbench.methods.do_nothing:build", "margins", ("base_margins",), "no_unlearning",
                               ulira="pool_margins"),
        "perfect": Registered("unlearnbench.methods.oracle:build", "margins", ("holdout_margins",), "oracle",
                              ulira="retrain"),
    }
    monkeypatch.setattr(methods, "METHODS", patched)
    return patched


# --- one convention ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("table, kind", [(METHODS, Registered), (DATASETS, DatasetSpec), (MODELS, ModelSpec)])
def test_every_registry_is_one_table_of_one_kind_of_entry_naming_its_code(table, kind):
    from unlearnbench.registry import load

    for name, entry in table.items():
        assert isinstance(entry, kind), name
        assert re.fullmatch(r"unlearnbench(\.\w+)+:\w+", entry.target), name
        assert callable(load(entry.target)), name


def test_unknown_names_are_refused_the_same_way():
    from unlearnbench.data import get_spec
    from unlearnbench.models import build_model

    for call, what in ((lambda: methods.lookup("nope"), "method"), (lambda: get_spec("nope"), "dataset"),
                       (lambda: build_model("nope", 10, 1), "model")):
        with pytest.raises(ValueError, match=f"unknown {what} 'nope'"):
            call()


def test_the_schema_takes_data_set_and_model_names_from_their_registries(monkeypatch, default_config):
    import unlearnbench.config as config_module

    monkeypatch.setitem(config_module.DATASETS, "digits_copy", DATASETS["digits"])
    config = validate({**copy.deepcopy(default_config), "dataset": "digits_copy"}, SCHEMA)
    assert config["dataset"] == "digits_copy"
    with pytest.raises(ConfigError, match="config key model"):
        validate({**copy.deepcopy(default_config), "model": "nope"}, SCHEMA)


def test_the_training_fingerprint_covers_every_registered_model_and_data_set(tmp_path, monkeypatch):
    """Model and data-set code is found through the registries' targets: editing any of them reruns training."""
    from unlearnbench.fingerprint import clear_cache, closure

    monkeypatch.setenv("UNLEARNBENCH_CACHE_DIR", str(tmp_path))
    clear_cache()
    for script in ("train_base.py", "train_oracle.py", "train_pool.py"):
        modules = closure(REPO / "workflow/scripts" / script)
        for entry in [*MODELS.values(), *DATASETS.values()]:
            module, _, name = entry.target.partition(":")
            assert module in modules and name in modules[module], (script, entry.target)


# --- roles, needs and U-LiRA from the registry --------------------------------------------------------------------

def test_a_renamed_upper_reference_is_shown_as_one_by_tables_and_figures(renamed):
    summary = pd.DataFrame({"method": ["salun", "perfect", "keep_all"]})  # a table without a role column
    assert summary_md.roles(summary) == {"salun": "unlearning", "perfect": "oracle", "keep_all": "no_unlearning"}
    assert summary_md.method_order(["salun", "perfect", "keep_all"]) == ["keep_all", "perfect", "salun"]
    colours = plots.method_colours(["salun", "perfect", "keep_all"])
    assert colours["keep_all"] == plots.ROLE_COLOURS["no_unlearning"]
    assert colours["perfect"] == plots.ROLE_COLOURS["oracle"]
    assert colours["salun"] not in plots.ROLE_COLOURS.values()


def test_config_checks_read_needs_not_names(renamed, default_config):
    config = copy.deepcopy(default_config)
    config["methods"] = {"keep_all": None, "perfect": None}
    config["n_holdout_oracles"] = 1
    with pytest.raises(ConfigError, match="config key n_holdout_oracles: the perfect method needs the held-out oracles. margins"):
        validate(copy.deepcopy(config), SCHEMA)
    config["n_holdout_oracles"] = 2
    checked = validate(config, SCHEMA)
    assert scores_holdout_oracles(checked, "perfect") and not scores_holdout_oracles(checked, "keep_all")


def test_ulira_runs_what_the_registry_says(renamed, default_config):
    config = copy.deepcopy(default_config)
    config["ulira"]["methods"] = {"keep_all": None, "perfect": None, "salun": {"lr": 0.05, "epochs": [1]}}
    validate(copy.deepcopy(config), SCHEMA)
    config["ulira"]["methods"] = {"dm_direct": None}
    with pytest.raises(ConfigError, match="config key ulira.methods.dm_direct: needs .* not available for U-LiRA"):
        validate(config, SCHEMA)


def test_ulira_mode_defaults_from_kind_and_needs():
    assert Registered("m:f").ulira == "unlearn"
    assert Registered("m:f", needs=("matching_oracles",)).ulira is None
    assert Registered("m:f", "margins").ulira is None
    assert {n: e.ulira for n, e in METHODS.items() if e.ulira not in ("unlearn", None)} == \
        {"do_nothing": "pool_margins", "oracle": "retrain"}


# --- hyperparameters from the build signature ---------------------------------------------------------------------

def test_a_new_method_needs_no_schema_edit(tmp_path, monkeypatch, default_config):
    (tmp_path / "extra_methods.py").write_text(
        '"""Shrink: scale the weights down. (A throwaway method of this test.)"""\n'
        "from unlearnbench.methods.hyperparameters import Fraction\n\n\n"
        "def build(ctx, lr: float, keep: Fraction = 0.5, batch_size: int = 64, **optimiser):\n"
        "    raise NotImplementedError\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(methods, "METHODS", {**METHODS, "shrink": Registered("extra_methods:build")})
    config = copy.deepcopy(default_config)
    config["methods"] = {"shrink": {"lr": 0.1, "keep": [0.25, 0.5], "momentum": 0.9, "epochs": [1]}}
    assert validate(copy.deepcopy(config), SCHEMA)["methods"]["shrink"]["keep"] == [0.25, 0.5]
    for key, value in (("keep", 1.5), ("lr", 0.0), ("other", 1)):
        bad = copy.deepcopy(config)
        bad["methods"]["shrink"][key] = value
        with pytest.raises(ConfigError, match=f"config key methods.shrink"):
            validate(bad, SCHEMA)
    del config["methods"]["shrink"]["lr"]
    with pytest.raises(ConfigError, match="'lr' is a required property"):
        validate(config, SCHEMA)


def test_an_unannotated_hyperparameter_is_refused(tmp_path, monkeypatch):
    (tmp_path / "loose_methods.py").write_text("def build(ctx, lr: float, strength=3):\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ValueError, match="hyperparameter 'strength': annotate it"):
        method_schema("loose_methods:build", "finetune")


def test_the_loaded_schema_is_each_build_signature():
    schema = load_schema(SCHEMA)["properties"]["methods"]["properties"]
    assert list(schema) == list(METHODS)
    ssd = schema["ssd"]
    assert ssd["required"] == ["epochs"]
    assert ssd["properties"]["alpha"] == {"$ref": "#/$defs/positive_numbers"}
    assert schema["retrain"]["required"] == ["budget"] and "recipe" not in schema["retrain"]["properties"]
    assert set(SGD_KEYS) <= set(schema["salun"]["properties"])


# --- the docs list every registered name (the methods tables are generated: test_method_docs.py) ---------------

def _table_rows(text: str, heading: str) -> list[str]:
    section = text.split(heading, 1)[1]
    rows = []
    for line in section.split("\n")[1:]:
        if line.startswith("|"):
            rows.append(line)
        elif rows:
            break
    return [row for row in rows if not row.startswith("|---")]


def test_the_readme_lists_every_method_data_set_and_model():
    methods_table = "\n".join(_table_rows((REPO / "README.md").read_text(), "| name | role | what it does |"))
    assert [m for m in METHODS if f"`{m}`" not in methods_table] == []
    config_readme = (REPO / "config/README.md").read_text()
    rows = {row.split("|")[1].strip(): row for row in _table_rows(config_readme, "| key | default | meaning |")}
    assert [d for d in DATASETS if f"`{d}`" not in rows["`dataset`"]] == []
    assert [m for m in MODELS if f"`{m}`" not in rows["`model`"]] == []
