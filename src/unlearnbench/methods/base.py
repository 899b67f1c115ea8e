"""What every method shares: the context it sees, the plan it returns, and the common losses."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from ..loop import Batch, Optimiser, Phase
from ..stack import ModelStack


@dataclass
class Plan:
    optimiser: Optimiser
    phases: Callable[[int], list[Phase]]  # epoch (1-based) -> phases of that epoch, in order


@dataclass
class UnlearningContext:
    """Everything a finetune method may use, for one shard of base models and one forget set."""

    inputs: torch.Tensor  # every point, train then val, normalised
    labels: torch.Tensor
    forget: np.ndarray  # train indices to forget
    retain: np.ndarray  # train indices to keep
    original: ModelStack  # frozen copy of the models before unlearning (e.g. SCRUB's teacher)
    seeds: list[int]
    targets: dict[str, torch.Tensor] = field(default_factory=dict)  # per-model targets, e.g. oracle logits

    def phase(self, points: np.ndarray, loss, lr, batch_size: int, name: str) -> Phase:
        return Phase(np.asarray(points), int(batch_size), loss, float(lr) if not callable(lr) else lr, name)


def sgd(momentum: float = 0.0, weight_decay: float = 0.0) -> Optimiser:
    """The published unlearning optimiser: plain SGD."""
    return Optimiser("sgd", momentum=momentum, weight_decay=weight_decay)


# losses: (logits [M, B, C], labels [M, B], batch) -> per-model loss [M] ---------------------------


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor, _batch: Batch | None = None) -> torch.Tensor:
    m, b, c = logits.shape
    return F.cross_entropy(logits.reshape(m * b, c), labels.reshape(-1), reduction="none").view(m, b).mean(1)


def negated(loss):
    """Gradient *ascent* on ``loss``."""

    def ascent(logits, labels, batch):
        return -loss(logits, labels, batch)

    return ascent
