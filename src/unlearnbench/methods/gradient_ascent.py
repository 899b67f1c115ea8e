"""Gradient ascent: each epoch one pass over the forget set *maximising* cross-entropy."""

from .base import Plan, cross_entropy, negated, sgd


def build(ctx, lr: float, batch_size: int = 64, **optimiser):
    """``optimiser``: momentum, weight_decay, nesterov (:func:`~unlearnbench.methods.base.sgd`)."""
    forget = ctx.phase(ctx.forget, negated(cross_entropy), lr, batch_size, "ascent")
    return Plan(sgd(**optimiser), lambda epoch: [forget])
