"""Import the published CIFAR-10 assets (spec §3-4) instead of training them.

The published benchmark ships, per model family (file names and sources: :mod:`unlearnbench.hub_layouts`),

- base-model weights as ``sd_<n>____epoch_23.pt``: a plain ``state_dict`` of the ResNet-9 after its
  24th (last, 0-based 23) epoch, saved with ``torch.save``;
- oracle margins as ``train_margins_all.pt`` ``[n, 50000]`` and ``val_margins_all.pt`` ``[n, 10000]``
  (one row per model, torchvision train / test order).

Its successor (EasyDUB) ships margins as one 1-D float ``.npy`` per model and split: base models' margins
on all train points and on the validation points; oracles' margins on the retain points (train minus F,
increasing index order), the forget points (in the order of the forget-set file) and the validation
points. :func:`per_model_margins` and :func:`per_model_oracle_margins` put them back into train order.

Everything is read with ``torch.load(..., weights_only=True)`` (``.pt``) or ``numpy.load(...,
allow_pickle=False)`` (``.npy``): tensors and plain arrays only, a pickled arbitrary object is refused.
The import stages (:mod:`unlearnbench.stages.imports`) write the result in our own formats (weights safetensors through :meth:`ModelStack.save`, margins
``.npz`` with ``margins [M, 60000]`` + ``model_index``), so the rest of the workflow cannot tell an
imported shard from a trained one. (No ``correct`` flags: the published files hold margins only.)

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
    """A published file does not have the expected content. The file is the user's (``import`` in the config):
    the message says what is wrong with it, never to delete or rebuild it."""

    def __init__(self, message: str):
        super().__init__(
            f"{message}\n  This is a published asset you supplied (config key import), not a workflow output: "
            "the workflow never rebuilds or deletes it. Replace it with the published file, then rerun snakemake."
        )


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


def margin_rows(train_path: str | os.PathLike, val_path: str | os.PathLike, model_range: tuple[int, int],
                n_train: int | None = None, n_val: int | None = None) -> np.ndarray:
    """Rows ``model_range = (start, stop)`` of published train/val margin files, as models ``start..stop-1``:
    ``margins [stop - start, n_train + n_val]`` float32 (train points then validation points), in the shard
    ``compute_margins`` would write.
    """
    train = load_published_margins(train_path, n_train)
    val = load_published_margins(val_path, n_val)
    if train.shape[0] != val.shape[0]:
        raise PublishedFormatError(f"{train_path} has {train.shape[0]} models but {val_path} has {val.shape[0]}")
    start, stop = (int(v) for v in model_range)
    if stop > train.shape[0]:
        raise PublishedFormatError(
            f"{train_path}: holds {train.shape[0]} models, models {start}..{stop - 1} requested "
            "(import fewer oracles: import.oracle_shards: scored, or lower n_models / n_holdout_oracles)"
        )
    return np.concatenate([train[start:stop], val[start:stop]], axis=1).astype(np.float32)


# one .npy per model and split (the successor's layout) ------------------------------------------------


def load_margin_vector(path: str | os.PathLike, n_points: int) -> np.ndarray:
    """One model's margins on one split: a 1-D float ``.npy`` of ``n_points`` values, as float32."""
    try:
        value = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise PublishedFormatError(f"{path}: not a .npy array without pickled objects ({type(err).__name__}: "
                                   f"{err})") from err
    if not isinstance(value, np.ndarray) or value.ndim != 1 or value.dtype.kind != "f":
        raise PublishedFormatError(f"{path}: expected a 1-D float array of margins, found shape "
                                   f"{getattr(value, 'shape', None)} dtype {getattr(value, 'dtype', None)}")
    if len(value) != n_points:
        raise PublishedFormatError(f"{path}: {len(value)} margins, expected {n_points}")
    return value.astype(np.float32)


def published_forget_set(path: str | os.PathLike, n_train: int) -> np.ndarray:
    """A published forget-set index file, in its own order (1-D integers, distinct, within the train split)."""
    from .downloads import DownloadError, check_index_file

    try:
        indices = check_index_file(path)
    except DownloadError as err:
        raise PublishedFormatError(str(err)) from err
    if indices.size == 0 or indices.min() < 0 or indices.max() >= n_train:
        raise PublishedFormatError(f"{path}: indices must be non-empty and within 0..{n_train - 1}")
    if len(np.unique(indices)) != len(indices):
        raise PublishedFormatError(f"{path}: indices repeat")
    return indices


def check_same_forget_set(published: np.ndarray, ours: np.ndarray, forget_set: str) -> None:
    """The oracles of ``published`` may only be scored against the same points (in any order)."""
    a, b = np.sort(published), np.sort(np.asarray(ours, dtype=np.int64))
    if not np.array_equal(a, b):
        common = len(np.intersect1d(a, b))
        raise PublishedFormatError(
            f"forget set {forget_set}: the config's forget set ({len(b)} points) is not the published forget set "
            f"{forget_set} ({len(a)} points, {common} in common) whose oracle margins are imported; use kind: "
            "published for it, or import.oracle_shards: none to train its oracles"
        )


def per_model_margins(model_files: Sequence[tuple[str | os.PathLike, str | os.PathLike]],
                      model_index: Sequence[int], n_train: int, n_val: int) -> np.ndarray:
    """A margins shard's ``margins [M, n_train + n_val]`` from per-model ``(train points, validation points)``
    margin files, one pair per model of ``model_index``."""
    if len(model_files) != len(model_index):
        raise ValueError(f"{len(model_files)} models' files for {len(model_index)} model indices")
    return np.stack([
        np.concatenate([load_margin_vector(train, n_train), load_margin_vector(val, n_val)])
        for train, val in model_files
    ])


def per_model_oracle_margins(forget_indices: np.ndarray,
                              model_files: Sequence[tuple[str | os.PathLike, str | os.PathLike, str | os.PathLike]],
                              model_index: Sequence[int], n_train: int, n_val: int) -> np.ndarray:
    """An oracle margins shard's ``margins`` from per-model ``(retain, forget, validation)`` files, back in train
    order.

    ``forget_indices`` is the published forget-set file in its own order: the forget file's j-th margin
    belongs to train point ``forget_indices[j]``; the retain file lists the other train points in
    increasing order.
    """
    from .forget_sets import retain_points

    if len(model_files) != len(model_index):
        raise ValueError(f"{len(model_files)} models' files for {len(model_index)} model indices")
    forget = np.asarray(forget_indices, dtype=np.int64)
    retain = retain_points(forget, n_train)
    margins = np.empty((len(model_files), n_train + n_val), dtype=np.float32)
    for row, (retain_file, forget_file, val_file) in enumerate(model_files):
        margins[row, retain] = load_margin_vector(retain_file, len(retain))
        margins[row, forget] = load_margin_vector(forget_file, len(forget))
        margins[row, n_train:] = load_margin_vector(val_file, n_val)
    return margins
