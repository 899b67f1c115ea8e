"""The margin (spec §1): correct-class logit minus log-sum-exp of the other logits.

It equals the logit of the softmax probability of the true class. Not "minus the max other logit".
"""

from __future__ import annotations

import numpy as np
import torch

from .stack import ModelStack


def margins_from_logits(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``logits [..., n, C]``, ``labels [n]`` -> margins ``[..., n]`` (computed in float32)."""
    logits = logits.float()
    idx = labels.view(*([1] * (logits.dim() - 2)), -1, 1).expand(*logits.shape[:-1], 1)
    correct = logits.gather(-1, idx).squeeze(-1)
    others = logits.scatter(-1, idx, float("-inf"))
    return correct - torch.logsumexp(others, dim=-1)


@torch.no_grad()
def stack_margins(stack: ModelStack, inputs: torch.Tensor, labels: torch.Tensor,
                  batch_size: int | None = None) -> np.ndarray:
    """Eval-mode margins of every model on every point: float32 ``[M, n_points]``."""
    out = [margins_from_logits(logits, labels[rows]) for rows, logits in stack.eval_batches(inputs, batch_size)]
    return torch.cat(out, dim=1).cpu().numpy().astype(np.float32)
