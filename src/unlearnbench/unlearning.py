"""Run one unlearning method (one grid point) on one shard of base models; keep margins per snapshot."""

from __future__ import annotations

import logging

import numpy as np
import torch

from .data import Splits
from .forget_sets import retain_points
from .loop import run_loop
from .margins import stack_margins
from .methods.base import UnlearningContext
from .stack import ModelStack

log = logging.getLogger(__name__)


def unlearn_stack(
    build,
    hyperparameters: dict,
    snapshot_epochs: list[int],
    base: ModelStack,
    splits: Splits,
    forget: np.ndarray,
    seeds: list[int],
    matching_oracles: ModelStack | None = None,
    models_per_batch: int | None = None,
    device: str = "cpu",
    retain: np.ndarray | None = None,
    targets: dict[str, np.ndarray] | None = None,
) -> dict[str, np.ndarray]:
    """Apply a finetune method (its ``build``) to every model of ``base``; margins at each snapshot epoch.

    ``forget`` is one forget set ``[n]`` shared by all models or one request per model ``[M, n]``;
    ``retain`` defaults to the train split minus ``forget`` (U-LiRA passes each pool model's own).
    ``targets`` are extra per-point targets for the method, e.g. ``{"forget_effect": [P, C]}``.

    Returns arrays ``margins [S, M, P]``, ``epochs [S]``, ``samples [S, M]`` (samples through
    forward+backward up to the snapshot), ``diverged [S, M]`` and ``model_index [M]``.
    """
    inputs = splits.images(device)
    labels = torch.from_numpy(splits.labels()).to(device)
    ctx = UnlearningContext(
        inputs=inputs,
        labels=labels,
        forget=np.asarray(forget, dtype=np.int64),
        retain=retain_points(forget, splits.n_train) if retain is None else retain,
        original=base.copy(),
        seeds=list(seeds),
    )
    for name, value in (targets or {}).items():
        ctx.targets[name] = torch.as_tensor(value, device=device)
    if matching_oracles is not None:
        # slot i matches held-out oracle i mod H: disjoint from the oracles KLOM is scored against
        logits = matching_oracles.logits(inputs)
        rows = np.arange(base.n_models) % matching_oracles.n_models
        ctx.targets["oracle_logits"] = logits[torch.as_tensor(rows, device=logits.device)]
    plan = build(ctx, **hyperparameters)
    snapshots = sorted(set(int(e) for e in snapshot_epochs))

    def snapshot(epoch: int, part: ModelStack, _rows) -> np.ndarray | None:
        return stack_margins(part, inputs, labels) if epoch in snapshots else None

    record = run_loop(base, inputs, labels, seeds, plan.optimiser, max(snapshots), plan.phases, snapshot,
                      models_per_batch)
    margins = np.stack([record.snapshots[e] for e in snapshots])
    # diverged: non-finite loss, weights or BatchNorm statistics, or margins that overflowed
    diverged = np.stack([record.diverged[e] for e in snapshots]) | ~np.isfinite(margins).all(axis=-1)
    margins[diverged] = np.nan  # a diverged model's margins are meaningless; scoring saturates them
    for e, d in zip(snapshots, diverged):
        if d.any():
            log.warning("epoch %d: %d of %d models diverged (non-finite loss or weights)", e, d.sum(), len(d))
    return {
        "margins": margins.astype(np.float32),
        "epochs": np.asarray(snapshots, dtype=np.int64),
        "samples": np.stack([record.samples[e] for e in snapshots]),
        "diverged": diverged,
        "model_index": base.model_index,
    }


def margins_method(build, hyperparameters: dict, inputs: dict) -> dict[str, np.ndarray]:
    """A ``margins`` method (no training): one snapshot at epoch 0, no cost."""
    margins, model_index = build(inputs, **hyperparameters)
    m = len(model_index)
    return {
        "margins": np.asarray(margins, dtype=np.float32)[None],
        "epochs": np.zeros(1, dtype=np.int64),
        "samples": np.zeros((1, m), dtype=np.int64),
        "diverged": ~np.isfinite(margins).all(axis=1)[None],
        "model_index": np.asarray(model_index, dtype=np.int64),
    }
