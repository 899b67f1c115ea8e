"""Config validation and the plan derived from it (grid points, run ids, shard layout).

Importable without torch: the Snakefile calls it at every parse, including inside every job.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
from collections.abc import Iterator

import yaml
from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import best_match

from .data import DATASETS

# Keys of a method's config entry that are not grid axes.
SNAPSHOT_KEY = "epochs"


class ConfigError(ValueError):
    """A config value is invalid; the message names the key."""


def _with_defaults(validator_class):
    """A validator that also fills in schema defaults (like snakemake.utils.validate(set_default=True))."""
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, sub in properties.items():
                if "default" in sub and name not in instance:
                    instance[name] = sub["default"]
        yield from validate_properties(validator, properties, instance, schema)

    return validators.extend(validator_class, {"properties": set_defaults})


def _key(path) -> str:
    return ".".join(str(p) for p in path) or "<top level>"


def validate(config: dict, schema_path: str | os.PathLike) -> dict:
    """Check ``config`` against the JSON schema and the cross-key rules; fill defaults in place.

    Raises :class:`ConfigError` with one message naming the offending key.
    """
    with open(schema_path) as fh:
        schema = yaml.safe_load(fh)
    error = best_match(_with_defaults(Draft202012Validator)(schema).iter_errors(config))
    if error is not None:
        if error.validator == "additionalProperties":
            raise ConfigError(f"config key {_key(error.absolute_path)}: {error.message} (unknown keys are errors)")
        raise ConfigError(f"config key {_key(error.absolute_path)}: {error.message}")
    _fill_derived_defaults(config)
    _check_cross_keys(config, schema)
    _sort_keys(config)
    return config


def _fill_derived_defaults(config: dict) -> None:
    """Defaults that depend on other keys (the schema's defaults are constants)."""
    # the same estimator and sample size on both samples: their gap is then the winner's curse alone
    config["selection"].setdefault("n_models", config["n_models"])


def _sort_keys(value) -> None:
    """Sort every mapping's keys in place, recursively.

    Snakemake compares ``params`` by their text, so ``{lr, epochs}`` and ``{epochs, lr}`` would look
    like a change and rerun jobs: a reordered config file, or a default filled in after the keys the
    user wrote, must not. Canonical order makes the comparison about values only.
    """
    if isinstance(value, dict):
        items = sorted(value.items(), key=lambda kv: str(kv[0]))
        value.clear()
        value.update(items)
        for v in value.values():
            _sort_keys(v)
    elif isinstance(value, list):
        for v in value:
            _sort_keys(v)


def dataset_spec(config: dict):
    """The data set's registry entry, with the split sizes the config may override (``data.n_train``,
    ``data.n_val``: a subset, or a small test tree of an image-folder data set)."""
    spec = DATASETS[config["dataset"]]
    data = config.get("data") or {}
    return dataclasses.replace(spec, n_train=data.get("n_train", spec.n_train), n_val=data.get("n_val", spec.n_val))


def _check_cross_keys(config: dict, schema: dict) -> None:
    spec = dataset_spec(config)
    ids = [str(fs["id"]) for fs in config["forget_sets"]]
    if len(set(ids)) != len(ids):
        raise ConfigError(f"config key forget_sets: ids must be unique, got {ids}")
    for i, fs in enumerate(config["forget_sets"]):
        where = f"forget_sets.{i}"
        if "size" in fs and fs["size"] > spec.n_train:
            raise ConfigError(
                f"config key {where}.size: {fs['size']} exceeds the {spec.n_train} train points of {config['dataset']}"
            )
        if fs["kind"] == "class":
            bad = [c for c in fs["classes"] if c >= spec.num_classes]
            if bad:
                raise ConfigError(f"config key {where}.classes: {bad} not below {spec.num_classes} classes")
        if fs.get("url") and fs["kind"] != "file":
            raise ConfigError(f"config key {where}.url: only a file forget set has a url")
        if fs["kind"] == "file" and not fs.get("path"):
            raise ConfigError(f"config key {where}.path: a file forget set needs a path")
        if fs["kind"] == "random" and "size" not in fs:
            raise ConfigError(f"config key {where}.size: a random forget set needs a size")
    built_in = set(schema["properties"]["methods"]["properties"])
    plugins = config.get("plugins", {})
    for name, entry in config["methods"].items():
        entry = entry or {}
        if name not in built_in and name not in plugins:
            raise ConfigError(
                f"config key methods.{name}: unknown method; built in: {sorted(built_in)}; "
                "a method of your own needs a 'plugins' entry (module:function)"
            )
        for key, value in entry.items():
            if isinstance(value, list) and not value:
                raise ConfigError(f"config key methods.{name}.{key}: empty list")
        if name in plugins and not entry.get(SNAPSHOT_KEY):
            raise ConfigError(f"config key methods.{name}.{SNAPSHOT_KEY}: a plug-in method needs snapshot epochs")
    unknown = sorted(set(map(str, config["import"].get("oracle_margins", {}))) - set(ids))
    if unknown:
        raise ConfigError(f"config key import.oracle_margins.{unknown[0]}: no forget set has this id")
    pool_users = [f"methods.{m}" for m in config["methods"] if m in ("dm_matching", "dm_direct")]
    pool_users += [f"forget_sets.{i}" for i, fs in enumerate(config["forget_sets"]) if fs["kind"] == "attribution_pc"]
    pool_users += ["ulira"] if config.get("ulira") else []
    if pool_users and not config.get("pool"):
        raise ConfigError(f"config key {pool_users[0]}: needs the pool of random-half models; set pool.n_models")
    for i, fs in enumerate(config["forget_sets"]):
        if fs["kind"] == "attribution_pc" and not {"component", "mode", "size"} <= set(fs):
            raise ConfigError(f"config key forget_sets.{i}: attribution_pc needs component, mode and size")
    if config.get("ulira"):
        for name in config["ulira"]["methods"]:
            if name not in built_in or name in ("dm_matching", "dm_direct"):
                raise ConfigError(f"config key ulira.methods.{name}: not available for U-LiRA")
        for name in config["ulira"]["methods"]:
            if _registry_kind(name, plugins) == "retrain":
                raise ConfigError(f"config key ulira.methods.{name}: a retraining from scratch is not available "
                                  "for U-LiRA")
        if "oracle_matching" in config["ulira"]["methods"]:
            raise ConfigError("config key ulira.methods.oracle_matching: needs oracles per request; not available")
    if config.get("pool") and config["pool"]["n_models"] <= config["datamodels"]["holdout_models"]:
        raise ConfigError("config key datamodels.holdout_models: must be below pool.n_models")
    if config["n_holdout_oracles"] == 0 and "oracle" in config["methods"]:
        raise ConfigError("config key n_holdout_oracles: the oracle method needs at least one held-out oracle")


def _registry_kind(method: str, plugins: dict | None) -> str:
    from .methods import lookup

    return lookup(method, plugins).kind


# grid -----------------------------------------------------------------------------------------------


def format_value(value) -> str:
    return repr(value) if isinstance(value, float) else str(value)


def run_id(hyperparameters: dict) -> str:
    """A stable id of one grid point, Snakemake ``Paramspace`` style: ``key~value`` joined by ``_``."""
    if not hyperparameters:
        return "default"
    return "_".join(f"{k}~{format_value(v)}" for k, v in sorted(hyperparameters.items()))


def grid(entry: dict) -> Iterator[dict]:
    """Every grid point of one method entry (Cartesian product over list values; snapshots excluded)."""
    axes = {k: (v if isinstance(v, list) else [v]) for k, v in entry.items() if k != SNAPSHOT_KEY}
    keys = sorted(axes)
    for values in itertools.product(*(axes[k] for k in keys)):
        yield dict(zip(keys, values))


def method_runs(methods: dict) -> dict[str, dict[str, dict]]:
    """``{method: {run id: hyperparameters}}`` for every method and grid point of a ``methods`` mapping."""
    return {m: {run_id(hp): hp for hp in grid(entry or {})} for m, entry in methods.items()}


def snapshot_epochs(methods: dict, method: str) -> list[int]:
    return sorted(set((methods[method] or {}).get(SNAPSHOT_KEY, [0])))


def run_snapshot_epochs(config: dict, method: str, hyperparameters: dict) -> list[int]:
    """Snapshot epochs of one grid point: the method's ``epochs``; for a retraining from scratch (registry
    kind ``retrain``) the one loop epoch its compressed schedule ends in."""
    if _registry_kind(method, config.get("plugins")) == "retrain":
        from .compressed_schedule import last_epoch

        return [last_epoch(hyperparameters["budget"], config["train"]["epochs"])]
    return snapshot_epochs(config["methods"], method)


# shards -----------------------------------------------------------------------------------------------


def chunks(start: int, stop: int, size: int) -> list[tuple[int, int]]:
    return [(i, min(i + size, stop)) for i in range(start, stop, size)]


def selection_size(config: dict) -> int:
    """S, the size of the selection sample (base models and oracles per forget set that choose the runs)."""
    return config["selection"]["n_models"]


def base_shards(config: dict) -> list[tuple[int, int]]:
    """Model-index ranges of the base-model shards: the report sample [0, N) first, then the selection
    sample [N, N+S) (models of the same family, so their seeds follow from their index alone).

    A shard never mixes the two samples, so either is read without the other.
    """
    n, s, k = config["n_models"], selection_size(config), config["models_per_job"]
    return chunks(0, n, k) + chunks(n, n + s, k)


def report_base_shards(config: dict) -> list[int]:
    return [i for i, (start, _) in enumerate(base_shards(config)) if start < config["n_models"]]


def selection_base_shards(config: dict) -> list[int]:
    return [i for i, (start, _) in enumerate(base_shards(config)) if start >= config["n_models"]]


def oracle_shards(config: dict) -> list[tuple[int, int]]:
    """Model-index ranges of oracle shards: scored oracles [0, N) first, then held-out ones [N, N+H), then
    the selection oracles [N+H, N+H+S).

    A shard never mixes two of these families, so each is read without the others: runs are chosen
    against the selection oracles, reported against the scored ones, and the held-out ones (the `oracle`
    method, oracle matching's targets) are never scored against.
    """
    n, h, s, k = config["n_models"], config["n_holdout_oracles"], selection_size(config), config["models_per_job"]
    return chunks(0, n, k) + chunks(n, n + h, k) + chunks(n + h, n + h + s, k)


def _oracle_shards_in(config: dict, start: int, stop: int) -> list[int]:
    return [i for i, (first, _) in enumerate(oracle_shards(config)) if start <= first < stop]


def scored_oracle_shards(config: dict) -> list[int]:
    return _oracle_shards_in(config, 0, config["n_models"])


def holdout_oracle_shards(config: dict) -> list[int]:
    n = config["n_models"]
    return _oracle_shards_in(config, n, n + config["n_holdout_oracles"])


def selection_oracle_shards(config: dict) -> list[int]:
    n, h = config["n_models"], config["n_holdout_oracles"]
    return _oracle_shards_in(config, n + h, n + h + selection_size(config))


def pool_shards(config: dict) -> list[tuple[int, int]]:
    """Model-index ranges of the pool's shards (none without a pool)."""
    pool = config.get("pool")
    return chunks(0, pool["n_models"], config["models_per_job"]) if pool else []


def pool_cost(config: dict, n_train: int) -> float:
    """Training the pool, in base-training runs: M models x their n_train // 2 points x the recipe's epochs,
    over n_train x epochs. Paid once, shared by every forget set and unlearned model the pool serves."""
    pool = config.get("pool")
    return pool["n_models"] * (n_train // 2) / n_train if pool else 0.0


def forget_set_seed(entry: dict) -> int:
    """The seed of a random/class forget set: ``seed`` if given, else ``id - 1`` for integer ids (the
    published convention: CIFAR-10 set 1 is ``seed(0)``), else 0."""
    if "seed" in entry:
        return int(entry["seed"])
    return int(entry["id"]) - 1 if isinstance(entry["id"], int) else 0
