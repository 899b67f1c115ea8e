"""Oracle matching: regress the model's logits onto an oracle's logits (squared error) on the forget
set plus a fresh retain subsample of ``retain_multiplier`` x |F| points each epoch.

The target oracles are held-out ones, disjoint from the oracles KLOM is scored against: matching the
scored oracles would overfit the metric.
"""

import numpy as np

from ..loop import Optimiser
from .base import Plan


def build(ctx, lr: float, retain_multiplier: int = 20, batch_size: int = 64):
    def loss(logits, labels, batch):
        return (logits - ctx.target("oracle_logits", batch)).pow(2).mean(dim=(1, 2))

    def phases(epoch: int):
        retain = ctx.sample_per_model(ctx.retain, retain_multiplier * len(ctx.forget), epoch, "retain")
        forget = np.broadcast_to(ctx.forget, (len(retain), len(ctx.forget)))
        return [ctx.phase(np.concatenate([forget, retain], axis=1), loss, lr, batch_size, "match")]

    return Plan(Optimiser("adam"), phases)
