"""SCRUB (Kurmanji et al. 2023): a student moves away from the frozen original (the teacher) on the
forget set and stays close to it on the retain set.

The optimiser owns the *student's* parameters (the loop's stack); the teacher is a frozen copy in eval
mode. (The published code gave the optimiser the teacher's parameters, so its student never moved.)
"""

from .base import Plan, cross_entropy, kd_loss, sgd
from .hyperparameters import Count

LR_DECAY_EPOCHS = (3, 5, 9)  # the published schedule: lr x0.1 after each of these epochs


def build(
    ctx,
    lr: float,
    ascent_epochs: Count,
    forget_batch_size: int = 64,
    batch_size: int = 64,
    gamma: float = 0.99,
    alpha: float = 0.1,
    temperature: float = 4.0,
    **optimiser,
):
    """The learning rate drops ×0.1 after epochs 3, 5 and 9.

    ``optimiser``: momentum, weight_decay, nesterov (:func:`~unlearnbench.methods.base.sgd`): plain SGD
    as the published grid by default; the paper-era wrapper's momentum 0.9 and weight decay 5e-4 on
    request (the only published SCRUB whose student trained, spec §10)."""

    def forget_loss(logits, labels, batch):  # max-step: push the student away from the teacher
        return -kd_loss(logits, ctx.original_logits(batch), temperature)

    def retain_loss(logits, labels, batch):  # min-step: fit the labels, stay close to the teacher
        kd = kd_loss(logits, ctx.original_logits(batch), temperature)
        return gamma * cross_entropy(logits, labels) + alpha * kd

    def phases(epoch: int):
        epoch_lr = lr * 0.1 ** sum(epoch > d for d in LR_DECAY_EPOCHS)
        forget = ctx.phase(ctx.forget, forget_loss, epoch_lr, forget_batch_size, "max")
        retain = ctx.phase(ctx.retain, retain_loss, epoch_lr, batch_size, "min")
        return ([forget] if epoch <= ascent_epochs else []) + [retain]

    return Plan(sgd(**optimiser), phases)
