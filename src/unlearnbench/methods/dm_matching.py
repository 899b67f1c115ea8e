"""Datamodel matching (DMM): oracle matching towards *predicted* oracle logits, no oracle needed.

The prediction is the model's own logits minus the datamodel-attributed effect of the forget points,
f̂(x) = f(x) − Σ_{i∈F} β_i(x), with β fitted on the pool of random-half models.
"""

import torch

from .oracle_matching import matching


def build(ctx, lr: float = 1e-4, retain_multiplier: int = 20, forget_multiplier: int = 5, batch_size: int = 512,
          effect_multiplier: float = 1.0, weight_decay: float = 0.0):
    """As ``oracle_matching`` (Adam) towards predicted oracle logits = own logits − ``effect_multiplier`` · Σ_{i∈F}
    β_i; needs a pool or ``datamodels.import``.
    """
    effect = torch.as_tensor(ctx.needed["datamodel_effect"]["logit_effect"], device=ctx.labels.device)  # [P, C]
    ctx.targets["dm_logits"] = ctx.original.logits(ctx.inputs) - effect_multiplier * effect
    return matching(ctx, "dm_logits", lr, retain_multiplier, forget_multiplier, batch_size, weight_decay)
