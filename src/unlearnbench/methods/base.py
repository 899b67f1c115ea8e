"""What every method shares: the context it sees, the plan it returns, and the common losses."""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from ..data.splits import NormalisedImages
from ..loop import Batch, Hooks, Optimiser, Phase
from ..seeds import derive_seed
from ..stack import ModelStack


@dataclass
class Plan:
    optimiser: Optimiser
    phases: Callable[[int], list[Phase]]  # epoch (1-based) -> phases of that epoch, in order
    hooks: Hooks = field(default_factory=Hooks)  # masks, penalties, parameter edits, frozen layers (loop.Hooks)


@dataclass
class UnlearningContext:
    """Everything a finetune method may use, for one shard of models and their forget requests.

    ``forget`` and ``retain`` hold one row of train indices per model (``[M, n]``): the same row for
    every model in a KLOM run, a different request per model in a U-LiRA run.
    """

    inputs: NormalisedImages  # every point, train then val; indexing returns normalised float32
    labels: torch.Tensor
    forget: np.ndarray  # [M, n_forget] train indices to forget (a 1-D array is shared by all models)
    retain: np.ndarray  # [M, n_retain] train indices the model keeps
    original: ModelStack  # frozen copy of the models before unlearning (e.g. SCRUB's teacher)
    seeds: list[int]
    targets: dict[str, torch.Tensor] = field(default_factory=dict)  # per-model targets, e.g. oracle logits
    needed: dict = field(default_factory=dict)  # the inputs its registry entry needs, loaded (method_inputs)
    epochs: int = 0  # the run's last epoch (its last snapshot), e.g. for a schedule over the whole run
    _teachers: dict = field(default_factory=dict, repr=False)
    _fresh: dict = field(default_factory=dict, repr=False)
    _rows: dict = field(default_factory=dict, repr=False)

    def __post_init__(self):
        m = self.original.n_models
        self.forget = np.array(np.broadcast_to(np.asarray(self.forget, dtype=np.int64), (m, np.shape(self.forget)[-1])))
        self.retain = np.array(np.broadcast_to(np.asarray(self.retain, dtype=np.int64), (m, np.shape(self.retain)[-1])))

    def phase(self, points: np.ndarray, loss, lr, batch_size: int, name: str, augment=None) -> Phase:
        return Phase(np.asarray(points), int(batch_size), loss, lr if callable(lr) else float(lr), name, augment)

    def original_logits(self, batch: Batch) -> torch.Tensor:
        """Eval-mode logits of the models *before* unlearning on this batch: ``[M, B, C]``."""
        return self.teacher_logits(self.original, batch)

    @torch.no_grad()
    def teacher_logits(self, teacher: ModelStack, batch: Batch) -> torch.Tensor:
        """Eval-mode logits of a frozen stack of teachers (one per model, e.g. :attr:`original` or
        :meth:`fresh_models`) on this batch: ``[M, B, C]``."""
        key = (id(teacher), tuple(batch.rows))
        if key not in self._teachers:
            self._teachers[key] = teacher.select(key[1])
        return self._teachers[key].forward(batch.inputs, train=False).float()

    def fresh_models(self, stream: str) -> ModelStack:
        """Freshly initialised models of the same architecture, one per model, each seeded by (its model's
        seed, ``stream``): a random teacher, or the source of re-initialised layers. Built once per stream."""
        if stream not in self._fresh:
            seeds = [derive_seed("fresh", stream, s) for s in self.seeds]
            o = self.original
            self._fresh[stream] = ModelStack.initialise(o.arch, o.num_classes, o.in_channels, seeds, o.model_index,
                                                        o.device)
        return self._fresh[stream]

    def trained_points(self) -> np.ndarray:
        """Each model's training points before unlearning, retain then forget: ``[M, n_retain + n_forget]``."""
        return np.concatenate([self.retain, self.forget], axis=1)

    def target(self, name: str, batch: Batch) -> torch.Tensor:
        """Per-model per-point targets (``targets[name]`` is ``[M, P, ...]``) gathered for this batch."""
        table = self.targets[name]
        key = (tuple(batch.rows), table.device)
        if key not in self._rows:  # once per slice: a fresh host-to-device copy each step would wait for the GPU
            self._rows[key] = torch.as_tensor(key[0], device=table.device)
        return table[self._rows[key][:, None], batch.indices]

    def sample_per_model(self, points: np.ndarray, size: int, epoch: int, stream: str) -> np.ndarray:
        """For each model, ``size`` of its row of ``points`` ([M, n]) without replacement, fresh each
        epoch: ``[M, size]``. Seeded by (model seed, stream, epoch): any model's run rebuilds alone."""
        size = min(size, points.shape[-1])
        return np.stack([
            np.random.default_rng([seed, epoch, zlib.crc32(stream.encode())]).choice(row, size, replace=False)
            for seed, row in zip(self.seeds, points)
        ])


def sgd(momentum: float = 0.0, weight_decay: float = 0.0, nesterov: bool = False) -> Optimiser:
    """The unlearning optimiser of the SGD methods; its keywords are grid keys of every one of them.

    Defaults as the published grids (plain SGD, spec §5); the paper-era SCRUB wrapper used momentum 0.9
    and weight decay 5e-4 (spec §10).
    """
    return Optimiser("sgd", momentum=float(momentum), nesterov=bool(nesterov), weight_decay=float(weight_decay))


def adam(weight_decay: float = 0.0) -> Optimiser:
    """The optimiser of the matching methods (published: Adam, no weight decay); ``weight_decay`` is L2
    added to the gradient, as ``torch.optim.Adam``."""
    return Optimiser("adam", weight_decay=float(weight_decay))


# losses: (logits [M, B, C], labels [M, B], batch) -> per-model loss [M] ---------------------------


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor, _batch: Batch | None = None) -> torch.Tensor:
    m, b, c = logits.shape
    return F.cross_entropy(logits.reshape(m * b, c), labels.reshape(-1), reduction="none").view(m, b).mean(1)


def kd_loss(logits: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """T^2 * KL(softmax(teacher/T) || softmax(student/T)), mean over the batch: per-model ``[M]``."""
    log_student = F.log_softmax(logits / temperature, dim=-1)
    log_teacher = F.log_softmax(teacher / temperature, dim=-1)
    kl = (log_teacher.exp() * (log_teacher - log_student)).sum(-1)
    return temperature**2 * kl.mean(-1)


def negated(loss):
    """Gradient *ascent* on ``loss``."""

    def ascent(logits, labels, batch):
        return -loss(logits, labels, batch)

    return ascent
