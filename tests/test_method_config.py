"""Config of the field's methods: schema entries that match the build signatures, one-candidate entries in
the default run, and U-LiRA open to plug-ins and every finetune method without per-request inputs."""

import copy
import inspect
from pathlib import Path

import pytest
import yaml
from jsonschema import Draft202012Validator

from unlearnbench.config import ConfigError, load_schema, validate
from unlearnbench.plan import SNAPSHOT_KEY, grid
from unlearnbench.methods import METHODS, load_build, lookup

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "workflow/schemas/config.schema.yaml"
FIELD = ["neggrad_plus", "random_labels", "salun", "l1_sparse", "ssd", "fisher", "bad_teacher", "cf_k", "eu_k"]
FINETUNE = [name for name, entry in METHODS.items() if entry.kind == "finetune"]  # every built-in one
SGD_KEYS = {"momentum", "weight_decay", "nesterov"}


@pytest.fixture
def default_config():
    return yaml.safe_load((REPO / "config/config.yaml").read_text())


@pytest.mark.parametrize("name", FINETUNE)
def test_schema_keys_are_the_build_signature(name):
    """The schema, as loaded, takes exactly the keys of the imported build (the syntax-tree reading of
    unlearnbench.method_schema agrees with Python's own), and each default is a value the schema accepts."""
    schema = load_schema(SCHEMA)
    entry = schema["properties"]["methods"]["properties"][name]
    keys = set(entry["properties"]) - {SNAPSHOT_KEY}
    signature = inspect.signature(load_build(lookup(name)))
    params = {k: p for k, p in signature.parameters.items() if k != "ctx" and p.kind != p.VAR_KEYWORD}
    takes_sgd_keys = any(p.kind == p.VAR_KEYWORD for p in signature.parameters.values())
    assert keys == set(params) | (SGD_KEYS if takes_sgd_keys else set())
    required = {k for k, p in params.items() if p.default is inspect.Parameter.empty}
    assert set(entry["required"]) == required | {SNAPSHOT_KEY}
    for k, p in params.items():
        if p.default is not inspect.Parameter.empty:
            Draft202012Validator({"$defs": schema["$defs"], **entry["properties"][k]}).validate(p.default)


@pytest.mark.parametrize("name", FIELD)
def test_the_default_run_gives_each_field_method_one_candidate(default_config, name):
    entry = validate(copy.deepcopy(default_config), SCHEMA)["methods"][name]
    assert len(list(grid(entry))) == 1 and len(entry[SNAPSHOT_KEY]) == 1


def test_cifar10_runs_every_field_method():
    config = validate(yaml.safe_load((REPO / "config/cifar10.yaml").read_text()), SCHEMA)
    assert set(FIELD) <= set(config["methods"])


def test_the_methods_scenario_gives_every_field_method_a_grid():
    config = validate(yaml.safe_load((REPO / "config/methods.yaml").read_text()), SCHEMA)
    for name in FIELD:
        entry = config["methods"][name]
        assert len(list(grid(entry))) * len(entry[SNAPSHOT_KEY]) > 1, name


def test_ulira_runs_plugins_and_the_field_methods(default_config):
    config = copy.deepcopy(default_config)
    config["plugins"] = {"mine": "my_methods:capped_ascent"}
    config["ulira"]["methods"] = {
        "mine": {"lr": [0.05], "epochs": [1]},
        "salun": {"lr": 0.05, "epochs": [2]},
        "ssd": {"epochs": [1]},
        "ascent_descent": {"lr": 0.05, "ascent_epochs": 1, "epochs": [2]},
    }
    validate(config, SCHEMA)
    config["ulira"]["methods"]["mine"] = {"lr": [0.05]}
    with pytest.raises(ConfigError, match="config key ulira.methods.mine.epochs"):
        validate(config, SCHEMA)
    config["ulira"]["methods"]["mine"] = {"lr": [-1.0], "epochs": [1]}
    with pytest.raises(ConfigError, match="config key ulira.methods.mine.lr"):
        validate(config, SCHEMA)


@pytest.mark.parametrize("name, entry", [
    ("oracle_matching", {"lr": 0.01, "epochs": [1]}),
    ("dm_matching", {"lr": 0.01, "epochs": [1]}),
    ("dm_direct", None),
    ("retrain", {"budget": 0.1}),
    ("unknown_method", {"epochs": [1]}),
    ("ssd", {"epochs": [1], "alpha": -1.0}),
])
def test_ulira_refuses_methods_that_need_inputs_per_request(default_config, name, entry):
    config = copy.deepcopy(default_config)
    config["ulira"]["methods"] = {name: entry}
    with pytest.raises(ConfigError, match=f"config key ulira.methods.{name}"):
        validate(config, SCHEMA)
