"""Per-model diagonal Fisher information of a stack over a point set: the importance estimate behind SSD
(Foster et al. 2024) and Fisher forgetting (Golatkar et al. 2020).

``F_j = mean over batches of (d loss_batch / d theta_j)^2`` with the loss a batch mean, each model over its
own row of points. Two choices of label:

- ``"true"``: cross-entropy with the points' labels (the empirical Fisher). SSD's published code estimates
  its importances this way, squaring the gradient of each *batch*'s mean loss and dividing by the number
  of batches (``calc_importance`` in github.com/if-loops/selective-synaptic-dampening).
- ``"expected"``: the expectation over the model's own predictive distribution,
  ``sum_c p(c|x) (d CE(x, c) / d theta)^2``, as Golatkar et al.'s code (its ``hessian``, batch size 1,
  github.com/AdityaGolatkar/SelectiveForgetting). A batch weights each point's class-c loss by
  ``sqrt(p(c|x))``, so batch size 1 is their per-sample sum exactly; larger batches square batch means
  instead of averaging per-sample squares (the same shortcut as SSD's, far fewer backward passes).

Eval mode (BatchNorm running statistics): the estimate neither depends on how points are batched for
normalisation nor moves the running statistics. Models are independent: the stack's summed loss gives
each model its own loss's gradient, so a stack's Fisher equals its models' one at a time.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .loop import even_batches
from .stack import ModelStack


def diagonal_fisher(stack: ModelStack, inputs, labels: torch.Tensor, points: np.ndarray, batch_size: int,
                    label_mode: str = "true") -> tuple[dict[str, torch.Tensor], np.ndarray]:
    """``(fisher, samples)``: name -> ``[m, ...]`` per-model diagonal Fisher of ``stack``'s parameters over
    ``points`` (``[n]`` shared or ``[m, n]`` one row per model, in index order), and the samples per model
    passed through forward+backward (points x backward passes: x classes for ``"expected"``)."""
    if label_mode not in ("true", "expected"):
        raise ValueError(f"unknown Fisher label mode {label_mode!r} (true or expected)")
    m = stack.n_models
    points = np.array(np.broadcast_to(np.asarray(points, dtype=np.int64), (m, np.shape(points)[-1])))
    names = list(stack.params)
    params = {k: v.detach().clone().requires_grad_(True) for k, v in stack.params.items()}
    fisher = {k: torch.zeros_like(v) for k, v in params.items()}
    batches = even_batches(points.shape[1], batch_size)
    for begin, end in batches:
        idx = torch.as_tensor(points[:, begin:end], device=labels.device)
        logits = stack.forward(inputs[idx], train=False, params=params).float()  # [m, b, C]
        log_p = F.log_softmax(logits, dim=-1)
        if label_mode == "true":
            targets = [(labels[idx], None)]
        else:
            weights = log_p.detach().exp().sqrt()  # [m, b, C]
            targets = [(torch.full_like(idx, c), weights[..., c]) for c in range(logits.shape[-1])]
        for t, (target, weight) in enumerate(targets):
            nll = -log_p.gather(-1, target[..., None]).squeeze(-1)  # [m, b]
            loss = (nll if weight is None else weight * nll).mean(1).sum()  # each model its own batch mean
            grads = torch.autograd.grad(loss, [params[k] for k in names], retain_graph=t + 1 < len(targets))
            torch._foreach_addcmul_([fisher[k] for k in names], grads, grads)
    torch._foreach_mul_(list(fisher.values()), 1.0 / max(1, len(batches)))
    passes = 1 if label_mode == "true" else stack.num_classes  # backward passes per point
    return fisher, np.full(m, points.shape[1] * passes, dtype=np.int64)


def loss_gradient(stack: ModelStack, inputs, labels: torch.Tensor, points: np.ndarray,
                  batch_size: int) -> tuple[dict[str, torch.Tensor], np.ndarray]:
    """``(gradient, samples)``: name -> ``[m, ...]`` sum over batches of the gradient of each batch's mean
    cross-entropy (eval mode), each model over its own row of ``points``; samples per model as above."""
    m = stack.n_models
    points = np.array(np.broadcast_to(np.asarray(points, dtype=np.int64), (m, np.shape(points)[-1])))
    names = list(stack.params)
    params = {k: v.detach().clone().requires_grad_(True) for k, v in stack.params.items()}
    total = {k: torch.zeros_like(v) for k, v in params.items()}
    for begin, end in even_batches(points.shape[1], batch_size):
        idx = torch.as_tensor(points[:, begin:end], device=labels.device)
        logits = stack.forward(inputs[idx], train=False, params=params).float()
        loss = F.cross_entropy(logits.flatten(0, 1), labels[idx].flatten(), reduction="none").view(m, -1).mean(1)
        grads = torch.autograd.grad(loss.sum(), [params[k] for k in names])
        torch._foreach_add_([total[k] for k in names], grads)
    return total, np.full(m, points.shape[1], dtype=np.int64)
