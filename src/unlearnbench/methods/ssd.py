"""Selective Synaptic Dampening (Foster et al., "Fast Machine Unlearning without Retraining through
Selective Synaptic Dampening", AAAI 2024): no gradient steps, one edit of the parameters.

With diagonal Fisher importances on the forget set (I_F) and on the model's whole training set (I_D, here
its retain plus forget points), every parameter with ``I_F > alpha * I_D`` is multiplied by
``min(lambda * I_D / I_F, 1)``; the others are untouched, and no parameter grows. Importances are the
published estimator (:func:`unlearnbench.importance.diagonal_fisher`, true labels, squared batch-mean
gradients; github.com/if-loops/selective-synaptic-dampening, ``ssd.py``), in eval mode (the published code
leaves the mode as it finds it). Published CIFAR defaults: alpha 10, lambda 1.

Run it with one snapshot epoch (``epochs: [1]``): the edit happens before epoch 1 and no epoch trains.
"""

from __future__ import annotations

import torch

from ..importance import diagonal_fisher
from ..loop import Hooks
from .base import Plan, sgd
from .hyperparameters import Positive


@torch.no_grad()
def dampen(params: dict[str, torch.Tensor], forget_importance, data_importance, alpha: float, lam: float) -> None:
    """SSD's edit in place: scale parameters selected by ``I_F > alpha I_D`` by ``min(lam I_D / I_F, 1)``."""
    for k, p in params.items():
        f, d = forget_importance[k], data_importance[k]
        selected = f > alpha * d
        factor = torch.where(selected, (lam * d / torch.where(selected, f, 1.0)).clamp(max=1.0), 1.0)
        p.mul_(factor)


def build(ctx, alpha: Positive = 10.0, lam: Positive = 1.0, batch_size: int = 64):
    """``epochs: [1]``: no training, one edit: parameters with forget Fisher > α × training-set Fisher scaled by
    min(λ·I_D/I_F, 1). Its cost is the Fisher passes.
    """
    def edit(part, rows):
        forget, n_forget = diagonal_fisher(part, ctx.inputs, ctx.labels, ctx.forget[rows], batch_size)
        data, n_data = diagonal_fisher(part, ctx.inputs, ctx.labels, ctx.trained_points()[rows], batch_size)
        dampen(part.params, forget, data, alpha, lam)
        return n_forget + n_data

    return Plan(sgd(), lambda epoch: [], Hooks(before=edit))
