"""Stage of ``workflow/rules/unlearning.smk``: one method (one grid point) on one shard of models.

The method's registry entry (:mod:`unlearnbench.methods`) says what it runs: a ``margins`` method reads the
margins its ``needs`` name (no torch); a finetune method unlearns the base models; a ``retrain`` method starts
from fresh models of the base models' architecture and indices.
"""

from __future__ import annotations

import logging
import time

log = logging.getLogger(__name__)

EFFECT_ARRAYS = ("margin_effect", "logit_effect")  # datamodel_effect's artefact


def unlearn(margins: str, method: str, hyperparameters: dict, epochs: list[int], seeds: list[int] | None,
            plugins: dict, device: str, models_per_batch: int | None, compile: bool, identity: dict, threads: int = 1,
            weights: str | None = None, splits: str | None = None, forget_set: str | None = None,
            base_margins: str | None = None, holdout_margins: str | None = None,
            datamodel_effect: str | None = None, matching_oracles: list[str] | None = None) -> None:
    """``margins``: the unlearned models' margins at each snapshot epoch in ``epochs`` (see
    :func:`unlearnbench.unlearning.unlearn_stack`), with their ``identity`` (:class:`unlearnbench.identity.Identity`
    fields: data set, model, forget set, method, run, sample)."""
    from .. import identity as identified
    from ..methods import load_build, lookup
    from ..storage import MARGINS_REQUIRED, load_arrays
    from ..unlearning import margins_method

    entry = lookup(method, plugins)
    build = load_build(entry)
    effect = load_arrays(datamodel_effect, EFFECT_ARRAYS) if datamodel_effect else None
    if entry.kind == "margins":
        stored = {"base_margins": base_margins, "holdout_margins": holdout_margins}
        inputs = {name: load_arrays(path, MARGINS_REQUIRED) for name, path in stored.items() if path}
        if effect is not None:
            inputs["datamodel_effect"] = effect
        result = margins_method(build, hyperparameters, inputs)
    else:
        targets = {"forget_logit_effect": effect["logit_effect"]} if effect is not None else None
        result, seconds = _unlearn_models(entry.kind, build, hyperparameters, epochs, weights, splits, forget_set, seeds,
                                 matching_oracles, targets, threads, device, models_per_batch, compile)
        log.info("%s %s: %d models, %d snapshots in %.1f s", method, hyperparameters, len(result["model_index"]),
                 len(result["epochs"]), seconds)
    identified.save_arrays(margins, identified.Identity(**identity), **result)


def _unlearn_models(kind, build, hyperparameters, epochs, weights, splits, forget_set, seeds, matching_oracles,
                    targets, threads, device, models_per_batch, compile) -> tuple[dict, float]:
    """A finetune (or ``retrain``) method on the base models of ``weights``, and the seconds it took."""
    from ..data import load_splits
    from ..device import torch_setup
    from ..stack import ModelStack
    from ..storage import load_npy
    from ..unlearning import unlearn_stack

    dev = torch_setup(threads, device, compile)
    oracles = ModelStack.concat([ModelStack.load(p, dev) for p in matching_oracles]) if matching_oracles else None
    start = time.perf_counter()
    models = ModelStack.load(weights, dev)
    if kind == "retrain":  # from scratch: fresh models of the base models' architecture and indices
        models = ModelStack.initialise(models.arch, models.num_classes, models.in_channels, seeds,
                                       models.model_index, dev)
    result = unlearn_stack(build, hyperparameters, epochs, models, load_splits(splits), load_npy(forget_set),
                           seeds, oracles, models_per_batch, dev, targets=targets)
    return result, time.perf_counter() - start
