"""A training recipe's whole schedule compressed into a fraction of its steps: the `retrain` baseline.

The successor benchmark (Easy Data Unlearning Bench, arXiv 2602.16400) draws models *retrained* from scratch
on the retain set against their compute: the curve every unlearning method has to beat at equal cost. A
retraining with budget ``b`` is not an early checkpoint of the full schedule (that one would stop at a high
learning rate): it runs the recipe's whole learning-rate curve squeezed into ``b`` of its steps.

- ``steps_per_epoch`` = the recipe's batches per epoch over the retain set (``ceil(n / batch_size)``);
- total steps ``T = max(1, round(b * epochs * steps_per_epoch))``; budget 1 is the full recipe (an oracle);
- the learning rate at step ``s`` is the full recipe's at step ``s / b``: a triangle peaks after
  ``b * peak_epoch`` epochs' worth of steps and reaches 0 at ``T``;
- the loop runs ``ceil(T / steps_per_epoch)`` epochs: full passes over the retain set, then a last partial
  epoch of the remaining steps over a seeded subset of the retain points (the same batch size).

The cost is then ``T`` batches, about ``b`` x the samples of one full training (``relative_cost`` ≈ b, a
little less since the retain set is smaller than the train set).

Pure arithmetic (no torch): the workflow derives a retraining's snapshot epoch from it at parse time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


def last_epoch(budget: float, epochs: int) -> int:
    """The loop epoch a budget-``budget`` retraining ends in, for any number of steps per epoch.

    ``ceil(T / steps_per_epoch)`` never exceeds ``ceil(budget * epochs)`` (``T`` rounds ``budget * epochs *
    steps_per_epoch``); the tolerance keeps ``0.1 * 30 = 3.0000000000000004`` at 3.
    """
    return max(1, math.ceil(budget * epochs - 1e-9))


@dataclass(frozen=True)
class CompressedSchedule:
    budget: float
    epochs: int  # the full recipe's epochs
    steps_per_epoch: int  # batches of one full pass over the points trained on

    @property
    def total_steps(self) -> int:
        return max(1, round(self.budget * self.epochs * self.steps_per_epoch))

    @property
    def loop_epochs(self) -> int:
        return -(-self.total_steps // self.steps_per_epoch)

    def steps_in_epoch(self, epoch: int) -> int:
        """Optimiser steps in loop epoch ``epoch`` (1-based): a full epoch, the partial last one, or 0."""
        before = (epoch - 1) * self.steps_per_epoch
        return max(0, min(self.steps_per_epoch, self.total_steps - before))

    def points_in_epoch(self, epoch: int, n_points: int) -> int:
        """Points a loop epoch iterates over: all ``n_points`` in a full epoch; in the partial one, as many as
        its steps take at the full epoch's batch size (so its batches are as large as the others)."""
        steps = self.steps_in_epoch(epoch)
        if steps == self.steps_per_epoch:
            return n_points
        return round(steps * n_points / self.steps_per_epoch)

    def full_recipe_step(self, step: int) -> float:
        """The full recipe's step whose learning rate compressed step ``step`` uses."""
        return step / self.budget
