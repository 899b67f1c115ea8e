"""Config validation: the schema, then cross-key checks that name the offending key.

Importable without torch: the Snakefile calls it at every parse, including inside every job.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import importlib
import math
import os
import re

import yaml
from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import best_match

from .data import DATASETS
from .plan import SNAPSHOT_KEY, forget_set_seed, grid, run_id

# The statistic the report ranks by (workflow/rules/report.smk REPORT_STAT); klom.percentiles must produce it.
REPORT_PERCENTILE = "p95"


class ConfigError(ValueError):
    """A config value is invalid; the message names the key."""


def _strict_integers(validator_class):
    """``integer`` means a Python int: JSON Schema's own rule accepts ``3.0``, which would reach the jobs as a float
    (``epochs: 3.0``, or ``--config n_models=1e3``, which Snakemake parses as 1000.0)."""
    checker = validator_class.TYPE_CHECKER.redefine(
        "integer", lambda _, value: isinstance(value, int) and not isinstance(value, bool)
    )
    return validators.extend(validator_class, type_checker=checker)


def _with_defaults(validator_class):
    """A validator that also fills in schema defaults (like snakemake.utils.validate(set_default=True))."""
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, sub in properties.items():
                if "default" in sub and name not in instance:
                    instance[name] = copy.deepcopy(sub["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return validators.extend(validator_class, {"properties": set_defaults})


VALIDATOR = _with_defaults(_strict_integers(Draft202012Validator))


def _key(path) -> str:
    return ".".join(str(p) for p in path) or "<top level>"


def validate(config: dict, schema_path: str | os.PathLike, import_plugins: bool = False) -> dict:
    """Check ``config`` against the JSON schema and the cross-key rules; fill defaults in place.

    Strings where the schema wants a number, boolean or null are converted first when they parse exactly
    (``--config 'resources={gpu: 1}'`` arrives as strings). ``import_plugins`` also imports every plug-in
    method (``plugins``), as its unlearning jobs will: the workflow asks for it once, in the main process.
    Raises :class:`ConfigError` with one message naming the offending key.
    """
    schema = load_schema(schema_path)
    coerce_strings(config, schema)
    _check_schema(config, schema)
    _fill_derived_defaults(config)
    for check in CROSS_KEY_CHECKS:
        check(config, schema)
    _check_published_sources(config)
    if import_plugins:
        check_plugins_import(config)
    if config.get("pool") and "train" not in config["pool"]:
        config["pool"]["train"] = copy.deepcopy(config["train"])  # the pool trains as the base models
    _sort_keys(config)
    return config


@functools.lru_cache(maxsize=4)
def _parse_schema(path: str, mtime_ns: int, registries: tuple) -> dict:
    with open(path) as fh:
        # libyaml when present: 15 ms instead of 148 ms for this schema (measured; every job parses it)
        schema = yaml.load(fh, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    return _with_registries(schema)


def _registries() -> tuple:
    from .methods import METHODS
    from .models import MODELS

    return tuple(METHODS.items()), tuple(DATASETS.items()), tuple(MODELS.items())


def _with_registries(schema: dict) -> dict:
    """What the registries own: the names of data sets and models, and each built-in method's entry, read from
    its ``build`` signature (:mod:`unlearnbench.method_schema`)."""
    from .method_schema import methods_schema
    from .methods import METHODS
    from .models import MODELS

    properties = schema["properties"]
    properties["dataset"]["enum"] = list(DATASETS)
    properties["model"]["enum"] = list(MODELS)
    properties["methods"]["properties"] = methods_schema(METHODS)
    return schema


def load_schema(schema_path: str | os.PathLike) -> dict:
    """The parsed schema, completed from the registries (cached per path, modification time and registry
    contents; callers must not modify it)."""
    return _parse_schema(os.path.abspath(schema_path), os.stat(schema_path).st_mtime_ns, _registries())


def _check_schema(instance, schema: dict, prefix: tuple = ()) -> None:
    error = best_match(VALIDATOR(schema).iter_errors(instance))
    if error is None:
        return
    key = _key(prefix + tuple(error.absolute_path))
    if error.validator == "additionalProperties":
        raise ConfigError(f"config key {key}: {error.message} (unknown keys are errors)")
    hint = ""
    if isinstance(error.instance, float) and error.instance.is_integer() and "integer" in str(error.schema):
        hint = " (an integer is written without a decimal point or exponent)"
    raise ConfigError(f"config key {key}: {error.message}{hint}")


# --config strings ---------------------------------------------------------------------------------------

_INTEGER = re.compile(r"[-+]?[0-9]+")
_NUMBER = re.compile(r"[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?")
_NULL = {"null", "Null", "NULL", "~", ""}
_BOOLEAN = {"true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False}


def coerce_strings(config: dict, schema: dict) -> None:
    """Convert, in place, strings where the schema expects an integer, number, boolean or null.

    Snakemake parses a nested ``--config`` value (``resources={gpu: 1}``) with YAML's base loader, so every
    leaf arrives as a string. A string is converted only where the schema does not accept strings there and
    the text parses exactly as the wanted type (``"1"`` -> 1, ``"0.5"`` -> 0.5, ``"true"`` -> True,
    ``"null"`` -> None); anything else is left for validation to refuse with the key's name.
    """
    _coerce(config, schema, schema)
    ulira = config.get("ulira")
    if isinstance(ulira, dict) and isinstance(ulira.get("methods"), dict):
        _coerce(ulira["methods"], schema["properties"]["methods"], schema)


def _resolve(node: dict, root: dict) -> dict:
    while isinstance(node, dict) and "$ref" in node:
        node = root["$defs"][node["$ref"].rsplit("/", 1)[-1]]
    return node if isinstance(node, dict) else {}


def _branches(node: dict, root: dict) -> list[dict]:
    node = _resolve(node, root)
    alternatives = node.get("oneOf") or node.get("anyOf")
    if alternatives:
        return [b for alt in alternatives for b in _branches(alt, root)]
    return [node]


_ENUM_TYPES = {str: "enum_text", bool: "boolean", int: "integer", float: "number", type(None): "null"}


def _types(branches: list[dict]) -> set[str]:
    types = set()
    for b in branches:
        t = b.get("type")
        types.update([t] if isinstance(t, str) else t or [])
        if "enum" in b:
            types.update(_ENUM_TYPES.get(type(v), "string") for v in b["enum"])
    return types


def _enum_texts(branches: list[dict]) -> set[str]:
    return {v for b in branches for v in b.get("enum", ()) if isinstance(v, str)}


def _parse(text: str, types: set[str]):
    if "integer" in types and _INTEGER.fullmatch(text):
        return int(text)
    if "number" in types and _NUMBER.fullmatch(text):
        return int(text) if _INTEGER.fullmatch(text) else float(text)
    if "boolean" in types and text in _BOOLEAN:
        return _BOOLEAN[text]
    if "null" in types and text in _NULL:
        return None
    return text


def _coerce(value, node: dict, root: dict):
    branches = _branches(node, root)
    types = _types(branches)
    if isinstance(value, str):
        # free text stays text; so does one of an enum's words (`gpu: auto`); `"1"` for `gpu: [auto, 0, 1]` is 1
        if "string" in types or not types or value in _enum_texts(branches):
            return value
        return _parse(value, types)
    if isinstance(value, dict):
        for b in branches:
            if "properties" in b or "additionalProperties" in b:
                for name, item in value.items():
                    sub = b.get("properties", {}).get(name, b.get("additionalProperties"))
                    if isinstance(sub, dict):
                        value[name] = _coerce(item, sub, root)
                break
    elif isinstance(value, list):
        for b in branches:
            if isinstance(b.get("items"), dict):
                value[:] = [_coerce(item, b["items"], root) for item in value]
                break
    return value


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


# cross-key checks: each refuses one kind of config that the schema alone lets through ---------------------


def _check_forget_sets(config: dict, schema: dict) -> None:
    spec = dataset_spec(config)
    ids = [str(fs["id"]) for fs in config["forget_sets"]]
    if len(set(ids)) != len(ids):
        raise ConfigError(f"config key forget_sets: ids must be unique, got {ids}")
    for i, fs in enumerate(config["forget_sets"]):
        where = f"forget_sets.{i}"
        if "size" in fs and fs["size"] >= spec.n_train:
            raise ConfigError(
                f"config key {where}.size: {fs['size']} would leave none of the {spec.n_train} train points of "
                f"{config['dataset']} to retain (a forget set holds fewer points than the train split)"
            )
        if fs["kind"] == "class":
            bad = [c for c in fs["classes"] if c >= spec.num_classes]
            if bad:
                raise ConfigError(f"config key {where}.classes: {bad} not below {spec.num_classes} classes")
            if "size" not in fs and set(fs["classes"]) >= set(range(spec.num_classes)):
                raise ConfigError(f"config key {where}.classes: every class, no size: nothing would be retained")
        if fs.get("url") and fs["kind"] != "file":
            raise ConfigError(f"config key {where}.url: only a file forget set has a url")
        if fs["kind"] == "file" and not fs.get("path") and not fs.get("url"):
            raise ConfigError(f"config key {where}.path: a file forget set needs a path (or a url)")
        if fs["kind"] == "random" and "size" not in fs:
            raise ConfigError(f"config key {where}.size: a random forget set needs a size")
        if fs["kind"] == "attribution_pc" and not {"component", "mode", "size"} <= set(fs):
            raise ConfigError(f"config key {where}: attribution_pc needs component, mode and size")
    _check_drawn_sets_differ(config["forget_sets"])


def _check_drawn_sets_differ(forget_sets: list[dict]) -> None:
    """Two seeded draws with the same kind, size (and classes) and seed hold the same points: refused unless
    both seeds were written in the config (then the user asked for it)."""
    seen: dict[tuple, int] = {}
    for i, fs in enumerate(forget_sets):
        if fs["kind"] not in ("random", "class") or "size" not in fs:
            continue
        draw = (fs["kind"], fs["size"], tuple(sorted(fs.get("classes", ()))), forget_set_seed(fs))
        if draw in seen and not ("seed" in fs and "seed" in forget_sets[seen[draw]]):
            other = forget_sets[seen[draw]]
            raise ConfigError(
                f"config key forget_sets.{i}.seed: forget sets {other['id']!r} and {fs['id']!r} would hold the same "
                f"points (same kind, size and seed {draw[-1]}); give one of them another seed"
            )
        seen.setdefault(draw, i)


# U-LiRA and the built-in methods below accept these names for methods and plug-in hyperparameter keys
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")


def _check_methods(config: dict, schema: dict) -> None:
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
        if name in plugins:
            _check_plugin_entry(name, entry)


def _check_plugin_entry(name: str, entry: dict, section: str = "methods") -> None:
    """A plug-in's entry has no schema of its own: keys are keyword arguments, ``epochs`` snapshot epochs, and
    learning rates (``lr``, ``*_lr``) positive, as for the built-in methods."""
    where = f"{section}.{name}"
    epochs = entry.get(SNAPSHOT_KEY)
    if not epochs:
        raise ConfigError(f"config key {where}.{SNAPSHOT_KEY}: a plug-in method needs snapshot epochs")
    if not isinstance(epochs, list) or not all(isinstance(e, int) and not isinstance(e, bool) and e >= 1
                                               for e in epochs):
        raise ConfigError(f"config key {where}.{SNAPSHOT_KEY}: a list of positive integers, got {epochs!r}")
    for key, value in entry.items():
        if not _NAME.fullmatch(str(key)):
            raise ConfigError(f"config key {where}.{key}: a hyperparameter name is a Python identifier")
        if key == "lr" or str(key).endswith("_lr"):
            for v in value if isinstance(value, list) else [value]:
                if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
                    raise ConfigError(f"config key {where}.{key}: a learning rate must be a number above 0, got {v!r}")


def _check_models(config: dict, schema: dict) -> None:
    """Held-out oracles: each kind of input a method needs says how many it must draw
    (:attr:`unlearnbench.method_inputs.MethodInput.held_out_oracles`)."""
    from .method_inputs import kind

    held_out = config["n_holdout_oracles"]
    for name in config["methods"]:
        for need in map(kind, _registry_needs(name, config)):
            if held_out < need.held_out_oracles:
                raise ConfigError(f"config key n_holdout_oracles: the {name} method needs {need.what}: at least "
                                  f"{need.held_out_oracles} held-out oracle{'s' if need.held_out_oracles > 1 else ''}, "
                                  f"got {held_out}")
    if config["pool"] and config["pool"]["n_models"] <= config["datamodels"]["holdout_models"]:
        raise ConfigError("config key datamodels.holdout_models: must be below pool.n_models")


def _check_klom(config: dict, schema: dict) -> None:
    klom = config["klom"]
    low, high = klom["clip"]
    if not low < high:
        raise ConfigError(f"config key klom.clip: [low, high] with low < high, got {klom['clip']}")
    names = [f"p{q:g}" for q in klom["percentiles"]]
    if len(set(names)) != len(names):
        raise ConfigError(f"config key klom.percentiles: each percentile once, got {klom['percentiles']}")
    if REPORT_PERCENTILE not in names:
        raise ConfigError(
            f"config key klom.percentiles: must include 95 (the tables, figures and intervals rank by "
            f"{REPORT_PERCENTILE}), got {klom['percentiles']}"
        )


def _check_resources(config: dict, schema: dict) -> None:
    resources = config.get("resources", {})
    if resources.get("device") == "cuda" and resources.get("gpu") == 0:
        raise ConfigError("config key resources.gpu: 0 (CPU jobs) contradicts resources.device: cuda")


def _check_pool_users(config: dict, schema: dict) -> None:
    from .method_inputs import uses_pool

    pool_users = []
    if not config["datamodels"].get("import"):  # imported datamodels replace the pool fit
        pool_users += [f"methods.{m}" for m in config["methods"] if uses_pool(_registry_needs(m, config))]
        pool_users += [f"forget_sets.{i}" for i, fs in enumerate(config["forget_sets"])
                       if fs["kind"] == "attribution_pc"]
    pool_users += ["ulira"] if config.get("ulira") else []
    if pool_users and not config.get("pool"):
        raise ConfigError(f"config key {pool_users[0]}: needs the pool of random-half models; set pool.n_models")


def _check_ulira(config: dict, schema: dict) -> None:
    ulira = config.get("ulira")
    if not ulira:
        return
    from .methods import lookup

    built_in = schema["properties"]["methods"]["properties"]
    plugins = config.get("plugins", {})
    for name, entry in ulira["methods"].items():
        if name in plugins:  # a plug-in is a finetune method: U-LiRA runs it as any built-in one
            _check_plugin_entry(name, entry or {}, "ulira.methods")
            continue
        if name not in built_in:
            raise ConfigError(f"config key ulira.methods.{name}: unknown method; built in: {sorted(built_in)}; "
                              "a method of your own needs a 'plugins' entry (module:function)")
        registered = lookup(name, plugins)
        if registered.kind == "retrain":
            raise ConfigError(f"config key ulira.methods.{name}: a retraining from scratch is not available for U-LiRA")
        # the registry says how U-LiRA runs a method (methods.Registered.ulira); one that needs inputs would need
        # them per request (held-out oracles, datamodel effects), which no job makes
        if registered.ulira is None:
            raise ConfigError(f"config key ulira.methods.{name}: needs {', '.join(registered.needs)} per request; "
                              "not available for U-LiRA")
        _check_schema(entry, {"$defs": schema["$defs"], **built_in[name]}, ("ulira", "methods", name))
    spec = dataset_spec(config)
    target = ulira["target_pool"]
    if target["size"] > spec.n_train:
        raise ConfigError(f"config key ulira.target_pool.size: {target['size']} exceeds the {spec.n_train} train points")
    bad = [c for c in target.get("classes", []) if c >= spec.num_classes]
    if bad:
        raise ConfigError(f"config key ulira.target_pool.classes: {bad} not below {spec.num_classes} classes")
    if ulira["request_size"] > target["size"] // 2:
        raise ConfigError(
            f"config key ulira.request_size: {ulira['request_size']} exceeds half the target pool "
            f"({target['size']} // 2): a request is drawn from the target-pool points its model trained on, "
            "about half of them"
        )
    runs = config["pool"]["n_models"] * ulira["n_requests"]
    if ulira["n_targets"] >= runs:
        raise ConfigError(
            f"config key ulira.n_targets: {ulira['n_targets']} targets leave no shadow run among the "
            f"{runs} unlearned runs (pool.n_models x ulira.n_requests)"
        )


def _check_imports(config: dict, schema: dict) -> None:
    ids = {str(fs["id"]) for fs in config["forget_sets"]}
    unknown = sorted(set(map(str, config["import"].get("oracle_margins", {}))) - ids)
    if unknown:
        raise ConfigError(f"config key import.oracle_margins.{unknown[0]}: no forget set has this id")


def _check_size(config: dict, schema: dict) -> None:
    """Refuse runs beyond ``limits`` before Snakemake spends minutes (and gigabytes) planning them."""
    from .plan_size import estimate

    size = estimate(config, dataset_spec(config))
    limits = config["limits"]
    if size.jobs > limits["max_jobs"]:
        raise ConfigError(
            f"config key {size.jobs_key}: the run would have about {size.jobs:,} jobs, above limits.max_jobs = "
            f"{limits['max_jobs']:,} (raise models_per_job, shrink the grid, or raise the limit)"
        )
    kind, need = size.largest_job
    if need > limits["max_job_memory_gib"] * 2**30:
        raise ConfigError(
            f"config key {size.memory_key[kind]}: a {kind} job would hold about {need / 2**30:,.1f} GiB, above "
            f"limits.max_job_memory_gib = {limits['max_job_memory_gib']}"
        )


def _check_grids(config: dict, schema: dict) -> None:
    for section, methods in (("methods", config["methods"]), ("ulira.methods", (config.get("ulira") or {}).get("methods", {}))):
        for name, entry in methods.items():
            check_grid(entry or {}, f"{section}.{name}")


# Run ids name result folders: plain text, and short enough for any file system (255 bytes per name).
MAX_RUN_ID_LENGTH = 200
_SIMPLE_TEXT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")


def check_grid(entry: dict, where: str) -> None:
    """Grid values are finite numbers, booleans or simple text; no value twice on an axis (``1`` and ``1.0``);
    run ids unique (``1`` and ``"1"`` would share one), path-safe and at most MAX_RUN_ID_LENGTH characters."""
    for key, values in entry.items():
        if key == SNAPSHOT_KEY:
            continue
        seen = {}
        for value in values if isinstance(values, list) else [values]:
            if isinstance(value, bool):
                norm = ("bool", value)
            elif isinstance(value, (int, float)):
                if not math.isfinite(value):
                    raise ConfigError(f"config key {where}.{key}: {value!r} is not a finite number")
                norm = ("number", float(value))
            elif isinstance(value, str) and _SIMPLE_TEXT.fullmatch(value):
                norm = ("text", value)
            else:
                raise ConfigError(
                    f"config key {where}.{key}: grid values are numbers, booleans or text of letters, digits and "
                    f"'._+-' (they name result folders), got {value!r}"
                )
            if norm in seen:
                raise ConfigError(f"config key {where}.{key}: {seen[norm]!r} and {value!r} are the same grid point")
            seen[norm] = value
    ids: dict[str, dict] = {}
    for point in grid(entry):
        rid = run_id(point)
        if rid in ids:
            raise ConfigError(f"config key {where}: grid points {ids[rid]} and {point} share the run id {rid!r}")
        if len(rid) > MAX_RUN_ID_LENGTH:
            raise ConfigError(f"config key {where}: run id {rid[:60]!r}... is longer than {MAX_RUN_ID_LENGTH} characters")
        ids[rid] = point


def _check_optimisers(config: dict, schema: dict) -> None:
    for section in ("methods", "ulira.methods"):
        methods = config["methods"] if section == "methods" else (config.get("ulira") or {}).get("methods", {})
        for name, entry in methods.items():
            if any(hp.get("nesterov") and not hp.get("momentum") for hp in grid(entry or {})):
                raise ConfigError(f"config key {section}.{name}.nesterov: Nesterov momentum needs a momentum > 0 "
                                  "in every grid point")


CROSS_KEY_CHECKS = (
    _check_forget_sets, _check_models, _check_klom, _check_methods, _check_pool_users, _check_ulira,
    _check_imports, _check_size, _check_grids, _check_resources, _check_optimisers,
)


def check_plugins_import(config: dict) -> None:
    """Import every plug-in's module and find its function, as its unlearning jobs will.

    Done at validation (in the workflow's main process only), so a missing module, one that raises on import, or
    a missing function is refused before any job instead of failing every unlearning job after training.
    """
    for name, target in config.get("plugins", {}).items():
        module_name, _, attr = target.partition(":")
        where = f"config key plugins.{name}"
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as err:
            if err.name and (module_name == err.name or module_name.startswith(err.name + ".")):
                raise ConfigError(f"{where}: no module {err.name!r} on the PYTHONPATH (sys.path) of this run") from None
            raise ConfigError(f"{where}: importing {module_name!r} raised {type(err).__name__}: {err}") from None
        except Exception as err:  # the plug-in's own code failed; show what it raised
            raise ConfigError(f"{where}: importing {module_name!r} raised {type(err).__name__}: {err}") from None
        if not callable(getattr(module, attr, None)):
            raise ConfigError(f"{where}: module {module_name!r} has no function {attr!r}")


def _check_published_sources(config: dict) -> None:
    """Downloads (``forget_sets[].url``) and published assets (``import``): keys that belong together."""
    from .hub_layouts import FORGET_SET_IDS, KNOWN_REPOS, LAYOUTS, layout_name

    for i, fs in enumerate(config["forget_sets"]):
        where = f"forget_sets.{i}"
        if (fs.get("sha256") or fs.get("allow_http")) and not (fs["kind"] == "file" and fs.get("url")):
            key = "sha256" if fs.get("sha256") else "allow_http"
            raise ConfigError(f"config key {where}.{key}: only for a file forget set with a url")
        if fs.get("url", "").startswith("http://") and not fs.get("allow_http"):
            raise ConfigError(
                f"config key {where}.url: plain http has no transport integrity; use https, or set "
                f"{where}.allow_http: true (and pin {where}.sha256)"
            )
    imports = config["import"]
    hub = imports.get("source") == "hub"
    published = [i for i, fs in enumerate(config["forget_sets"]) if fs["kind"] == "published"]
    if not hub:
        for key in ("repo", "layout"):
            if key in imports:
                raise ConfigError(f"config key import.{key}: only with import.source: hub")
        if imports.get("sha256"):
            raise ConfigError("config key import.sha256: only with import.source: hub (a file forget set has its own)")
        if published:
            raise ConfigError(f"config key forget_sets.{published[0]}.kind: published needs import.source: hub")
        if imports.get("oracle_shards") == "none" and imports.get("oracle_margins"):
            raise ConfigError("config key import.oracle_shards: none imports no oracle margins, but "
                              "import.oracle_margins lists some")
        return
    for key in ("base_weights", "oracle_margins"):
        if imports.get(key):
            raise ConfigError(
                f"config key import.{key}: a path for source: files; with source: hub the layout names the files"
            )
    if not imports.get("repo"):
        raise ConfigError("config key import.repo: source: hub needs the data set, e.g. easydub/EasyDUB-dataset")
    name = layout_name(imports)
    if name is None:
        raise ConfigError(
            f"config key import.layout: {imports['repo']} is not a known data set ({sorted(KNOWN_REPOS)}); "
            f"name its file layout ({sorted(LAYOUTS)})"
        )
    if config["dataset"] != "cifar10":
        raise ConfigError(f"config key import.repo: the {name} layout holds CIFAR-10 assets, not {config['dataset']}")
    base = imports["base"]
    if base == "margins" and LAYOUTS[name].base_margins is None:
        raise ConfigError(f"config key import.base: the {name} layout publishes no base margins (weights or none)")
    if base in ("weights", "both") and config["model"] != "resnet9":
        raise ConfigError(f"config key model: the published base models are resnet9, not {config['model']}")
    if base == "margins":
        from .methods import lookup

        trained = [m for m in config["methods"] if lookup(m, config.get("plugins")).kind != "margins"]
        if trained:
            raise ConfigError(
                f"config key import.base: margins imports no base models, but methods.{trained[0]} fine-tunes "
                "them (set import.base: both, or drop the method)"
            )
    for i in published:
        if str(config["forget_sets"][i]["id"]) not in {str(n) for n in FORGET_SET_IDS}:
            raise ConfigError(
                f"config key forget_sets.{i}.id: the published forget sets are "
                f"{FORGET_SET_IDS[0]}-{FORGET_SET_IDS[-1]}, not {config['forget_sets'][i]['id']!r}"
            )


def _registry_needs(method: str, config: dict) -> tuple[str, ...]:
    """The method's extra inputs; none for a name the registry does not know (_check_methods refuses it)."""
    from .methods import lookup

    try:
        return lookup(method, config.get("plugins")).needs
    except ValueError:
        return ()
