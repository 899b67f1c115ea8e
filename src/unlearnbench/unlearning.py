"""Run one unlearning method (one grid point) on one shard of base models; keep margins per snapshot.

Per-model pairings are keyed by the model's *global* index in its family (``model_index``), never by its row
inside the shard: a shard of base models 25..49 is paired exactly as those models would be in one big job.
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from .data import Splits
from .forget_sets import retain_points
from .loop import Progress, run_loop
from .margins import stack_outputs
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
    needed: dict | None = None,
    models_per_batch: int | None = None,
    device: str = "cpu",
    retain: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Apply a finetune method (its ``build``) to every model of ``base``; margins at each snapshot epoch.

    ``forget`` is one forget set ``[n]`` shared by all models or one request per model ``[M, n]``;
    ``retain`` defaults to the train split minus ``forget`` (U-LiRA passes each pool model's own).
    ``needed``: the inputs the method's registry entry needs, loaded, by need name (``ctx.needed``; see
    :mod:`unlearnbench.method_inputs`), e.g. the held-out oracles that oracle matching pairs with the models.

    Returns arrays ``margins [S, M, P]``, ``correct [S, M, P]`` (argmax correctness, bool), ``epochs [S]``,
    ``samples [S, M]`` (samples through forward+backward up to the snapshot), ``diverged [S, M]`` and
    ``model_index [M]``.
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
        needed=dict(needed or {}),
    )
    snapshots = sorted(set(int(e) for e in snapshot_epochs))
    if snapshots[0] < 1:
        raise ValueError(f"snapshot epochs of a finetune method start at 1, got {snapshots}")
    ctx.epochs = snapshots[-1]
    plan = build(ctx, **hyperparameters)
    n_points = len(labels)
    margins = np.full((len(snapshots), base.n_models, n_points), np.nan, dtype=np.float32)
    correct = np.zeros((len(snapshots), base.n_models, n_points), dtype=bool)

    def snapshot(epoch: int, part: ModelStack, rows: np.ndarray) -> None:
        if epoch in snapshots:
            s = snapshots.index(epoch)
            margins[s, rows], correct[s, rows] = stack_outputs(part, inputs, labels)
            log.info("unlearn models %d-%d: epoch %d accuracy (mean over models, every point): %s", rows[0], rows[-1],
                     epoch, snapshot_accuracy(correct[s, rows], ctx.forget[rows], ctx.retain[rows], splits.n_train))

    # the progress lines take their accuracy from the snapshots, which classify every point anyway, rather than
    # from another forward pass of their own at report epochs
    record = run_loop(base, inputs, labels, seeds, plan.optimiser, max(snapshots), plan.phases, snapshot,
                      models_per_batch, hooks=plan.hooks, progress=Progress(eval_epochs=lambda epoch: False))
    # diverged: non-finite loss, weights or BatchNorm statistics, or margins that overflowed
    diverged = np.stack([record.diverged[e] for e in snapshots]) | ~np.isfinite(margins).all(axis=-1)
    margins[diverged] = np.nan  # a diverged model's margins are meaningless; scoring saturates them
    correct[diverged] = False  # and it classifies nothing (the argmax of non-finite logits means nothing)
    for e, d in zip(snapshots, diverged):
        if d.any():
            log.warning("epoch %d: %d of %d models diverged (non-finite loss or weights)", e, d.sum(), len(d))
    return {
        "margins": margins,
        "correct": correct,
        "epochs": np.asarray(snapshots, dtype=np.int64),
        "samples": np.stack([record.samples[e] for e in snapshots]),
        "diverged": diverged,
        "model_index": base.model_index,
    }


def snapshot_accuracy(correct: np.ndarray, forget: np.ndarray, retain: np.ndarray, n_train: int) -> str:
    """``"forget a, retain b, val c"``: argmax accuracy over every point of each group, the mean over models.
    ``correct [M, P]``; ``forget`` / ``retain`` ``[M, n]``: each model's own points (the context's rows)."""
    def over(points: np.ndarray) -> float:
        return float(np.take_along_axis(correct, points, axis=1).mean()) if points.shape[-1] else float("nan")

    val = float(correct[:, n_train:].mean()) if correct.shape[1] > n_train else float("nan")
    return f"forget {over(forget):.3f}, retain {over(retain):.3f}, val {val:.3f}"


def margins_method(build, hyperparameters: dict, inputs: dict) -> dict[str, np.ndarray]:
    """A ``margins`` method (no training): one snapshot at epoch 0, no cost.

    ``build`` returns ``(margins [M, P], model_index [M], correct [M, P] or None)``: the argmax correctness
    of the models whose margins these are, or None where no logits stand behind the margins (DM-direct's
    predicted margins; imported margins). Then no ``correct`` array is stored and accuracy is unknown (NaN).
    """
    margins, model_index, correct = build(inputs, **hyperparameters)
    m = len(model_index)
    margins = np.asarray(margins, dtype=np.float32)
    out = {
        "margins": margins[None],
        "epochs": np.zeros(1, dtype=np.int64),
        "samples": np.zeros((1, m), dtype=np.int64),
        "diverged": ~np.isfinite(margins).all(axis=1)[None],
        "model_index": np.asarray(model_index, dtype=np.int64),
    }
    if correct is not None:
        out["correct"] = np.asarray(correct, dtype=bool)[None]
    return out
