"""Fisher forgetting (Golatkar et al., "Eternal Sunshine of the Spotless Net", CVPR 2020): no gradient
steps; Gaussian noise scaled by the inverse diagonal Fisher information of the retain set.

As the paper's code (github.com/AdityaGolatkar/SelectiveForgetting, ``Forgetting.ipynb``): the Fisher is the
expectation over the model's predictive distribution (:func:`unlearnbench.importance.diagonal_fisher`,
``"expected"``; batch size 1 there, ``batch_size`` here), the variance of a weight
``alpha * min(1 / (F + 1e-8), 1e3)`` (cap 1e2 in the output layer), averaged over the input dimension
(dim 1) for weights of two or more dimensions, and x10 for the output layer and one-dimensional parameters
(BatchNorm); each weight becomes ``theta + sqrt(var) * N(0, 1)``. The published code finds the output
layer by its size (first dimension = classes); here it is the last layer by name
(:mod:`unlearnbench.named_layers`). Its class-forgetting branch (zero the class's output weights) does not
apply to forgetting arbitrary points and is left out. Noise is drawn per model from its own seed.

Run it with one snapshot epoch (``epochs: [1]``): the edit happens before epoch 1 and no epoch trains.
"""

from __future__ import annotations

import torch

from ..importance import diagonal_fisher
from ..loop import Hooks
from ..named_layers import last_layers
from ..seeds import derive_seed
from .base import Plan, sgd
from .hyperparameters import Positive


def noise_variance(fisher: torch.Tensor, alpha: float, output_layer: bool) -> torch.Tensor:
    """The published per-weight variance for one stacked parameter ``[M, ...]``."""
    var = (1.0 / (fisher + 1e-8)).clamp(max=1e2 if output_layer else 1e3) * alpha
    if var.dim() > 2:  # a weight of two or more dimensions per model: the mean over its input dimension
        var = var.mean(dim=2, keepdim=True).expand_as(var)
    if output_layer or var.dim() == 2:
        var = var * 10
    return var


def build(ctx, alpha: Positive, batch_size: int = 1):
    """``epochs: [1]``, ``batch_size`` 1 as published: no training, one edit: Gaussian noise of variance α/(retain
    Fisher) (published caps and ×10 for the output layer and BatchNorm). Cost: the Fisher passes, a backward per
    class.
    """
    @torch.no_grad()
    def noise(part, rows, fisher, head):
        for m, row in enumerate(rows):
            gen = torch.Generator().manual_seed(derive_seed("fisher noise", ctx.seeds[row]))
            for k, p in part.params.items():  # name order: the same draws whatever the slice
                std = noise_variance(fisher[k][m:m + 1], alpha, k in head)[0].sqrt()
                p[m] += std * torch.randn(p.shape[1:], generator=gen, dtype=p.dtype).to(p.device)

    def edit(part, rows):
        fisher, samples = diagonal_fisher(part, ctx.inputs, ctx.labels, ctx.retain[rows], batch_size, "expected")
        noise(part, rows, fisher, set(last_layers(part, 1)))
        return samples

    return Plan(sgd(), lambda epoch: [], Hooks(before=edit))
