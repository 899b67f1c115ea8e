"""SGD and Adam steps over stacked parameters with ``torch._foreach_*`` ops, and nothing else.

Why not ``torch.optim``: constructing any ``torch.optim.Optimizer`` imports ``torch._dynamo`` (its step
is wrapped to stay out of ``torch.compile``), which costs 1.5-2 s of start-up in every training and
unlearning job - about a third of a digits job. These classes do the same arithmetic in the same order
as ``torch.optim.SGD`` / ``torch.optim.Adam`` (defaults: no dampening, no maximise, Adam betas
(0.9, 0.999), eps 1e-8, L2 weight decay added to the gradient, no amsgrad): on the CPU, where
``torch.optim`` uses its per-tensor loop, the updates are bit-identical (the CPU's foreach ops are that
same loop); on a GPU they match ``torch.optim``'s own foreach path up to float rounding.

Parameters come as a name -> tensor mapping split into groups (e.g. BatchNorm parameters without weight
decay). A parameter whose ``.grad`` is None is skipped, as ``torch.optim`` does: a frozen layer keeps its
weights and its state. The learning rate is an argument of :meth:`step` (a Python float: no host-device
synchronisation), so a schedule is just the caller's arithmetic.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch


@dataclass
class ParamGroup:
    names: list[str]
    params: list[torch.Tensor]
    weight_decay: float = 0.0

    def __getitem__(self, key: str):  # read like a torch.optim param group (``group["weight_decay"]``)
        return getattr(self, key)


def param_groups(params: Mapping[str, torch.Tensor], weight_decay: float,
                 no_decay: frozenset[str] | set[str] = frozenset()) -> list[ParamGroup]:
    """One group with ``weight_decay`` and, if any names are exempt, one without."""
    decayed = [n for n in params if n not in no_decay]
    exempt = [n for n in params if n in no_decay]
    groups = [ParamGroup(decayed, [params[n] for n in decayed], weight_decay)]
    if exempt:
        groups.append(ParamGroup(exempt, [params[n] for n in exempt], 0.0))
    return groups


@dataclass
class _Optimiser:
    param_groups: list[ParamGroup]
    state: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)  # parameter name -> buffers

    def zero_grad(self) -> None:
        """Drop the gradients (``set_to_none``: the next backward allocates fresh ones)."""
        for group in self.param_groups:
            for p in group.params:
                p.grad = None

    def _with_grads(self, group: ParamGroup) -> tuple[list[str], list[torch.Tensor], list[torch.Tensor]]:
        live = [(n, p) for n, p in zip(group.names, group.params) if p.grad is not None]
        return [n for n, _ in live], [p for _, p in live], [p.grad for _, p in live]

    def _decayed(self, grads: list[torch.Tensor], params: list[torch.Tensor], weight_decay: float):
        # L2 decay as torch.optim: a new tensor grad + wd * param (the stored .grad is left alone)
        return torch._foreach_add(grads, params, alpha=weight_decay) if weight_decay != 0 else grads


class SGD(_Optimiser):
    """``torch.optim.SGD`` (momentum, Nesterov, weight decay; dampening 0)."""

    def __init__(self, groups: Sequence[ParamGroup], momentum: float = 0.0, nesterov: bool = False):
        super().__init__(list(groups))
        if nesterov and momentum <= 0:
            raise ValueError("Nesterov momentum requires a momentum > 0")
        self.momentum = momentum
        self.nesterov = nesterov

    @torch.no_grad()
    def step(self, lr: float) -> None:
        for group in self.param_groups:
            names, params, grads = self._with_grads(group)
            if not params:
                continue
            grads = self._decayed(grads, params, group.weight_decay)
            if self.momentum != 0:
                fresh = [n not in self.state for n in names]
                if any(fresh):  # first step: the buffer is a copy of the gradient (as torch.optim)
                    for n, g, new in zip(names, grads, fresh):
                        if new:
                            self.state[n] = {"momentum_buffer": g.detach().clone()}
                    olds = [i for i, new in enumerate(fresh) if not new]
                    self._momentum_update([self.state[names[i]]["momentum_buffer"] for i in olds],
                                          [grads[i] for i in olds])
                else:
                    self._momentum_update([self.state[n]["momentum_buffer"] for n in names], grads)
                bufs = [self.state[n]["momentum_buffer"] for n in names]
                if self.nesterov:
                    grads = torch._foreach_add(grads, bufs, alpha=self.momentum)
                else:
                    grads = bufs
            torch._foreach_add_(params, grads, alpha=-lr)

    def _momentum_update(self, bufs: list[torch.Tensor], grads: list[torch.Tensor]) -> None:
        if bufs:
            torch._foreach_mul_(bufs, self.momentum)
            torch._foreach_add_(bufs, grads, alpha=1.0)


class Adam(_Optimiser):
    """``torch.optim.Adam`` (L2 weight decay added to the gradient; no amsgrad)."""

    def __init__(self, groups: Sequence[ParamGroup], betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        super().__init__(list(groups))
        self.betas = betas
        self.eps = eps

    @torch.no_grad()
    def step(self, lr: float) -> None:
        beta1, beta2 = self.betas
        for group in self.param_groups:
            names, params, grads = self._with_grads(group)
            if not params:
                continue
            grads = self._decayed(grads, params, group.weight_decay)
            for n, p in zip(names, params):
                if n not in self.state:
                    self.state[n] = {"step": 0, "exp_avg": torch.zeros_like(p, memory_format=torch.preserve_format),
                                     "exp_avg_sq": torch.zeros_like(p, memory_format=torch.preserve_format)}
                self.state[n]["step"] += 1
            exp_avgs = [self.state[n]["exp_avg"] for n in names]
            exp_avg_sqs = [self.state[n]["exp_avg_sq"] for n in names]
            torch._foreach_lerp_(exp_avgs, grads, 1 - beta1)
            torch._foreach_mul_(exp_avg_sqs, beta2)
            torch._foreach_addcmul_(exp_avg_sqs, grads, grads, value=1 - beta2)
            denom = torch._foreach_sqrt(exp_avg_sqs)
            # the step count is a Python int (torch.optim keeps a CPU tensor and reads it with .item())
            steps = [float(self.state[n]["step"]) for n in names]
            torch._foreach_div_(denom, [(1 - beta2**s) ** 0.5 for s in steps])
            torch._foreach_add_(denom, self.eps)
            torch._foreach_addcdiv_(params, exp_avgs, denom, [-(lr / (1 - beta1**s)) for s in steps])
