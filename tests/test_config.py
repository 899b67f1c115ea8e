"""Config validation: bad values are refused with one message naming the key."""

import copy
from pathlib import Path

import pytest
import yaml

from unlearnbench.config import ConfigError, grid, method_runs, oracle_shards, run_id, validate

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "workflow/schemas/config.schema.yaml"


@pytest.fixture
def default_config():
    return yaml.safe_load((REPO / "config/config.yaml").read_text())


@pytest.mark.parametrize("config_file", ["config/config.yaml", ".test/config/config.yaml"])
def test_shipped_configs_are_valid(config_file):
    validate(yaml.safe_load((REPO / config_file).read_text()), SCHEMA)


@pytest.mark.parametrize(
    "edit, key",
    [
        (lambda c: c.update(n_models=-5), "n_models"),
        (lambda c: c["methods"].update(teleport=None), "methods.teleport"),
        (lambda c: c["forget_sets"][0].update(size=10**6), "forget_sets.0.size"),
        (lambda c: c.update(dataset="imagenet"), "dataset"),
        (lambda c: c.update(klom={"direction": "sideways"}), "klom.direction"),
        (lambda c: c.update(surprise=1), "surprise"),
        (lambda c: c["train"].update(lr=-1), "train.lr"),
    ],
)
def test_bad_values_name_the_key(default_config, edit, key):
    config = copy.deepcopy(default_config)
    edit(config)
    with pytest.raises(ConfigError) as err:
        validate(config, SCHEMA)
    assert key in str(err.value)


def test_defaults_are_filled(default_config):
    config = copy.deepcopy(default_config)
    del config["klom"]
    validate(config, SCHEMA)
    assert config["klom"]["bins"] == 20 and config["klom"]["direction"] == "unlearned-oracle"


def test_grid_is_the_cartesian_product_and_run_ids_name_every_key():
    entry = {"lr": [0.1, 0.01], "ascent_epochs": [3, 5], "forget_batch_size": [32, 64], "epochs": [5, 10]}
    points = list(grid(entry))
    assert len(points) == 8
    ids = {run_id(p) for p in points}
    assert len(ids) == 8  # forget_batch_size is part of the id: no two grid points share results
    assert all("forget_batch_size~" in i and "lr~" in i and "ascent_epochs~" in i for i in ids)
    assert all("epochs~5" not in i.replace("ascent_epochs", "") for i in ids)  # snapshots are not grid axes
    assert run_id({}) == "default"


def test_method_runs_and_shards(default_config):
    config = validate(copy.deepcopy(default_config), SCHEMA)
    assert method_runs(config["methods"])["do_nothing"] == {"default": {}}
    config.update(n_models=10, n_holdout_oracles=5, models_per_job=4, selection={"n_models": 6})
    # scored [0, 10), held-out [10, 15), selection [15, 21): no shard mixes two families
    assert oracle_shards(config) == [(0, 4), (4, 8), (8, 10), (10, 14), (14, 15), (15, 19), (19, 21)]


def test_key_order_does_not_matter(default_config):
    """Snakemake compares params as text: a reordered config must give identical params."""
    reordered = yaml.safe_load(yaml.safe_dump(default_config, sort_keys=True))
    reordered["train"] = dict(reversed(list(reordered["train"].items())))
    a, b = validate(copy.deepcopy(default_config), SCHEMA), validate(reordered, SCHEMA)
    assert repr(a) == repr(b)
