"""EU-k, exact unlearning of the last k layers (Goel et al., "Towards Adversarial Evaluation of Machine
Unlearning", arXiv 2201.06640, 2022): re-initialise the last ``k`` layers (fresh weights and BatchNorm
statistics, seeded per model) and train only them on the retain set; earlier layers stay bit for bit.

Exact only if the earlier layers never depended on the forget set (the paper's assumption: they are generic
features); the benchmark measures how far from exact it is.
"""

from .cf_k import last_layers_plan


def build(ctx, lr: float, k: int = 1, batch_size: int = 64, **optimiser):
    """As ``cf_k``, after re-initialising the last k layers (fresh weights seeded per model).

    ``optimiser``: momentum, weight_decay, nesterov (:func:`~unlearnbench.methods.base.sgd`)."""
    return last_layers_plan(ctx, k, lr, batch_size, True, optimiser)
