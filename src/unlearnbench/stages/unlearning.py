"""Stage of ``workflow/rules/unlearning.smk``: one method (one grid point) on one shard of models.

The method's registry entry (:mod:`unlearnbench.methods`) says what it runs: a ``margins`` method reads the
inputs its ``needs`` name (no torch); a finetune method unlearns the base models; a ``retrain`` method starts
from fresh models of the base models' architecture and indices. Either gets its ``needs`` loaded by
:mod:`unlearnbench.method_inputs`.
"""

from __future__ import annotations

import logging
import time

log = logging.getLogger(__name__)


def unlearn(margins: str, method: str, hyperparameters: dict, epochs: list[int], seeds: list[int] | None,
            plugins: dict, device: str, models_per_batch: int | None, compile: bool, identity: dict, threads: int = 1,
            weights: str | None = None, splits: str | None = None, forget_set: str | None = None,
            **needs: str | list[str]) -> None:
    """``margins``: the unlearned models' margins at each snapshot epoch in ``epochs`` (see
    :func:`unlearnbench.unlearning.unlearn_stack`), with their ``identity`` (:class:`unlearnbench.identity.Identity`
    fields: data set, model, forget set, method, run, sample). ``needs``: the files of each input the method's
    registry entry needs, by need name (:mod:`unlearnbench.method_inputs`)."""
    from .. import identity as identified
    from ..method_inputs import load_all
    from ..methods import load_build, lookup
    from ..unlearning import margins_method

    entry = lookup(method, plugins)
    build = load_build(entry)
    if entry.kind == "margins":
        result = margins_method(build, hyperparameters, load_all(entry.needs, needs))
    else:
        result, seconds = _unlearn_models(entry, build, hyperparameters, epochs, weights, splits, forget_set, seeds,
                                          needs, threads, device, models_per_batch, compile)
        log.info("%s %s: %d models, %d snapshots in %.1f s", method, hyperparameters, len(result["model_index"]),
                 len(result["epochs"]), seconds)
    identified.save_arrays(margins, identified.Identity(**identity), **result)


def _unlearn_models(entry, build, hyperparameters, epochs, weights, splits, forget_set, seeds, needs, threads, device,
                    models_per_batch, compile) -> tuple[dict, float]:
    """A finetune (or ``retrain``) method on the base models of ``weights``, and the seconds it took."""
    from ..data import load_splits
    from ..device import torch_setup
    from ..method_inputs import load_all
    from ..stack import ModelStack
    from ..storage import load_npy
    from ..unlearning import unlearn_stack

    dev = torch_setup(threads, device, compile)
    needed = load_all(entry.needs, needs, dev)
    start = time.perf_counter()
    models = ModelStack.load(weights, dev)
    if entry.kind == "retrain":  # from scratch: fresh models of the base models' architecture and indices
        models = ModelStack.initialise(models.arch, models.num_classes, models.in_channels, seeds,
                                       models.model_index, dev)
    result = unlearn_stack(build, hyperparameters, epochs, models, load_splits(splits), load_npy(forget_set),
                           seeds, needed, models_per_batch, dev)
    return result, time.perf_counter() - start
