"""CF-k, catastrophic forgetting of the last k layers (Goel et al., "Towards Adversarial Evaluation of Machine
Unlearning", arXiv 2201.06640, 2022): fine-tune only the last ``k`` layers on the retain set
(cross-entropy); every earlier layer keeps its weights and BatchNorm statistics bit for bit.

"Layer" as :mod:`unlearnbench.named_layers` (a convolution or linear layer with its BatchNorm). EU-k
(:mod:`.eu_k`) re-initialises those layers first.
"""

from __future__ import annotations

from ..loop import Hooks
from ..named_layers import last_layers, reinitialise
from .base import Plan, cross_entropy, sgd


def last_layers_plan(ctx, k: int, lr: float, batch_size: int, reinitialised: bool, optimiser: dict) -> Plan:
    """Train the last ``k`` layers on the retain set, the rest frozen; ``reinitialised``: from fresh weights."""
    trained = set(last_layers(ctx.original, int(k)))
    frozen = frozenset(ctx.original.params) - trained
    before = None
    if reinitialised:
        fresh = ctx.fresh_models("eu_k")

        def before(part, rows):
            reinitialise(part, fresh.select(rows), sorted(trained))

    retain = ctx.phase(ctx.retain, cross_entropy, lr, batch_size, "descent")
    return Plan(sgd(**optimiser), lambda epoch: [retain], Hooks(before=before, frozen=frozen))


def build(ctx, lr: float, k: int = 1, batch_size: int = 64, **optimiser):
    """Fine-tune only the last k layers on the retain set (a layer = a conv/linear with its BatchNorm); earlier
    layers stay bit-identical, BatchNorm statistics included.

    ``optimiser``: momentum, weight_decay, nesterov (:func:`~unlearnbench.methods.base.sgd`)."""
    return last_layers_plan(ctx, k, lr, batch_size, False, optimiser)
