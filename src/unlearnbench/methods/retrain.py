"""Compute-matched retraining: fresh models trained on the retain set with the training recipe compressed into
``budget`` of its steps (:mod:`unlearnbench.compressed_schedule`); the curve every method must beat at equal
cost (the successor benchmark's "retrained" baseline, arXiv 2602.16400). Budget 1 is the full recipe: an oracle.

The models start from fresh weights seeded by (unlearn, method, run, forget set, model index): the job
re-initialises the base models' architecture (registry kind ``retrain``); the base weights are not used.
The recipe's optimiser, loss, augmentation and learning-rate curve are the training stage's (:mod:`unlearnbench.training`).
"""

from __future__ import annotations

from ..compressed_schedule import CompressedSchedule
from ..loop import Optimiser, even_batches
from ..training import Recipe, cross_entropy_loss, lr_at
from .base import Plan
from .hyperparameters import Budget


def build(ctx, budget: Budget, recipe: dict):
    """A grid axis of budgets is the baseline's curve; no ``epochs``: one snapshot, at the end of the compressed
    schedule.
    """
    recipe = Recipe.from_config(recipe)
    n_retain = ctx.retain.shape[1]
    steps_per_epoch = len(even_batches(n_retain, recipe.batch_size))
    schedule = CompressedSchedule(float(budget), recipe.epochs, steps_per_epoch)
    loss = cross_entropy_loss(recipe.label_smoothing)

    def phases(epoch: int):
        size = schedule.points_in_epoch(epoch, n_retain)
        if size == 0:
            return []  # past the end of the compressed schedule: the loop idles until the snapshot epoch
        # the last, partial epoch: a fresh seeded subset of each model's retain points
        points = ctx.retain if size == n_retain else ctx.sample_per_model(ctx.retain, size, epoch, "partial epoch")
        offset = (epoch - 1) * steps_per_epoch

        def lr(step: int) -> float:
            return lr_at(recipe, schedule.full_recipe_step(offset + step), steps_per_epoch)

        return [ctx.phase(points, loss, lr, recipe.batch_size, "retrain", recipe.augment)]

    optimiser = Optimiser(recipe.optimizer, recipe.momentum, recipe.nesterov, recipe.weight_decay,
                          recipe.weight_decay_batchnorm)
    return Plan(optimiser, phases)
