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
before or after a step are stages of :func:`_train_step` (:class:`Hooks`); a method sets them once and
every model of every slice gets its own (its own mask, its own edit): batched still equals one at a time.

On a GPU nothing in a step waits for the device: each phase's per-model orders (and augmentation
parameters) are drawn on the host once per epoch and moved in one copy, divergence flags stay on the
device and are read once per epoch, learning rates are Python floats.
"""

from __future__ import annotations

import logging
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from .augment import Augment
from .named_layers import buffers_of
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
    n_main: int | None = None  # with a paired phase: the first n_main points are the phase's own, the rest paired
    epoch: int = 0  # the epoch of the step (1-based)


@dataclass
class Phase:
    points: np.ndarray  # [n] indices shared by all models, or [M, n] one row per model (full stack)
    batch_size: int
    loss: LossFn
    lr: float | Callable[[int], float]  # constant, or a function of the step index within the phase
    name: str = "phase"
    augment: Augment | None = None  # per-model data augmentation of this phase's batches (training)
    # a second point set seen alongside (e.g. NegGrad+'s forget batch with each retain batch): each step also
    # takes the next paired_batch_size of its points, cycled in a fresh per-model order whenever they run out,
    # through a forward of their own (BatchNorm's batch statistics do not mix the two); the loss gets the
    # logits of both, the phase's own first (``Batch.n_main``)
    paired: np.ndarray | None = None
    paired_batch_size: int = 0


@dataclass
class Hooks:
    """What a method may change in the loop besides the loss; each stage works on one slice of the stack
    (``part``, the models at ``rows`` of the full stack) and returns per-model values, so batched runs equal
    one-at-a-time runs. All optional:

    - ``before(part, rows)``: edit the slice's parameters in place before epoch 1 (re-initialise layers,
      dampen, add noise); a run of no epochs' phases makes it an edit *instead of* training. Returns the
      samples per model it passed through forward+backward (importance estimates), counted in the cost, or None.
    - ``frozen``: parameter names the run never changes: no gradient, no optimiser state or weight decay, and
      the BatchNorm statistics of their layers are restored after every epoch (train-mode forwards move them).
    - ``grad_mask(part, rows)``: called once per slice after ``before``; name -> ``[m, ...]`` factors that
      multiply every step's gradients (names left out are not masked). Weight decay, added by the optimiser
      step, still reaches masked weights, as in ``torch.optim``.
    - ``penalty(params, rows, epoch)``: a per-model ``[m]`` term added to every step's loss (e.g. an l1 norm);
      ``params`` are the trained (not frozen) parameters, name -> ``[m, ...]``.
    - ``after_step(params, rows, lr)``: edits those in place after each optimiser step, without gradients
      (proximal steps, clamps).
    """

    before: Callable[[ModelStack, np.ndarray], object] | None = None
    frozen: frozenset[str] = frozenset()
    grad_mask: Callable[[ModelStack, np.ndarray], dict[str, torch.Tensor]] | None = None
    penalty: Callable[[dict[str, torch.Tensor], np.ndarray, int], torch.Tensor] | None = None
    after_step: Callable[[dict[str, torch.Tensor], np.ndarray, float], None] | None = None


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
    hooks: Hooks | None = None,
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
                  on_epoch_end, per_epoch, samples, diverged, settings, progress, hooks or Hooks())
        stack.assign(rows, part)
    snapshots = {e: np.concatenate(parts, axis=0) for e, parts in per_epoch.items()}
    return RunRecord(samples, diverged, snapshots)


@dataclass(frozen=True)
class _Settings:
    amp: bool
    compile: bool
    channels_last: bool


def _run_part(part, rows, inputs, labels, seeds, optimiser, epochs, phases_for_epoch, on_epoch_end, per_epoch,
              samples_by_epoch, diverged_by_epoch, settings, progress, hooks):
    m, device = part.n_models, part.device
    samples = np.zeros(m, dtype=np.int64)
    rows_array = np.asarray(rows)
    if hooks.before is not None:
        spent = hooks.before(part, rows_array)
        samples += np.asarray(0 if spent is None else spent, dtype=np.int64)
    masks = hooks.grad_mask(part, rows_array) if hooks.grad_mask is not None else {}
    frozen_buffers = {k: part.buffers[k].clone() for k in buffers_of(part, hooks.frozen)}
    if settings.channels_last:
        part.to_channels_last()
    trained = {k: v for k, v in part.params.items() if k not in hooks.frozen}
    step_hooks = _StepHooks(masks, hooks.penalty, hooks.after_step, trained, rows_array)
    for v in trained.values():
        v.requires_grad_(True)
    opt = optimiser.build(trained, part.batchnorm_params())
    forward = part.compiled_forward(ENGINE.compile_backend) if settings.compile else part.forward
    orders_rng = _model_generators(seeds)
    augment_rng: dict[Augment, list[np.random.Generator]] = {}
    paired_rng: dict[str, list[np.random.Generator]] = {}  # per phase name: the phase's own order is left alone
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
            if phase.name not in paired_rng:
                paired_rng[phase.name] = [np.random.default_rng([s, zlib.crc32(phase.name.encode())]) for s in seeds]
            paired = _paired_orders(phase, rows, paired_rng[phase.name], len(batches), device)
            last_line = time.perf_counter()
            for step, (begin, end) in enumerate(batches):
                idx = orders_dev[:, begin:end]
                x = inputs[idx]
                if augment is not None:
                    x = augment.apply(x, augment_dev[:, begin:end])
                xs, n_main = [x], None
                if paired is not None:
                    extra = paired[:, step * phase.paired_batch_size:(step + 1) * phase.paired_batch_size]
                    n_main, idx = idx.shape[1], torch.cat([idx, extra], dim=1)
                    xs.append(inputs[extra])
                lr = phase.lr(step) if callable(phase.lr) else phase.lr
                batch = Batch(idx, xs[0] if len(xs) == 1 else torch.cat(xs, dim=1), rows, n_main, epoch)
                bad |= _train_step(forward, opt, phase.loss, xs, labels[idx], batch, lr, settings.amp, device,
                                   step_hooks)
                samples += idx.shape[1]
                seen += idx.shape[1] * m
                if time.perf_counter() - last_line > progress.every_s and step + 1 < len(batches):
                    progress.within_epoch(rows, epoch, epochs, phase.name, step + 1, len(batches))
                    last_line = time.perf_counter()
        for k, v in frozen_buffers.items():  # a frozen layer keeps its BatchNorm statistics too
            part.buffers[k].copy_(v)
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
        for v in trained.values():
            v.requires_grad_(True)
    for v in part.params.values():
        v.requires_grad_(False)
    part.to_contiguous()


def _paired_orders(phase: Phase, rows, generators, steps: int, device) -> torch.Tensor | None:
    """Per model, the paired points of every step of the phase: ``[m, steps x paired_batch_size]``, fresh
    permutations of the model's paired points back to back, from the model's own generator of paired orders
    (seeded by the model's seed and the phase's name: batched equals one at a time, and the phase's own
    order is the one it has without a paired set)."""
    if phase.paired is None or phase.paired_batch_size <= 0:
        return None
    if phase.augment is not None and phase.augment.active:
        raise ValueError(f"phase {phase.name!r}: a paired point set with data augmentation is not supported")
    points = phase.paired if phase.paired.ndim == 1 else phase.paired[rows]
    need = steps * phase.paired_batch_size
    orders = []
    for i, g in enumerate(generators):
        own = points if points.ndim == 1 else points[i]
        if len(own) == 0:
            raise ValueError(f"phase {phase.name!r}: no paired points")
        rounds = -(-need // len(own))
        orders.append(np.concatenate([g.permutation(own) for _ in range(rounds)])[:need])
    return torch.from_numpy(np.stack(orders)).to(device)


@dataclass
class _StepHooks:
    masks: dict[str, torch.Tensor]
    penalty: Callable | None
    after_step: Callable | None
    params: dict[str, torch.Tensor]  # the trained parameters (frozen ones left out)
    rows: np.ndarray


def _train_step(forward, opt, loss_fn, xs, labels, batch, lr, amp, device, hooks: _StepHooks) -> torch.Tensor:
    """One optimiser step of every model of the slice; returns the per-model "loss not finite" flags
    (on the device). ``xs``: the phase's batch, and the paired batch if any (a forward each)."""
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp and device.type == "cuda"):
        logits = [forward(x, train=True).float() for x in xs]
        losses = loss_fn(logits[0] if len(logits) == 1 else torch.cat(logits, dim=1), labels, batch)
    if hooks.penalty is not None:
        losses = losses + hooks.penalty(hooks.params, hooks.rows, batch.epoch)
    opt.zero_grad()
    losses.sum().backward()  # models are independent: each gets its own loss's gradient
    if hooks.masks:
        names = [n for n in hooks.masks if n in hooks.params and hooks.params[n].grad is not None]
        torch._foreach_mul_([hooks.params[n].grad for n in names], [hooks.masks[n] for n in names])
    opt.step(lr)
    if hooks.after_step is not None:
        with torch.no_grad():
            hooks.after_step(hooks.params, hooks.rows, lr)
    return ~torch.isfinite(losses.detach())
