"""The extra inputs a method can need (its registry entry's ``needs``), each kind declared once.

A kind of input says where an unlearning job finds its file(s) (a :mod:`unlearnbench.layout` path, from
the config, the forget set and the shard of models), how the job loads them, and what it asks of the
config. The ``unlearn`` rule, its stage, the config checks and the method facts of tables ask this
table, never a name: a method that needs a new kind of input is its module, its registry line naming the
need, and one entry here (besides the rule that makes the file). The method finds the loaded value under
the need's name: ``inputs[name]`` for a ``margins`` method, ``ctx.needed[name]`` for a finetune one.

Importable without torch (the workflow reads it at every parse); loaders import what they use.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from . import layout, plan, registry

# Fewest unlearned models a KLOM score works with (one model has no ε score: metrics.epsilon.forget_score).
MIN_SCORED_MODELS = 2
EFFECT_ARRAYS = ("margin_effect", "logit_effect")  # datamodel_effect's artefact (stages.pool.datamodel_effect)


@dataclass(frozen=True)
class MethodInput:
    what: str  # what it is, for messages and docs
    # (paths of the data set, config, forget set id, shard of base models) -> the job's file or files
    files: Callable[[layout.Layout, dict, str, int], str | list[str]]
    load: str  # "module:function": (files, device) -> what the method gets (device: a torch device or None)
    held_out_oracles: int = 0  # the fewest held-out oracles the config must draw for it
    uses_pool: bool = False  # made from the pool of random-half models: a pool (or imported datamodels) is needed,
    # and the pool's training is part of the method's cost
    held_out_models: bool = False  # the method's unlearned models are held-out oracles (their shards, not the base's)


def _base_margins(paths: layout.Layout, config: dict, forget_set: str, shard: int) -> str:
    return paths.margins("base", shard)


def _holdout_margins(paths: layout.Layout, config: dict, forget_set: str, shard: int) -> str:
    """The oracle draw's shard ``shard`` is the ``shard``-th shard of held-out oracles (plan.unlearn_shards)."""
    return paths.margins(layout.oracle_family(forget_set), plan.holdout_oracle_shards(config)[shard])


def _datamodel_effect(paths: layout.Layout, config: dict, forget_set: str, shard: int) -> str:
    return paths.datamodel_effect(forget_set)


def _matching_oracles(paths: layout.Layout, config: dict, forget_set: str, shard: int) -> list[str]:
    return [paths.weights(layout.oracle_family(forget_set), s) for s in plan.holdout_oracle_shards(config)]


INPUTS: dict[str, MethodInput] = {  # loaders as literal "module:function" texts: the code fingerprint follows them
    "base_margins": MethodInput("the base models' margins", _base_margins, "unlearnbench.method_inputs:load_margins"),
    "holdout_margins": MethodInput("the held-out oracles' margins, scored as its unlearned models", _holdout_margins,
                                   "unlearnbench.method_inputs:load_margins", held_out_oracles=MIN_SCORED_MODELS,
                                   held_out_models=True),
    "datamodel_effect": MethodInput("Σ_{i∈F} β_i of the pool's datamodels, for margins and logits",
                                    _datamodel_effect, "unlearnbench.method_inputs:load_datamodel_effect",
                                    uses_pool=True),
    "matching_oracles": MethodInput("the held-out oracles' weights, one matched to each base model as its target",
                                    _matching_oracles, "unlearnbench.method_inputs:load_weights", held_out_oracles=1),
}


def kind(name: str) -> MethodInput:
    return registry.find(INPUTS, name, "method input")


def uses_pool(needs: tuple[str, ...]) -> bool:
    """Whether any of ``needs`` is made from the pool of random-half models."""
    return any(kind(name).uses_pool for name in needs)


def held_out_models(needs: tuple[str, ...]) -> bool:
    """Whether a method needing ``needs`` scores held-out oracles as its unlearned models (the oracle draw)."""
    return any(kind(name).held_out_models for name in needs)


def job_inputs(entry, paths: layout.Layout, config: dict, forget_set: str, shard: int) -> dict[str, str | list[str]]:
    """The named input files of one ``unlearn`` job of a method (its registry ``entry``): the base models,
    the splits and the forget set for a method that trains, then each of its ``needs``."""
    files: dict[str, str | list[str]] = {} if entry.kind == "margins" else {
        "weights": paths.weights("base", shard), "splits": paths.splits, "forget_set": paths.forget_set(forget_set)}
    for name in entry.needs:
        files[name] = kind(name).files(paths, config, forget_set, shard)
    return files


def load_all(needs: tuple[str, ...], files: Mapping[str, str | list[str]], device=None) -> dict:
    """Each of ``needs`` loaded from its ``files`` (a job's inputs by need name); a missing or unexpected name
    is an error naming both (the rule and the registry disagree)."""
    if set(files) != set(needs):
        raise ValueError(f"the method needs {sorted(needs)}; the job got {sorted(files)}")
    return {name: registry.load(kind(name).load)(files[name], device) for name in needs}


def load_margins(path: str, device=None) -> dict:
    from .storage import MARGINS_REQUIRED, load_arrays

    return load_arrays(path, MARGINS_REQUIRED)


def load_datamodel_effect(path: str, device=None) -> dict:
    from .storage import load_arrays

    return load_arrays(path, EFFECT_ARRAYS)


def load_weights(paths: list[str], device=None):
    from .stack import ModelStack

    return ModelStack.concat([ModelStack.load(p, device) for p in paths])
