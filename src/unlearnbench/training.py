"""The training recipe: SGD with a per-iteration triangular learning rate, the whole thing in one place.

lr(step) = peak * min(step / warmup_steps, (total - step) / (total - warmup_steps)), clipped at 0, so the
very first step has lr 0 (as the published CIFAR-10 recipe). Cross-entropy with optional label smoothing,
optional per-model data augmentation (:mod:`unlearnbench.augment`).

:class:`Recipe` mirrors the config's ``train`` section: its defaults are the schema's
(``workflow/schemas/config.schema.yaml``; a test checks that they agree), so a recipe built in Python
trains as the same config would.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .augment import Augment
from .loop import Optimiser, Phase, Progress, even_batches, run_loop
from .stack import ModelStack


@dataclass(frozen=True)
class Recipe:
    epochs: int
    batch_size: int
    lr: float
    optimizer: str = "sgd"
    peak_epoch: float = 0.0  # where the triangle peaks; 0 = start at the peak and decay
    schedule: str = "triangle"  # "triangle" or "constant"
    weight_decay: float = 0.0
    weight_decay_batchnorm: bool = True  # False: BatchNorm weights and biases get no weight decay
    momentum: float = 0.0
    nesterov: bool = False
    label_smoothing: float = 0.0
    augment: Augment = Augment()

    @classmethod
    def from_config(cls, cfg: dict) -> Recipe:
        cfg = dict(cfg)
        augment = Augment.from_config(cfg.pop("augment", None))
        return cls(**cfg, augment=augment)


def mixed_precision(device: str) -> bool:
    """bf16 autocast for every family trained on a GPU (base, oracles, pool, U-LiRA's retrained oracles)."""
    return str(device).startswith("cuda")


def lr_at(recipe: Recipe, step: int, steps_per_epoch: int) -> float:
    """Learning rate at global optimiser step ``step`` (0-based)."""
    if recipe.schedule == "constant":
        return recipe.lr
    total = recipe.epochs * steps_per_epoch
    warmup = recipe.peak_epoch * steps_per_epoch
    if step < warmup:
        return recipe.lr * step / warmup
    return recipe.lr * max(0.0, (total - step) / max(total - warmup, 1e-12))


def cross_entropy_loss(label_smoothing: float = 0.0):
    def loss(logits: torch.Tensor, labels: torch.Tensor, _batch) -> torch.Tensor:
        m, b, c = logits.shape
        per_sample = F.cross_entropy(logits.reshape(m * b, c), labels.reshape(-1), reduction="none",
                                     label_smoothing=label_smoothing)
        return per_sample.view(m, b).mean(dim=1)

    return loss


def train_stack(
    stack: ModelStack,
    inputs: torch.Tensor,
    labels: torch.Tensor,
    train_points: np.ndarray,
    seeds,
    recipe: Recipe,
    models_per_batch: int | None = None,
    amp: bool = False,
    eval_points: dict[str, np.ndarray] | None = None,
    label: str = "train",
):
    """Train every model of ``stack`` from its current weights on ``train_points`` with ``recipe``.

    The log gets a progress line per epoch and, five times per run, the argmax accuracy on a subsample of
    each group of ``eval_points`` (default: the train points; pass e.g. the validation points too).
    """
    train_points = np.asarray(train_points)
    steps_per_epoch = len(even_batches(train_points.shape[-1], recipe.batch_size))
    loss = cross_entropy_loss(recipe.label_smoothing)

    def phases(epoch: int) -> list[Phase]:
        offset = (epoch - 1) * steps_per_epoch
        return [Phase(train_points, recipe.batch_size, loss, lambda s: lr_at(recipe, offset + s, steps_per_epoch),
                      "train", recipe.augment)]

    progress = Progress(label, eval_points or {"train": train_points})
    optimiser = Optimiser(recipe.optimizer, recipe.momentum, recipe.nesterov, recipe.weight_decay,
                          recipe.weight_decay_batchnorm)
    return run_loop(stack, inputs, labels, seeds, optimiser, recipe.epochs, phases, None, models_per_batch, amp,
                    progress)
