"""Ascent + descent: for epochs <= ascent_epochs an ascent pass over the forget set, then every epoch
a descent pass over the retain set."""

from .base import Plan, cross_entropy, negated, sgd
from .hyperparameters import Count


def build(ctx, lr: float, ascent_epochs: Count, forget_batch_size: int = 64, batch_size: int = 64, **optimiser):
    """``optimiser``: momentum, weight_decay, nesterov (:func:`~unlearnbench.methods.base.sgd`)."""
    forget = ctx.phase(ctx.forget, negated(cross_entropy), lr, forget_batch_size, "ascent")
    retain = ctx.phase(ctx.retain, cross_entropy, lr, batch_size, "descent")
    return Plan(sgd(**optimiser), lambda epoch: ([forget] if epoch <= ascent_epochs else []) + [retain])
