"""SalUn (Fan et al., "SalUn: Empowering Machine Unlearning via Gradient-based Weight Saliency", ICLR 2024):
random-label fine-tuning (:mod:`.random_labels`) that updates only the *salient* weights.

Saliency is the magnitude of the gradient of the forget loss at the original model (the sum over forget
batches of each batch's mean cross-entropy gradient, eval mode, as the paper's ``generate_mask.py``); the
mask keeps the largest fraction ``saliency`` of all weights of a model, one threshold across every layer
(the paper's hard thresholding, 1[|g| >= gamma], with gamma a quantile of all magnitudes; its published
CIFAR-10 runs keep 0.5). Each model gets its own mask. The
gradients of the other weights are zeroed every step; weight decay, added inside the optimiser step, still
reaches them, as in the published code.
"""

from __future__ import annotations

import torch

from ..importance import loss_gradient
from ..loop import Hooks
from .base import Plan, sgd
from .random_labels import relabelled_phases
from .hyperparameters import Fraction


def top_fraction_mask(scores: dict[str, torch.Tensor], fraction: float) -> dict[str, torch.Tensor]:
    """Per model (leading dim), 1 for the ``floor(fraction x D)`` largest of its D scores across all
    tensors, else 0."""
    names = list(scores)
    m = scores[names[0]].shape[0]
    flat = torch.cat([scores[k].reshape(m, -1) for k in names], dim=1)
    keep = int(flat.shape[1] * fraction)
    mask = torch.zeros_like(flat)
    if keep > 0:
        mask.scatter_(1, flat.topk(keep, dim=1).indices, 1.0)
    out, start = {}, 0
    for k in names:
        size = scores[k][0].numel()
        out[k] = mask[:, start:start + size].reshape(scores[k].shape)
        start += size
    return out


def build(ctx, lr: float, saliency: Fraction = 0.5, batch_size: int = 64, **optimiser):
    """``random_labels`` updating only the fraction ``saliency`` of weights with the largest forget-loss gradient
    (one threshold across layers, a mask per model).

    ``optimiser``: momentum, weight_decay, nesterov (:func:`~unlearnbench.methods.base.sgd`)."""

    masks = {}

    def saliency_mask(part, rows):  # before training: the forget gradient's pass counts in the cost
        gradient, samples = loss_gradient(part, ctx.inputs, ctx.labels, ctx.forget[rows], batch_size)
        masks[tuple(rows)] = top_fraction_mask({k: g.abs() for k, g in gradient.items()}, saliency)
        return samples

    hooks = Hooks(before=saliency_mask, grad_mask=lambda part, rows: masks.pop(tuple(rows)))
    return Plan(sgd(**optimiser), relabelled_phases(ctx, lr, batch_size), hooks)
