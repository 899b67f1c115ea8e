"""Random labels: fine-tune on the forget points, each relabelled with a uniformly random *wrong* class,
interleaved with the retain points (one shuffled pass over both per epoch), cross-entropy.

The relabelling baseline of Golatkar et al. ("Eternal Sunshine of the Spotless Net", CVPR 2020) and Graves
et al. ("Amnesiac Machine Learning", AAAI 2021); the forget + retain interleaving as SalUn's ``RL``
(github.com/OPTML-Group/Unlearn-Saliency, one loader over both). Each model draws its labels once per run,
seeded by its own seed. SalUn's code draws them from *all* classes, so about 1/C of its forget points keep
their true label; here none does.
"""

from __future__ import annotations

import zlib

import numpy as np
import torch

from .base import Plan, cross_entropy, sgd

TARGET = "relabelled"


def relabel(ctx) -> str:
    """Per-model labels of every point (``ctx.targets[TARGET]`` ``[M, P]``): the true label, except a random
    wrong one for each of the model's forget points. Returns the target's name."""
    labels = ctx.labels.cpu().numpy()
    n_classes = ctx.original.num_classes
    table = np.tile(labels, (len(ctx.seeds), 1))
    for m, (seed, row) in enumerate(zip(ctx.seeds, ctx.forget)):
        shift = np.random.default_rng([seed, zlib.crc32(b"random labels")]).integers(1, n_classes, len(row))
        table[m, row] = (labels[row] + shift) % n_classes  # uniform over the other classes
    ctx.targets[TARGET] = torch.as_tensor(table, device=ctx.labels.device)
    return TARGET


def relabelled_phases(ctx, lr: float, batch_size: int):
    """The epoch -> phases of the method: one pass over forget + retain against the relabelled targets."""
    target = relabel(ctx)

    def loss(logits, labels, batch):
        return cross_entropy(logits, ctx.target(target, batch))

    phase = ctx.phase(np.concatenate([ctx.forget, ctx.retain], axis=1), loss, lr, batch_size, "relabelled")
    return lambda epoch: [phase]


def build(ctx, lr: float, batch_size: int = 64, **optimiser):
    """One shuffled pass per epoch over forget + retain points, each forget point relabelled (once per run, per
    model) with a uniformly random *wrong* class.

    ``optimiser``: momentum, weight_decay, nesterov (:func:`~unlearnbench.methods.base.sgd`)."""
    return Plan(sgd(**optimiser), relabelled_phases(ctx, lr, batch_size))
