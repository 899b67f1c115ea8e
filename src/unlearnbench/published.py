"""Import the published CIFAR-10 assets (spec §3-4) instead of training them.

The published benchmark ships, per model family,

- base-model weights as ``sd_<n>____epoch_23.pt``: a plain ``state_dict`` of the ResNet-9 after its
  24th (last, 0-based 23) epoch, saved with ``torch.save``;
- oracle margins as ``train_margins_all.pt`` ``[n, 50000]`` and ``val_margins_all.pt`` ``[n, 10000]``
  (one row per model, torchvision train / test order).

Everything is read with ``torch.load(..., weights_only=True)``: tensors and plain containers only, a
pickled arbitrary object is refused. The result is written in our own formats (weights safetensors
through :meth:`ModelStack.save`, margins ``.npz`` with ``margins [M, 60000]`` + ``model_index``), so
the rest of the workflow cannot tell an imported shard from a trained one.

Key mapping. Keys are first stripped of wrapper prefixes (``module.`` from DataParallel /
DistributedDataParallel, ``model.`` from wrapper modules, in any combination). If the remaining names
are exactly our ResNet-9's state-dict keys they are used as they are. Otherwise the tensors are mapped
by *order*: the published ResNet-9 has the same layer sequence as ours (spec §3), and
``state_dict()`` lists tensors in registration order, so the i-th published tensor is our i-th one.
Every shape is checked, and any mismatch (count or shape) is an error naming both keys: a net with
another layer order cannot be imported silently. BatchNorm's ``num_batches_tracked`` counters are
matched among themselves; when the published dict has none (older torch, or saved without them) ours
are set to 0 (they do not affect evaluation or training with a fixed BatchNorm momentum).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

PREFIXES = ("module.", "model.")
COUNTER = "num_batches_tracked"


class PublishedFormatError(ValueError):
    """A published file does not have the expected content."""


def _load(path: str | os.PathLike):
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises UnpicklingError / RuntimeError for refused or broken files
        raise PublishedFormatError(
            f"{path}: cannot be read as tensors only (torch.load weights_only=True: {type(err).__name__}: "
            f"{str(err).splitlines()[0] if str(err) else ''}). Published files contain tensors only; "
            "a file with pickled objects is refused."
        ) from err


def strip_prefixes(key: str) -> str:
    """``module.model.net.0.0.weight`` -> ``net.0.0.weight``: wrapper prefixes removed, repeatedly."""
    changed = True
    while changed:
        changed = False
        for prefix in PREFIXES:
            if key.startswith(prefix):
                key, changed = key[len(prefix):], True
    return key


def map_state_dict(source: dict, target: dict, where: str = "published state dict") -> dict:
    """Rename ``source`` tensors onto ``target``'s keys (by name, else by order), checking shapes."""
    import torch

    stripped = {}
    for key, value in source.items():
        if not isinstance(value, torch.Tensor):
            raise PublishedFormatError(f"{where}: entry {key!r} is a {type(value).__name__}, not a tensor")
        name = strip_prefixes(key)
        if name in stripped:
            raise PublishedFormatError(f"{where}: key {key!r} collides with another after stripping prefixes")
        stripped[name] = value
    if set(stripped) == set(target):
        pairs = [(k, k) for k in target]
    else:
        src_main = [k for k in stripped if not k.endswith(COUNTER)]
        dst_main = [k for k in target if not k.endswith(COUNTER)]
        if len(src_main) != len(dst_main):
            raise PublishedFormatError(
                f"{where}: {len(src_main)} parameter/statistics tensors, expected {len(dst_main)} "
                f"(our keys {dst_main[:3]}...; its keys {src_main[:3]}...): not the published ResNet-9 layout"
            )
        pairs = list(zip(src_main, dst_main))
        src_count = [k for k in stripped if k.endswith(COUNTER)]
        dst_count = [k for k in target if k.endswith(COUNTER)]
        if src_count:
            if len(src_count) != len(dst_count):
                raise PublishedFormatError(
                    f"{where}: {len(src_count)} BatchNorm counters, expected {len(dst_count)}"
                )
            pairs += list(zip(src_count, dst_count))
    mapped = {}
    for src_key, dst_key in pairs:
        value, expected = stripped[src_key], target[dst_key]
        if tuple(value.shape) != tuple(expected.shape):
            raise PublishedFormatError(
                f"{where}: {src_key!r} has shape {tuple(value.shape)} but maps to our {dst_key!r} of shape "
                f"{tuple(expected.shape)}: not the published ResNet-9 layout"
            )
        mapped[dst_key] = value.detach().to(expected.dtype).contiguous()
    for key, value in target.items():
        if key not in mapped:  # only BatchNorm counters can be missing (checked above)
            mapped[key] = torch.zeros_like(value)
    return {key: mapped[key] for key in target}  # our key order


def load_published_state_dict(path: str | os.PathLike, arch: str = "resnet9", num_classes: int = 10,
                              in_channels: int = 3) -> dict:
    """A published ``sd_<n>____epoch_23.pt`` as a state dict with our model's keys (see module doc)."""
    from .models import build_model

    source = _load(path)
    if isinstance(source, dict) and "state_dict" in source and isinstance(source["state_dict"], dict):
        source = source["state_dict"]
    if not isinstance(source, dict):
        raise PublishedFormatError(f"{path}: expected a state dict, found a {type(source).__name__}")
    target = build_model(arch, num_classes, in_channels).state_dict()
    return map_state_dict(source, target, where=str(path))


def stack_from_published(paths: Sequence[str | os.PathLike], model_index: Sequence[int], arch: str = "resnet9",
                         num_classes: int = 10, in_channels: int = 3, device: str = "cpu"):
    """A :class:`ModelStack` of the published models ``paths`` (one file per model), rows ``model_index``."""
    from .models import build_model
    from .stack import ModelStack

    if len(paths) != len(model_index):
        raise ValueError(f"{len(paths)} files for {len(model_index)} model indices")
    modules = []
    for path in paths:
        module = build_model(arch, num_classes, in_channels)
        module.load_state_dict(load_published_state_dict(path, arch, num_classes, in_channels))
        modules.append(module)
    return ModelStack.from_modules(modules, arch, num_classes, in_channels, model_index, device)


def load_published_margins(path: str | os.PathLike, n_points: int | None = None) -> np.ndarray:
    """A published ``{train,val}_margins_all.pt`` (a tensor ``[n_models, n_points]``) as float32 numpy."""
    import torch

    value = _load(path)
    if isinstance(value, np.ndarray):
        value = torch.from_numpy(value)
    if not isinstance(value, torch.Tensor) or value.dim() != 2:
        shape = tuple(value.shape) if hasattr(value, "shape") else type(value).__name__
        raise PublishedFormatError(f"{path}: expected a 2-D tensor [models, points], found {shape}")
    if n_points is not None and value.shape[1] != n_points:
        raise PublishedFormatError(f"{path}: {value.shape[1]} points per model, expected {n_points}")
    return value.detach().float().cpu().numpy()


def import_base_weights(paths: Sequence[str | os.PathLike], model_index: Sequence[int], out: str | os.PathLike,
                        arch: str = "resnet9", num_classes: int = 10, in_channels: int = 3) -> None:
    """Write one weights shard (as ``train_base`` would) from published state dicts."""
    stack = stack_from_published(paths, model_index, arch, num_classes, in_channels)
    stack.save(out, {"imported_from": [os.path.basename(str(p)) for p in paths]})


def import_margins(train_path: str | os.PathLike, val_path: str | os.PathLike, model_range: tuple[int, int],
                   out: str | os.PathLike, n_train: int | None = None, n_val: int | None = None) -> None:
    """Write one margins shard (as ``compute_margins`` would) from published train/val margin files.

    Rows ``model_range = (start, stop)`` of the published files become models ``start..stop-1``:
    ``margins [stop - start, n_train + n_val]`` float32 (train points then validation points).
    """
    from .storage import save_arrays

    train = load_published_margins(train_path, n_train)
    val = load_published_margins(val_path, n_val)
    if train.shape[0] != val.shape[0]:
        raise PublishedFormatError(f"{train_path} has {train.shape[0]} models but {val_path} has {val.shape[0]}")
    start, stop = (int(v) for v in model_range)
    if stop > train.shape[0]:
        raise PublishedFormatError(
            f"{train_path}: holds {train.shape[0]} models, models {start}..{stop - 1} requested "
            "(import fewer oracles, e.g. import.oracle_margins.<id>.shards: scored)"
        )
    margins = np.concatenate([train[start:stop], val[start:stop]], axis=1).astype(np.float32)
    save_arrays(out, margins=margins, model_index=np.arange(start, stop, dtype=np.int64))
