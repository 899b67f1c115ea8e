"""The one fine-tuning loop behind training and every unlearning method.

A run is a sequence of epochs; each epoch is a list of :class:`Phase` objects (e.g. "ascent on the
forget set" then "descent on the retain set"). A phase says which points it iterates over, its batch
size, its learning rate, its loss and (training only) its data augmentation; everything else (shuffling
per model, batching across models, the optimiser step, divergence and cost bookkeeping, snapshots,
progress lines) is shared here.

Every model of a stack gets its own data order from its own generator, so training M models together
equals training them one at a time (up to float rounding); ``models_per_batch`` only trades memory and
speed.

One step is: forward + loss (per model) -> backward -> optimiser step on the stacked parameters
(:mod:`unlearnbench.optim`). The gradients sit in ``param.grad`` keyed by parameter name between the
backward and the step, so per-parameter gradient masks, extra penalties on the loss, and parameter edits
before or after a step fit in as stages of :func:`_train_step` without touching the rest.

On a GPU nothing in a step waits for the device: each phase's per-model orders (and augmentation
parameters) are drawn on the host once per epoch and moved in one copy, divergence flags stay on the
device and are read once per epoch, learning rates are Python floats.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from .augment import Augment
from .optim import SGD, Adam, param_groups
from .stack import ENGINE, ModelStack, train_channels_last

log = logging.getLogger(__name__)

# loss(stack-slice forward logits [M, B, C], labels [M, B], batch) -> per-model loss [M]
LossFn = Callable[[torch.Tensor, torch.Tensor, "Batch"], torch.Tensor]

EVAL_POINTS = 256  # points per group for the accuracy in the progress lines (a fixed, evenly spaced subsample)


@dataclass
class Batch:
    """What a loss may look at besides the logits: the point indices and the models' rows."""

    indices: torch.Tensor  # [M, B] indices into the full data (train then val)
    inputs: torch.Tensor  # [M, B, ...]
    rows: Sequence[int]  # rows of the full stack these models occupy (to index per-model targets)


@dataclass
class Phase:
    points: np.ndarray  # [n] indices shared by all models, or [M, n] one row per model (full stack)
    batch_size: int
    loss: LossFn
    lr: float | Callable[[int], float]  # constant, or a function of the step index within the phase
    name: str = "phase"
    augment: Augment | None = None  # per-model data augmentation of this phase's batches (training)


@dataclass
class Optimiser:
    kind: str = "sgd"  # "sgd" or "adam"
    momentum: float = 0.0
    nesterov: bool = False
    weight_decay: float = 0.0
    decay_batchnorm: bool = True

    def build(self, params: dict[str, torch.Tensor], batchnorm: frozenset[str] = frozenset()) -> SGD | Adam:
        """An optimiser over named parameters; ``batchnorm`` names are exempt from weight decay unless
        ``decay_batchnorm`` (the published CIFAR-10 recipe decays all parameters, Living-17 not BatchNorm)."""
        groups = param_groups(params, self.weight_decay, frozenset() if self.decay_batchnorm else batchnorm)
        if self.kind == "sgd":
            return SGD(groups, momentum=self.momentum, nesterov=self.nesterov)
        if self.kind == "adam":
            return Adam(groups)
        raise ValueError(f"unknown optimiser {self.kind!r}")


def configure(compile: bool = False, channels_last: bool | None = None) -> None:
    """Set the job's speed switches (:data:`~unlearnbench.stack.ENGINE`)."""
    ENGINE.compile = bool(compile)
    ENGINE.channels_last = channels_last


@dataclass
class RunRecord:
    """Bookkeeping of one loop run over a stack: per model, samples trained on and divergence."""

    samples: dict[int, np.ndarray]  # epoch -> [M] samples through forward+backward up to that epoch
    diverged: dict[int, np.ndarray]  # epoch -> [M] bool: loss or weights non-finite by that epoch
    snapshots: dict[int, np.ndarray] = field(default_factory=dict)  # epoch -> what on_epoch_end returned


def even_batches(n: int, batch_size: int) -> list[tuple[int, int]]:
    """``ceil(n / batch_size)`` batches whose sizes differ by at most one.

    Not ``batch_size``-sized batches plus a remainder: a remainder of 2 points (290 oracle points in
    batches of 32) makes BatchNorm statistics of that step so noisy that oracles drift away from base
    models on *every* point (measured: retain KLOM P95 6.7 instead of 0.6).
    """
    steps = -(-n // batch_size)
    bounds = [round(i * n / steps) for i in range(steps + 1)]
    return list(zip(bounds[:-1], bounds[1:]))


def _model_generators(seeds: Sequence[int]) -> list[np.random.Generator]:
    return [np.random.default_rng(int(s)) for s in seeds]


@dataclass
class Progress:
    """Progress lines of a run: one per epoch (and one per ``every_s`` seconds inside long epochs) with
    throughput, elapsed time and time left; at report epochs the argmax accuracy of each group of
    ``eval_points`` (name -> ``[n]`` or per-model ``[M, n]`` indices, evenly subsampled to
    :data:`EVAL_POINTS`), or, without groups, of each phase's points."""

    label: str = "unlearn"  # training passes "train"; unlearning runs take the default
    eval_points: dict[str, np.ndarray] | None = None
    eval_epochs: Callable[[int], bool] | None = None  # None: five times per run, the last epoch included
    every_s: float = 60.0
    _start: float = field(default=0.0, repr=False)
    _units: int = field(default=1, repr=False)
    _done: int = field(default=0, repr=False)

    def reports(self, epoch: int, epochs: int) -> bool:
        """Whether ``epoch`` gets an accuracy line."""
        if self.eval_epochs is not None:
            return self.eval_epochs(epoch)
        return epoch == epochs or epoch % max(1, epochs // 5) == 0

    def begin(self, n_parts: int, epochs: int) -> None:
        self._start, self._units, self._done = time.perf_counter(), max(1, n_parts * epochs), 0

    def epoch(self, rows, epoch: int, epochs: int, samples: int, seconds: float) -> None:
        self._done += 1
        elapsed = time.perf_counter() - self._start
        left = elapsed / self._done * (self._units - self._done)
        log.info("%s models %s: epoch %d/%d, %s samples/s, elapsed %s, ETA %s", self.label, _rows(rows), epoch,
                 epochs, f"{samples / max(seconds, 1e-9):,.0f}", _duration(elapsed), _duration(left))

    def within_epoch(self, rows, epoch: int, epochs: int, phase: str, step: int, steps: int) -> None:
        log.info("%s models %s: epoch %d/%d, %s step %d/%d, elapsed %s", self.label, _rows(rows), epoch, epochs,
                 phase, step, steps, _duration(time.perf_counter() - self._start))

    @torch.no_grad()
    def accuracy(self, part: ModelStack, rows, epoch: int, inputs, labels, phases: list[Phase]) -> None:
        groups = self.eval_points or {p.name: p.points for p in phases}
        parts = []
        for name, points in groups.items():
            points = np.asarray(points)
            points = points if points.ndim == 1 else points[rows]
            n = points.shape[-1]
            if n == 0:
                continue
            pick = np.unique(np.linspace(0, n - 1, min(n, EVAL_POINTS)).round().astype(np.int64))
            idx = torch.as_tensor(points[..., pick], device=labels.device)
            chunk = part.eval_batch_size(inputs)  # cache-sized on a CPU, as for margins
            correct = torch.cat([
                part.forward(inputs[i], train=False).argmax(-1) == (labels[i] if i.dim() == 2 else labels[i][None])
                for i in idx.split(chunk, dim=-1)
            ], dim=-1)
            parts.append(f"{name} {correct.float().mean().item():.3f}")
        log.info("%s models %s: epoch %d accuracy (mean over models, up to %d points each): %s", self.label,
                 _rows(rows), epoch, EVAL_POINTS, ", ".join(parts))


def _rows(rows) -> str:
    return f"{rows[0]}-{rows[-1]}" if len(rows) > 1 else str(rows[0])


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def run_loop(
    stack: ModelStack,
    inputs: torch.Tensor,
    labels: torch.Tensor,
    seeds: Sequence[int],
    optimiser: Optimiser,
    epochs: int,
    phases_for_epoch: Callable[[int], list[Phase]],
    on_epoch_end: Callable[[int, ModelStack, np.ndarray], object] | None = None,
    models_per_batch: int | None = None,
    amp: bool = False,
    progress: Progress | None = None,
    compile: bool | None = None,
    channels_last: bool | None = None,
) -> RunRecord:
    """Train ``stack`` in place for ``epochs`` epochs (numbered from 1).

    ``on_epoch_end(epoch, stack_slice, rows)`` runs after every epoch on each slice of models and may
    return a snapshot array ``[slice models, ...]`` (e.g. margins) or None; the record concatenates the
    slices' snapshots per epoch. ``compile`` / ``channels_last`` default to the job's :data:`ENGINE`.
    """
    n = stack.n_models
    chunk = n if not models_per_batch else max(1, min(models_per_batch, n))
    samples = {e: np.zeros(n, dtype=np.int64) for e in range(1, epochs + 1)}
    diverged = {e: np.zeros(n, dtype=bool) for e in range(1, epochs + 1)}
    per_epoch: dict[int, list] = {}
    progress = progress or Progress()
    progress.begin(-(-n // chunk), epochs)
    settings = _Settings(
        amp=amp,
        compile=ENGINE.compile if compile is None else compile,
        channels_last=train_channels_last(stack) if channels_last is None else channels_last,
    )
    for start in range(0, n, chunk):
        rows = list(range(start, min(start + chunk, n)))
        part = stack.select(rows)
        _run_part(part, rows, inputs, labels, [int(seeds[r]) for r in rows], optimiser, epochs, phases_for_epoch,
                  on_epoch_end, per_epoch, samples, diverged, settings, progress)
        stack.assign(rows, part)
    snapshots = {e: np.concatenate(parts, axis=0) for e, parts in per_epoch.items()}
    return RunRecord(samples, diverged, snapshots)


@dataclass(frozen=True)
class _Settings:
    amp: bool
    compile: bool
    channels_last: bool


def _run_part(part, rows, inputs, labels, seeds, optimiser, epochs, phases_for_epoch, on_epoch_end, per_epoch,
              samples_by_epoch, diverged_by_epoch, settings, progress):
    m, device = part.n_models, part.device
    if settings.channels_last:
        part.to_channels_last()
    for v in part.params.values():
        v.requires_grad_(True)
    opt = optimiser.build(part.params, part.batchnorm_params())
    forward = part.compiled_forward(ENGINE.compile_backend) if settings.compile else part.forward
    orders_rng = _model_generators(seeds)
    augment_rng: dict[Augment, list[np.random.Generator]] = {}
    samples = np.zeros(m, dtype=np.int64)
    diverged = np.zeros(m, dtype=bool)
    bad = torch.zeros(m, dtype=torch.bool, device=device)  # non-finite loss so far, read once per epoch
    for epoch in range(1, epochs + 1):
        began, seen = time.perf_counter(), 0
        phases = phases_for_epoch(epoch)
        for phase in phases:
            points = phase.points if phase.points.ndim == 1 else phase.points[rows]
            orders = np.stack([g.permutation(points if points.ndim == 1 else points[i])
                               for i, g in enumerate(orders_rng)])
            augment = phase.augment if phase.augment is not None and phase.augment.active else None
            if augment is not None:
                gens = augment_rng.setdefault(augment, [augment.generator(s) for s in seeds])
                hw = tuple(inputs.shape[-2:])
                params = np.stack([augment.draw(g, orders.shape[1], hw) for g in gens])  # [M, n, 5]
                packed = torch.from_numpy(np.concatenate([orders[..., None], params], axis=-1)).to(device)
                orders_dev, augment_dev = packed[..., 0], packed[..., 1:]
            else:
                orders_dev, augment_dev = torch.from_numpy(orders).to(device), None
            batches = even_batches(orders.shape[1], phase.batch_size)
            last_line = time.perf_counter()
            for step, (begin, end) in enumerate(batches):
                idx = orders_dev[:, begin:end]
                x = inputs[idx]
                if augment is not None:
                    x = augment.apply(x, augment_dev[:, begin:end])
                lr = phase.lr(step) if callable(phase.lr) else phase.lr
                bad |= _train_step(forward, opt, phase.loss, x, labels[idx], Batch(idx, x, rows), lr, settings.amp,
                                   device)
                samples += end - begin
                seen += (end - begin) * m
                if time.perf_counter() - last_line > progress.every_s and step + 1 < len(batches):
                    progress.within_epoch(rows, epoch, epochs, phase.name, step + 1, len(batches))
                    last_line = time.perf_counter()
        diverged |= bad.cpu().numpy() | ~part.finite()  # the one read of the device per epoch
        samples_by_epoch[epoch][rows] = samples
        diverged_by_epoch[epoch][rows] = diverged
        progress.epoch(rows, epoch, epochs, seen, time.perf_counter() - began)
        for v in part.params.values():
            v.requires_grad_(False)
        snap = on_epoch_end(epoch, part, np.asarray(rows)) if on_epoch_end is not None else None
        if snap is not None:
            per_epoch.setdefault(epoch, []).append(snap)
        if progress.reports(epoch, epochs):
            progress.accuracy(part, rows, epoch, inputs, labels, phases)
        for v in part.params.values():
            v.requires_grad_(True)
    for v in part.params.values():
        v.requires_grad_(False)
    part.to_contiguous()


def _train_step(forward, opt, loss_fn, x, labels, batch, lr, amp, device) -> torch.Tensor:
    """One optimiser step of every model of the slice; returns the per-model "loss not finite" flags
    (on the device)."""
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp and device.type == "cuda"):
        logits = forward(x, train=True)
        losses = loss_fn(logits.float(), labels, batch)
    opt.zero_grad()
    losses.sum().backward()  # models are independent: each gets its own loss's gradient
    opt.step(lr)
    return ~torch.isfinite(losses.detach())
