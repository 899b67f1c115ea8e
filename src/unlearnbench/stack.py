"""A stack of same-architecture models held as batched parameter tensors ``[M, ...]``.

One forward call evaluates all M models (``torch.func.vmap`` over ``functional_call``); BatchNorm running
statistics live in stacked buffers and update per model in train mode. The stack is also the storage
unit: one safetensors file per shard of models, keys = parameter names, leading dim = model.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from .models import build_model
from .storage import load_tensors, save_tensors
from .wide import folded

@dataclass
class Engine:
    """Speed switches of a job's stacks, set once per job (``device.torch_setup``). Results are equal either
    way up to float rounding - which 30 epochs of training from a random initialisation amplify into a
    different draw of models, so the CPU trains in the layout it always did.

    ``channels_last`` (training forwards): None = on a GPU wherever the models run folded
    (:mod:`unlearnbench.wide`: every built-in architecture; the published recipe's layout), off on the
    CPU. ``eval_channels_last`` (eval-mode passes: margins, logits): None = on wherever the models run
    folded; measured with ``benchmarks/stack_forward.py`` (1 CPU thread, 25 digits nets) an eval chunk is
    about 1.9x faster, and margins move by float rounding only (no training follows them).
    """

    compile: bool = False  # torch.compile the stacked training forward (imports dynamo: seconds of start-up)
    channels_last: bool | None = None
    eval_channels_last: bool | None = None
    compile_backend: str = "inductor"  # tests use "aot_eager": the same graph capture without code generation


ENGINE = Engine()


def train_channels_last(stack: ModelStack) -> bool:
    if ENGINE.channels_last is None:
        return stack.device.type == "cuda" and folded(stack.arch, stack._template) is not None
    return bool(ENGINE.channels_last)


def eval_channels_last(stack: ModelStack) -> bool:
    if ENGINE.eval_channels_last is None:
        return folded(stack.arch, stack._template) is not None
    return bool(ENGINE.eval_channels_last)


GPU_EVAL_BATCH = 2048
CPU_EVAL_BATCH_MAX = 512
CPU_EVAL_FLOATS = 1_500_000  # floats of one activation across the stack per chunk (6 MB): cache-sized


@dataclass
class ModelStack:
    arch: str
    num_classes: int
    in_channels: int
    params: dict[str, torch.Tensor]
    buffers: dict[str, torch.Tensor]
    model_index: np.ndarray  # which models of their family these are (e.g. oracle 0..99)
    _template: nn.Module = field(default=None, repr=False)
    # per-model arrays stored alongside the weights, e.g. "train_mask" [M, n_train] of pool models
    extras: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    # test-time augmentation of eval-mode logits (margins): "none", or "flip" = the mean of the logits of
    # each image and its left-right mirror, then the margin of spec §1. Not stored with the weights.
    # Published (the FFCV CIFAR-10 script of the pools, MadryLab/datamodels examples/cifar10/train_cifar.py,
    # evaluate(), lr_tta=True): out = (model(x) + model(ch.fliplr(x))) / 2, margin = correct logit minus the
    # largest other. Two deviations: the margin is spec §1's (as every margin here), and the mirror is the
    # width axis - torch.fliplr on an [N, C, H, W] batch reverses axis 1, the colour channels, which the
    # option's own description ("horizontally flipped") does not mean. Not measured (needs the published pool).
    tta: str = "none"
    # conv weights and inputs in channels-last layout (``to_channels_last``): same results up to float
    # rounding, faster kernels for small feature maps on a CPU and with cuDNN
    channels_last: bool = False
    _compiled: object = field(default=None, repr=False)

    def __post_init__(self):
        if self._template is None:
            self._template = build_model(self.arch, self.num_classes, self.in_channels).to("meta")

    # construction -----------------------------------------------------------------------------
    @classmethod
    def initialise(cls, arch: str, num_classes: int, in_channels: int, seeds, model_index, device="cpu"):
        """Fresh models, model m initialised from ``torch.manual_seed(seeds[m])`` (as if built alone)."""
        models = []
        for seed in seeds:
            torch.manual_seed(int(seed))
            models.append(build_model(arch, num_classes, in_channels))
        return cls.from_modules(models, arch, num_classes, in_channels, model_index, device)

    @classmethod
    def from_modules(cls, models, arch, num_classes, in_channels, model_index, device="cpu"):
        params, buffers = stack_module_state(models)
        params = {k: v.detach().to(device) for k, v in params.items()}
        buffers = {k: v.detach().to(device) for k, v in buffers.items()}
        return cls(arch, num_classes, in_channels, params, buffers, np.asarray(model_index, dtype=np.int64))

    def to_module(self, m: int) -> nn.Module:
        """Model m as an ordinary ``nn.Module`` (for export and for checks)."""
        module = build_model(self.arch, self.num_classes, self.in_channels)
        state = {k: v[m] for k, v in {**self.params, **self.buffers}.items()}
        module.load_state_dict(state)
        return module

    def batchnorm_params(self) -> frozenset[str]:
        """Names of the parameters that belong to BatchNorm layers (e.g. exempt from weight decay)."""
        return frozenset(
            f"{prefix}.{name}" if prefix else name
            for prefix, module in self._template.named_modules()
            if isinstance(module, nn.modules.batchnorm._BatchNorm)
            for name, _ in module.named_parameters(recurse=False)
        )

    @property
    def n_models(self) -> int:
        return len(self.model_index)

    @property
    def device(self) -> torch.device:
        return next(iter(self.params.values())).device

    def select(self, rows) -> ModelStack:
        rows = list(rows)
        part = ModelStack(
            self.arch,
            self.num_classes,
            self.in_channels,
            {k: v[rows].clone() for k, v in self.params.items()},
            {k: v[rows].clone() for k, v in self.buffers.items()},
            self.model_index[rows],
            self._template,
            tta=self.tta,
        )
        if self.channels_last:
            part.to_channels_last()
        return part

    def assign(self, rows, other: ModelStack) -> None:
        """Write ``other``'s models into rows ``rows`` of this stack."""
        rows = list(rows)
        for store, src in ((self.params, other.params), (self.buffers, other.buffers)):
            for k in store:
                store[k][rows] = src[k].to(store[k].device)

    def copy(self) -> ModelStack:
        return self.select(range(self.n_models))

    # evaluation ---------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, *, train: bool, params=None, channels_last: bool | None = None) -> torch.Tensor:
        """Logits ``[M, B, C]``. ``x`` is ``[M, B, ...]`` (a batch per model) or ``[B, ...]`` (shared).

        The models run folded into the channels of one network (:mod:`unlearnbench.wide`) where the
        architecture allows, else through ``torch.func.vmap``; the two are bit-identical.
        ``channels_last`` (default: the stack's layout) lays the input out to match channels-last weights."""
        params = self.params if params is None else params
        channels_last = self.channels_last if channels_last is None else channels_last
        x_dim = 0 if x.dim() == self._input_dims() + 1 else None
        if channels_last:
            x = self.model_channels_last(x) if x_dim == 0 else x.contiguous(memory_format=torch.channels_last)
        net = folded(self.arch, self._template)
        if net is not None:
            return net(params, self.buffers, x, x_dim, train, channels_last)
        return self.forward_vmap(x, train=train, params=params)

    def forward_vmap(self, x: torch.Tensor, *, train: bool, params=None) -> torch.Tensor:
        """``forward`` through ``torch.func.vmap`` of the template over the stacked parameters (the
        input's layout as given)."""
        self._template.train(train)
        params = self.params if params is None else params
        x_dim = 0 if x.dim() == self._input_dims() + 1 else None
        return _stacked_forward(self._template, params, self.buffers, x, x_dim)

    def compiled_forward(self, backend: str = "inductor"):
        """``forward`` through ``torch.compile`` (compiled once per stack; opt-in: the first call compiles,
        and importing the compiler costs seconds, so it pays only for long runs on a GPU)."""
        if self._compiled is None:
            self._compiled = torch.compile(self.forward, dynamic=False, backend=backend)
        return self._compiled

    def _input_dims(self) -> int:
        return 4  # [B, C, H, W]

    def eval_batches(self, inputs: torch.Tensor, batch_size: int | None = None):
        """Eval-mode logits ``[M, b, C]`` of consecutive chunks of ``inputs``, each with its slice
        (with ``tta == "flip"``: the mean of the logits of each image and of its mirror image).

        Chunks stay inside the ``segments`` of inputs that have them (train and validation images of two
        sizes, ``data.split_images``)."""
        if self.tta not in ("none", "flip"):
            raise ValueError(f"unknown test-time augmentation {self.tta!r} (none or flip)")
        batch_size = batch_size or self.eval_batch_size(inputs)
        layout = {}
        if not self.channels_last and eval_channels_last(self):  # channels-last copies of the conv weights
            layout = {"params": {k: _per_model_channels_last(v) for k, v in self.params.items()}, "channels_last": True}
        for start, stop in getattr(inputs, "segments", [(0, len(inputs))]):
            for i in range(start, stop, batch_size):
                rows = slice(i, min(i + batch_size, stop))
                x = inputs[rows]
                logits = self.forward(x, train=False, **layout)
                if self.tta == "flip":
                    logits = (logits.float() + self.forward(x.flip(-1), train=False, **layout).float()) / 2
                yield rows, logits

    @torch.no_grad()
    def logits(self, inputs: torch.Tensor, batch_size: int | None = None) -> torch.Tensor:
        """Eval-mode logits of every model on every input: ``[M, n, C]`` (float32)."""
        return torch.cat([out.float() for _, out in self.eval_batches(inputs, batch_size)], dim=1)

    def eval_batch_size(self, inputs: torch.Tensor) -> int:
        """Inputs per eval-mode forward call.

        On CPU inference is memory-bound: a chunk's widest activation over all M models must stay cache-sized.
        Measured with ``python benchmarks/eval_batch.py`` (1 CPU thread): margins of 25 digits nets on 1,797
        points took 0.60 s in chunks of 2,048 and 0.21 s in the automatic chunks of 117, with identical margins.
        """
        if self.device.type != "cpu":
            return GPU_EVAL_BATCH
        per_input = _widest_activation(self, tuple(inputs.shape[1:]))
        return max(1, min(CPU_EVAL_BATCH_MAX, CPU_EVAL_FLOATS // (self.n_models * per_input)))

    # memory layout -----------------------------------------------------------------------------
    def to_channels_last(self) -> None:
        """Conv weights ``[M, O, C, kh, kw]`` stored channels-last per model (physically ``[M, O, kh, kw, C]``:
        folding the model axis into the output channels keeps that a channels-last 4-D weight), and inputs
        laid out to match in ``forward``. Call before handing the parameters to an optimiser."""
        self.params = {k: _per_model_channels_last(v.detach()) for k, v in self.params.items()}
        self.channels_last = True

    def to_contiguous(self) -> None:
        for k, v in self.params.items():
            if not v.is_contiguous():
                self.params[k] = v.detach().contiguous()
        self.channels_last = False

    @staticmethod
    def model_channels_last(x: torch.Tensor) -> torch.Tensor:
        """A per-model batch ``[M, B, C, H, W]`` laid out physically as ``[B, H, W, M, C]``: folding the
        model axis into the channels (the folded forward, and vmap's batched convolution) then makes
        ``[B, M*C, H, W]`` a channels-last view instead of a copy. A no-op on a batch already laid out so."""
        return x.permute(1, 3, 4, 0, 2).contiguous().permute(3, 0, 4, 1, 2)

    def finite(self) -> np.ndarray:
        """Per model: are all parameters and floating-point buffers (BatchNorm statistics) finite?"""
        ok = torch.ones(self.n_models, dtype=torch.bool, device=self.device)
        tensors = list(self.params.values()) + [b for b in self.buffers.values() if b.is_floating_point()]
        for v in tensors:
            ok &= torch.isfinite(v.reshape(self.n_models, -1)).all(dim=1)
        return ok.cpu().numpy()

    # storage ------------------------------------------------------------------------------------
    def save(self, path, extra_metadata: dict | None = None) -> None:
        tensors = {f"param.{k}": v for k, v in self.params.items()}
        tensors |= {f"buffer.{k}": v for k, v in self.buffers.items()}
        tensors["model_index"] = torch.as_tensor(self.model_index)
        tensors |= {f"extra.{k}": torch.as_tensor(v) for k, v in self.extras.items()}
        metadata = {"arch": self.arch, "num_classes": str(self.num_classes), "in_channels": str(self.in_channels)}
        metadata["extra"] = json.dumps(extra_metadata or {}, sort_keys=True)
        save_tensors(path, tensors, metadata)

    @classmethod
    def load(cls, path, device="cpu") -> ModelStack:
        tensors, meta = load_tensors(path)
        params = {k[len("param.") :]: v.to(device) for k, v in tensors.items() if k.startswith("param.")}
        buffers = {k[len("buffer.") :]: v.to(device) for k, v in tensors.items() if k.startswith("buffer.")}
        extras = {k[len("extra.") :]: v.numpy() for k, v in tensors.items() if k.startswith("extra.")}
        return cls(
            meta["arch"], int(meta["num_classes"]), int(meta["in_channels"]), params, buffers,
            tensors["model_index"].numpy(), extras=extras,
        )

    @classmethod
    def concat(cls, stacks: list[ModelStack]) -> ModelStack:
        first = stacks[0]
        return cls(
            first.arch,
            first.num_classes,
            first.in_channels,
            {k: torch.cat([s.params[k] for s in stacks]) for k in first.params},
            {k: torch.cat([s.buffers[k] for s in stacks]) for k in first.buffers},
            np.concatenate([s.model_index for s in stacks]),
        )


def _per_model_channels_last(v: torch.Tensor) -> torch.Tensor:
    """A stacked conv weight ``[M, O, C, kh, kw]`` stored as ``[M, O, kh, kw, C]``; other tensors as they are."""
    return v.permute(0, 1, 3, 4, 2).contiguous().permute(0, 1, 4, 2, 3) if v.dim() == 5 else v


def _stacked_forward(template: nn.Module, params, buffers, x: torch.Tensor, x_dim: int | None) -> torch.Tensor:
    def one(p, b, xb):
        return functional_call(template, (p, b), (xb,))

    return vmap(one, in_dims=(0, 0, x_dim), randomness="different")(params, buffers, x)


_WIDEST: dict[tuple, int] = {}


@torch.no_grad()
def _widest_activation(stack: ModelStack, input_shape: tuple[int, ...]) -> int:
    """Largest number of elements any layer of the architecture outputs for one input.

    Read from forward hooks during one eval forward of the stack itself through vmap on one blank input
    (the hooks see per-model shapes; the folded forward runs a copy of the layers, with all models'
    channels in one tensor). Not a shape-only forward on the "meta" device: meta tensors run PyTorch's
    Python reference ops, whose first call imports torch._dynamo (2 s of start-up per job).
    """
    key = (stack.arch, stack.num_classes, stack.in_channels, input_shape)
    if key not in _WIDEST:
        sizes: list[int] = []
        leaves = [m for m in stack._template.modules() if next(m.children(), None) is None]
        handles = [m.register_forward_hook(lambda _m, _i, out: sizes.append(out.numel())) for m in leaves]
        try:
            stack.forward_vmap(torch.zeros((1, *input_shape), device=stack.device), train=False)
        finally:
            for handle in handles:
                handle.remove()
        _WIDEST[key] = max(sizes, default=1)
    return _WIDEST[key]
