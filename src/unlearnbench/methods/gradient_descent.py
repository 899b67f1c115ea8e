"""Gradient descent: keep fine-tuning on the retain set (train minus F) with cross-entropy."""

from .base import Plan, cross_entropy, sgd


def build(ctx, lr: float, batch_size: int = 64, **optimiser):
    """``optimiser``: momentum, weight_decay, nesterov (:func:`~unlearnbench.methods.base.sgd`)."""
    retain = ctx.phase(ctx.retain, cross_entropy, lr, batch_size, "descent")
    return Plan(sgd(**optimiser), lambda epoch: [retain])
