"""NegGrad+ (Kurmanji et al., "Towards Unbounded Machine Unlearning", NeurIPS 2023): every step a retain
batch and a forget batch, loss ``beta * CE(retain batch) - (1 - beta) * CE(forget batch)``.

An epoch is one pass over the retain set with the forget set cycled alongside, as the public NegGrad+ code
in the SalUn family of code bases does (``negative_grad``: ``zip(retain loader, cycle(forget loader))``, a
forward per batch, the loss weighted by ``alpha`` there, ``beta`` here). There ``itertools.cycle`` replays
the first pass's forget batches; here each pass over the forget set is a fresh per-model shuffle (not
measured: it changes only which forget batch meets which retain batch after the first pass).
"""

from .base import Plan, cross_entropy, sgd
from .hyperparameters import Weight


def build(ctx, lr: float, beta: Weight, batch_size: int = 64, forget_batch_size: int = 64, **optimiser):
    """Each step β·CE(retain batch) − (1−β)·CE(forget batch); an epoch is one pass over the retain set, forget
    batches cycled alongside (a forward each).

    ``optimiser``: momentum, weight_decay, nesterov (:func:`~unlearnbench.methods.base.sgd`)."""

    def loss(logits, labels, batch):
        n = batch.n_main  # retain points first, then the forget batch
        retain = cross_entropy(logits[:, :n], labels[:, :n])
        forget = cross_entropy(logits[:, n:], labels[:, n:])
        return beta * retain - (1 - beta) * forget

    phase = ctx.phase(ctx.retain, loss, lr, batch_size, "neggrad+")
    phase.paired, phase.paired_batch_size = ctx.forget, int(forget_batch_size)
    return Plan(sgd(**optimiser), lambda epoch: [phase])
