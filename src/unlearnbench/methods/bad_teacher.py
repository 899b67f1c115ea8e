"""Bad teacher (Chundawat et al., "Can Bad Teaching Induce Forgetting? Unlearning in Deep Networks Using an
Incompetent Teacher", AAAI 2023): distil from the frozen original on retain points and from a randomly
initialised ("incompetent") teacher on forget points.

Loss: KL(teacher || student) of softmax(logits / T), the teacher's distribution chosen per point, averaged
over points *and classes* (``F.kl_div``'s default ``mean``, as the published ``UnlearnerLoss``). Each epoch
sees the forget set plus a fresh random ``retain_fraction`` of the retain set (published: 30%, one epoch, so
one subset), shuffled together. Both teachers in eval mode. Published: Adam, lr 1e-4, batch 256, T 1
(github.com/vikram2000b/bad-teaching-unlearning).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .base import Plan, adam
from .hyperparameters import Fraction, Positive


def build(ctx, lr: float = 1e-4, retain_fraction: Fraction = 0.3, batch_size: int = 256, temperature: Positive = 1.0,
          weight_decay: float = 0.0):
    """Adam: distil from the original on a fresh ``retain_fraction`` of the retain set and from a random-init
    teacher (seeded per model) on forget points.
    """
    is_forget = torch.zeros(len(ctx.seeds), len(ctx.labels), dtype=torch.bool, device=ctx.labels.device)
    is_forget[torch.arange(len(ctx.seeds))[:, None], torch.as_tensor(ctx.forget, device=ctx.labels.device)] = True
    ctx.targets["is_forget"] = is_forget
    incompetent = ctx.fresh_models("bad teacher")

    def loss(logits, labels, batch):
        forget = ctx.target("is_forget", batch)[..., None]
        teacher = torch.where(forget, ctx.teacher_logits(incompetent, batch), ctx.original_logits(batch))
        p_teacher = F.softmax(teacher / temperature, dim=-1)
        log_student = F.log_softmax(logits / temperature, dim=-1)
        kl = torch.xlogy(p_teacher, p_teacher) - p_teacher * log_student  # [M, B, C]
        return kl.flatten(1).mean(1)

    n_retain = int(round(retain_fraction * ctx.retain.shape[1]))

    def phases(epoch: int):
        retain = ctx.sample_per_model(ctx.retain, n_retain, epoch, "bad teacher retain")
        return [ctx.phase(np.concatenate([ctx.forget, retain], axis=1), loss, lr, batch_size, "distil")]

    return Plan(adam(weight_decay), phases)
