"""Config validation: bad values are refused with one message naming the key."""

import copy
import time
from pathlib import Path

import pytest
import yaml

from unlearnbench.config import ConfigError, validate
from unlearnbench.plan import forget_set_seed, grid, method_runs, oracle_shards, run_id
from unlearnbench.forget_sets import random_forget_set

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


# every refusal: one ConfigError naming the key -------------------------------------------------------------


def refused(config, key, **options):
    with pytest.raises(ConfigError) as err:
        validate(config, SCHEMA, **options)
    assert f"config key {key}" in str(err.value), str(err.value)
    return str(err.value)


LR_METHODS = ["gradient_ascent", "gradient_descent", "ascent_descent", "scrub", "oracle_matching", "dm_matching"]


@pytest.mark.parametrize("method", LR_METHODS)
@pytest.mark.parametrize("lr", [-0.5, 0, [0.01, -0.01]])
def test_learning_rates_must_be_positive(default_config, method, lr):
    config = copy.deepcopy(default_config)
    config["methods"][method]["lr"] = lr
    refused(config, f"methods.{method}.lr")


def test_a_plugin_or_ulira_learning_rate_must_be_positive(default_config):
    config = copy.deepcopy(default_config)
    config["plugins"] = {"mine": "my_module:build"}
    config["methods"]["mine"] = {"lr": [0.1, -0.5], "epochs": [1]}
    refused(config, "methods.mine.lr")
    config = copy.deepcopy(default_config)
    config["ulira"]["methods"]["gradient_ascent"]["lr"] = [-0.05]
    refused(config, "ulira.methods.gradient_ascent.lr")


@pytest.mark.parametrize(
    "edit, key",
    [
        (lambda c: c["methods"]["gradient_ascent"].update(lr=[1, 1.0]), "methods.gradient_ascent.lr"),
        (lambda c: c["methods"]["scrub"].update(gamma=[0.5, 0.50]), "methods.scrub.gamma"),
        (lambda c: c["methods"]["gradient_ascent"].update(lr=[float("nan")]), "methods.gradient_ascent.lr"),
        (lambda c: c["methods"]["gradient_ascent"].update(lr=[float("inf")]), "methods.gradient_ascent.lr"),
        (lambda c: c["ulira"]["methods"]["gradient_ascent"].update(lr=[0.5, 0.5]), "ulira.methods.gradient_ascent.lr"),
    ],
)
def test_duplicate_or_non_finite_grid_points_are_refused(default_config, edit, key):
    config = copy.deepcopy(default_config)
    edit(config)
    refused(config, key)


def plugin_config(default_config, **axes):
    config = copy.deepcopy(default_config)
    config["plugins"] = {"mine": "my_module:build"}
    config["methods"]["mine"] = {"epochs": [1], **axes}
    return config


@pytest.mark.parametrize(
    "axes, key, needle",
    [
        ({"width": [1, "1"]}, "methods.mine", "share the run id"),
        ({"width": [True, "True"]}, "methods.mine", "share the run id"),
        ({"style": ["a/b"]}, "methods.mine.style", "name result folders"),
        ({"style": ["two words"]}, "methods.mine.style", "name result folders"),
        ({"style": ["../up"]}, "methods.mine.style", "name result folders"),
        ({"style": [[1, 2]]}, "methods.mine.style", "name result folders"),
        ({"style": ["x" * 300]}, "methods.mine", "longer than"),
        ({"bad key": [1]}, "methods.mine.bad key", "identifier"),
        ({"epochs": 3}, "methods.mine.epochs", "positive integers"),
    ],
)
def test_plugin_grid_values_give_unique_path_safe_run_ids(default_config, axes, key, needle):
    assert needle in refused(plugin_config(default_config, **axes), key)


def test_distinct_plugin_values_pass(default_config):
    config = validate(plugin_config(default_config, width=[1, 2, 1.5], style=["cosine", "step_2", "a-b.c+d"],
                                    flag=[True, False]), SCHEMA)
    runs = method_runs(config["methods"])["mine"]
    assert len(runs) == 3 * 3 * 2 and all("/" not in r and " " not in r for r in runs)


@pytest.mark.parametrize(
    "edit, key",
    [
        (lambda c: c.update(n_models=1), "n_models"),
        (lambda c: c.update(n_holdout_oracles=1), "n_holdout_oracles"),  # the default config has `oracle`
        (lambda c: (c.update(n_holdout_oracles=0), c["methods"].pop("oracle")), "n_holdout_oracles"),  # matching
        (lambda c: c["klom"].update(percentiles=[99]), "klom.percentiles"),
        (lambda c: c["klom"].update(percentiles=[95, 95.0]), "klom.percentiles"),
        (lambda c: c["klom"].update(clip=[100, -100]), "klom.clip"),
        (lambda c: c["klom"].update(clip=[5, 5]), "klom.clip"),
        (lambda c: c["klom"].update(eps=1), "klom.eps"),
        (lambda c: c["klom"].update(eps=2.5), "klom.eps"),
        (lambda c: c["klom"].update(bins=10**9), "klom.bins"),
        (lambda c: c["train"].update(epochs=3.0), "train.epochs"),
        (lambda c: c.update(n_models=1000.0), "n_models"),  # --config n_models=1e3 arrives as 1000.0
        (lambda c: c["methods"]["gradient_ascent"].update(batch_size=32.0), "methods.gradient_ascent.batch_size"),
        (lambda c: c["forget_sets"][0].update(id=0), "forget_sets.0.id"),
        (lambda c: c["forget_sets"][0].update(id=-3), "forget_sets.0.id"),
        (lambda c: c["forget_sets"][0].update(seed=2**32), "forget_sets.0.seed"),
        (lambda c: c["forget_sets"][0].update(size=300), "forget_sets.0.size"),  # digits: 300 train points
        (lambda c: c["forget_sets"].append({"id": "all", "kind": "class", "classes": list(range(10))}),
         "forget_sets.3.classes"),
        (lambda c: c["ulira"].update(request_size=60), "ulira.request_size"),  # target pool of 100
        (lambda c: c["ulira"]["target_pool"].update(size=301), "ulira.target_pool.size"),
        (lambda c: c["ulira"]["target_pool"].update(classes=[10]), "ulira.target_pool.classes"),
        (lambda c: c["ulira"].update(n_targets=384), "ulira.n_targets"),  # 384 pool models x 1 request
    ],
)
def test_late_failures_are_refused_at_validation(default_config, edit, key):
    config = copy.deepcopy(default_config)
    edit(config)
    refused(config, key)


def test_integers_written_as_floats_get_a_hint(default_config):
    config = copy.deepcopy(default_config)
    config["train"]["epochs"] = 3.0
    assert "without a decimal point" in refused(config, "train.epochs")


@pytest.mark.parametrize("n_models, per_job, key", [(10**7, 1, "n_models"), (10**6, 10**6, "models_per_job")])
def test_absurd_sizes_are_refused_in_well_under_a_second(default_config, n_models, per_job, key):
    config = copy.deepcopy(default_config)
    config.update(n_models=n_models, models_per_job=per_job)
    start = time.perf_counter()
    message = refused(config, key)
    assert time.perf_counter() - start < 0.5
    assert "limits.max_j" in message


def test_the_size_limits_can_be_raised(default_config):
    config = copy.deepcopy(default_config)
    config.update(n_models=10**4, models_per_job=1)
    refused(copy.deepcopy(config), "n_models")
    config["limits"] = {"max_jobs": 10**7}
    validate(config, SCHEMA)


def write_module(folder, name, text):
    (folder / f"{name}.py").write_text(text)


@pytest.mark.parametrize(
    "target, needle",
    [
        ("no_such_module_xyz:build", "no module 'no_such_module_xyz'"),
        ("raising_plugin:build", "raised RuntimeError: broken at import"),
        ("quiet_plugin:missing", "has no function 'missing'"),
        ("quiet_plugin:CONSTANT", "has no function 'CONSTANT'"),
        ("importing_plugin:build", "raised ModuleNotFoundError"),
    ],
)
def test_a_plugin_that_cannot_be_loaded_is_refused(default_config, tmp_path, monkeypatch, target, needle):
    write_module(tmp_path, "raising_plugin", "raise RuntimeError('broken at import')\n")
    write_module(tmp_path, "quiet_plugin", "CONSTANT = 3\ndef build(ctx, lr):\n    pass\n")
    write_module(tmp_path, "importing_plugin", "import no_such_dependency_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    config = copy.deepcopy(default_config)
    config["plugins"] = {"mine": target}
    config["methods"]["mine"] = {"lr": [0.1], "epochs": [1]}
    assert needle in refused(config, "plugins.mine", import_plugins=True)
    validate(copy.deepcopy(config), SCHEMA)  # without the import check the entry is well-formed


def test_a_loadable_plugin_passes(default_config, tmp_path, monkeypatch):
    write_module(tmp_path, "quiet_plugin_ok", "def build(ctx, lr):\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    config = copy.deepcopy(default_config)
    config["plugins"] = {"mine": "quiet_plugin_ok:build"}
    config["methods"]["mine"] = {"lr": [0.1], "epochs": [1]}
    validate(config, SCHEMA, import_plugins=True)


# --config strings (Snakemake parses nested values with YAML's base loader: every leaf is a string) ----------


def test_nested_config_overrides_are_coerced_per_the_schema(default_config):
    from snakemake.cli import parse_config
    from snakemake.utils import update_config

    overrides = parse_config(["resources={gpu: 1, threads: 2, models_per_batch: null}",
                              "klom={clip: [-5, 5.5], inclusive_last_bin: true, bins: 7}",
                              "train={epochs: 4, lr: 0.25, nesterov: false}"])
    assert overrides["resources"]["gpu"] == "1"  # what Snakemake hands over
    config = copy.deepcopy(default_config)
    update_config(config, overrides)
    validate(config, SCHEMA)
    assert config["resources"] == {"compile": False, "device": "auto", "gpu": 1, "jobs_per_gpu": 1, "models_per_batch": None, "threads": 2,
                                   "warm_start": True}
    assert config["klom"]["clip"] == [-5, 5.5] and config["klom"]["inclusive_last_bin"] is True
    assert config["klom"]["bins"] == 7 and config["train"]["epochs"] == 4 and config["train"]["lr"] == 0.25
    assert config["train"]["nesterov"] is False


@pytest.mark.parametrize("text, key", [("resources={gpu: 1.5}", "resources.gpu"),
                                       ("resources={gpu: one}", "resources.gpu"),
                                       ("n_models=1e3", "n_models"),
                                       ("klom={clip: [a, 5]}", "klom.clip.0")])
def test_strings_that_do_not_parse_exactly_are_refused(default_config, text, key):
    from snakemake.cli import parse_config
    from snakemake.utils import update_config

    config = copy.deepcopy(default_config)
    update_config(config, parse_config([text]))
    refused(config, key)


def test_string_ids_stay_strings(default_config):
    config = copy.deepcopy(default_config)
    config["forget_sets"][0]["id"] = "7"
    validate(config, SCHEMA)
    assert config["forget_sets"][0]["id"] == "7"


# forget-set seeds ---------------------------------------------------------------------------------------


def test_string_ids_get_their_own_seed_and_integer_ids_keep_the_published_one():
    seeds = {i: forget_set_seed({"id": i, "kind": "random", "size": 20}) for i in (1, 2, "a", "b", "class3")}
    assert seeds[1] == 0 and seeds[2] == 1  # CIFAR-10 sets 1-3: seed = id - 1
    assert len(set(seeds.values())) == len(seeds) and all(0 <= s < 2**32 for s in seeds.values())
    assert forget_set_seed({"id": "a", "seed": 7}) == 7
    assert forget_set_seed({"id": "3"}) == 2 and forget_set_seed({"id": "03"}) not in (2, seeds["a"])
    sets = [random_forget_set(300, 20, seeds[i]).tolist() for i in (1, "a", "b")]
    assert sets[0] != sets[1] and sets[1] != sets[2] and sets[0] != sets[2]


def test_two_draws_that_would_coincide_are_refused_unless_both_seeds_are_written(default_config):
    config = copy.deepcopy(default_config)
    config["forget_sets"] = [{"id": 1, "kind": "random", "size": 20}, {"id": "x", "kind": "random", "size": 20,
                                                                        "seed": 0}]
    assert "same points" in refused(config, "forget_sets.1.seed")
    config["forget_sets"][0]["seed"] = 0
    validate(config, SCHEMA)  # asked for twice, explicitly


def test_every_config_key_is_documented_in_the_config_readme():
    """Each top-level key and each key of a section (a per-run metric's options, ...) is named in config/README.md;
    the methods' own keys are their generated table's (test_method_docs.py)."""
    schema = yaml.safe_load(SCHEMA.read_text())["properties"]
    text = (REPO / "config/README.md").read_text()
    undocumented = [key for key in schema if f"`{key}" not in text]
    undocumented += [f"{top}.{key}" for top, section in schema.items() if top != "methods"
                     for key in section.get("properties", {}) if f"{top}.{key}" not in text and f"`{key}`" not in text]
    assert not undocumented, f"config keys not in config/README.md: {undocumented}"
