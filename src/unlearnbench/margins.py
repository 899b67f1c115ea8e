"""The margin (spec §1): correct-class logit minus log-sum-exp of the other logits; and argmax correctness.

The margin equals the logit of the softmax probability of the true class. Not "minus the max other logit".

Accuracy is argmax accuracy: a model is right on a point when its largest logit is the true class's
(``logits.argmax(-1) == label``, ties going to the lower class index as in torch and numpy, the published
benchmark's own accuracy code). The margin cannot stand in for it: ``margin > 0`` means ``p_y > 1/2``, which
for more than two classes is sufficient but not necessary (10 classes: a point with ``p_y = 0.3`` and every
other class at about 0.08 is classified correctly with a negative margin). So correctness is stored next to
the margins, computed from the same logits (arrays named ``correct``, bool).
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


def argmax_correct(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``logits [..., n, C]``, ``labels [n]`` -> bool ``[..., n]``: is the largest logit the true class's?"""
    return logits.argmax(dim=-1) == labels


@torch.no_grad()
def stack_outputs(stack: ModelStack, inputs: torch.Tensor, labels: torch.Tensor,
                  batch_size: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Eval-mode margins (float32) and argmax correctness (bool) of every model on every point, ``[M, n]``."""
    margins, correct = [], []
    for rows, logits in stack.eval_batches(inputs, batch_size):
        margins.append(margins_from_logits(logits, labels[rows]))
        correct.append(argmax_correct(logits, labels[rows]))
    return (torch.cat(margins, dim=1).cpu().numpy().astype(np.float32),
            torch.cat(correct, dim=1).cpu().numpy())


def stack_margins(stack: ModelStack, inputs: torch.Tensor, labels: torch.Tensor,
                  batch_size: int | None = None) -> np.ndarray:
    """Eval-mode margins of every model on every point: float32 ``[M, n_points]``."""
    return stack_outputs(stack, inputs, labels, batch_size)[0]
