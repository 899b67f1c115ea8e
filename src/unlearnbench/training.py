"""The training recipe: SGD with a per-iteration triangular learning rate, the whole thing in one place.

lr(step) = peak * min(step / warmup_steps, (total - step) / (total - warmup_steps)), clipped at 0, so the
very first step has lr 0 (as the published CIFAR-10 recipe). Cross-entropy with optional label smoothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .loop import Optimiser, Phase, even_batches, run_loop
from .stack import ModelStack

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Recipe:
    epochs: int = 15
    batch_size: int = 64
    optimizer: str = "sgd"
    lr: float = 0.1
    peak_epoch: float = 3.0  # where the triangle peaks; 0 = start at the peak and decay
    schedule: str = "triangle"  # "triangle" or "constant"
    weight_decay: float = 5e-4
    weight_decay_batchnorm: bool = True  # False: BatchNorm weights and biases get no weight decay
    momentum: float = 0.9
    nesterov: bool = False
    label_smoothing: float = 0.0

    @classmethod
    def from_config(cls, cfg: dict) -> Recipe:
        return cls(**cfg)


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
):
    """Train every model of ``stack`` from its current weights on ``train_points`` with ``recipe``."""
    train_points = np.asarray(train_points)
    steps_per_epoch = len(even_batches(train_points.shape[-1], recipe.batch_size))
    loss = cross_entropy_loss(recipe.label_smoothing)

    def phases(epoch: int) -> list[Phase]:
        offset = (epoch - 1) * steps_per_epoch
        return [Phase(train_points, recipe.batch_size, loss, lambda s: lr_at(recipe, offset + s, steps_per_epoch), "train")]

    def report(epoch, part, rows):
        if epoch == recipe.epochs or epoch % max(1, recipe.epochs // 5) == 0:
            with torch.no_grad():
                pts = torch.as_tensor(train_points if train_points.ndim == 1 else train_points[0])
                logits = part.forward(inputs[pts[:2048]], train=False)
                acc = (logits.argmax(-1) == labels[pts[:2048]]).float().mean().item()
            log.info("models %s-%s epoch %d/%d train accuracy %.3f", part.model_index[0], part.model_index[-1],
                     epoch, recipe.epochs, acc)

    optimiser = Optimiser(recipe.optimizer, recipe.momentum, recipe.nesterov, recipe.weight_decay,
                          recipe.weight_decay_batchnorm)
    return run_loop(stack, inputs, labels, seeds, optimiser, recipe.epochs, phases, report, models_per_batch, amp)
