"""Oracle matching: regress the model's logits onto an oracle's logits (squared error) on the forget
set plus a fresh retain subsample of ``retain_multiplier`` x |F| points each epoch.

The target oracles are held-out ones, disjoint from the oracles KLOM is scored against: matching the
scored oracles would overfit the metric. Datamodel matching (``dm_matching``) is the same loop towards
datamodel-predicted oracle logits.
"""

import numpy as np

from .base import Plan, adam


def matching(ctx, target: str, lr: float, retain_multiplier: int, forget_multiplier: int, batch_size: int,
             weight_decay: float = 0.0):
    """Adam on squared error to ``ctx.targets[target]`` over (forget x forget_multiplier) + retain sample."""

    def loss(logits, labels, batch):
        return (logits - ctx.target(target, batch)).pow(2).mean(dim=(1, 2))

    def phases(epoch: int):
        retain = ctx.sample_per_model(ctx.retain, retain_multiplier * ctx.forget.shape[1], epoch, "retain")
        points = np.concatenate([np.tile(ctx.forget, forget_multiplier), retain], axis=1)
        return [ctx.phase(points, loss, lr, batch_size, "match")]

    return Plan(adam(weight_decay), phases)


def build(ctx, lr: float, retain_multiplier: int = 20, forget_multiplier: int = 1, batch_size: int = 64,
          weight_decay: float = 0.0):
    """Adam (``weight_decay`` is Adam's)."""
    return matching(ctx, "oracle_logits", lr, retain_multiplier, forget_multiplier, batch_size, weight_decay)
