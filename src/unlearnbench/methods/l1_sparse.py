"""l1-sparse unlearning (Jia et al., "Model Sparsity Can Simplify Machine Unlearning", NeurIPS 2023):
fine-tune on the retain set with cross-entropy plus ``alpha_t * ||theta||_1`` over all parameters, the
coefficient decaying linearly over the run, ``alpha_t = alpha * (1 - (t - 1) / T)`` in epoch t of T.

As the paper's ``FT_l1`` (github.com/OPTML-Group/Unlearn-Sparse, ``unlearn/FT.py``, with its
``no_l1_epochs`` 0). T is the run's last snapshot epoch: an earlier snapshot is a point on that schedule,
not the end of a shorter one.
"""

from __future__ import annotations

import torch

from ..loop import Hooks
from .base import Plan, cross_entropy, sgd
from .hyperparameters import NonNegative


def l1_norm(params: dict[str, torch.Tensor]) -> torch.Tensor:
    """Per-model l1 norm of all parameters: ``[M]``."""
    return sum(p.abs().flatten(1).sum(1) for p in params.values())


def build(ctx, lr: float, alpha: NonNegative, batch_size: int = 64, **optimiser):
    """Retain fine-tuning plus α·(1 − (t−1)/T)·‖θ‖₁ in epoch t of T (T = the last snapshot epoch).

    ``optimiser``: momentum, weight_decay, nesterov (:func:`~unlearnbench.methods.base.sgd`)."""
    epochs = max(1, ctx.epochs)

    def penalty(params, rows, epoch):
        return alpha * (1 - (epoch - 1) / epochs) * l1_norm(params)

    retain = ctx.phase(ctx.retain, cross_entropy, lr, batch_size, "descent")
    return Plan(sgd(**optimiser), lambda epoch: [retain], Hooks(penalty=penalty))
