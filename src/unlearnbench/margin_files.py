"""Read margins, correctness flags and forget indices written by any framework (for ``unlearnbench score``).

Formats, by suffix:

- ``.npy``: one array (``numpy.load(allow_pickle=False)``);
- ``.npz``: the array under the expected key (``margins``, ``correct``, ``forget``), or the archive's only array;
- ``.pt`` / ``.pth``: ``torch.load(weights_only=True)`` (tensors and plain containers only): a tensor, or a dict
  holding the expected key or exactly one tensor (torch is imported only for these);
- a folder: one file per model (``[points]``) or per group of models (``[k, points]``) in any of the formats above,
  stacked in natural name order (``m2`` before ``m10``); hidden files (``.name``) are skipped.

Nothing is ever unpickled: a pickled payload (an object array, a ``.pt`` holding other objects than tensors) is
refused. Every problem raises :class:`InputError` with one line naming the file.
"""

from __future__ import annotations

import os
import re
import zipfile
from pathlib import Path

import numpy as np

__all__ = ["InputError", "SUFFIXES", "load_array", "load_correct", "load_forget", "load_margins"]

SUFFIXES = (".npy", ".npz", ".pt", ".pth")


class InputError(ValueError):
    """An input file is missing, unreadable, pickled, or holds the wrong kind of array."""


def load_array(path: str | os.PathLike, key: str) -> np.ndarray:
    """The one array in file ``path`` (``key`` picks it out of an ``.npz`` or a dict with several)."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise InputError(f"{path}: unknown suffix {path.suffix!r} (expected a folder or one of {', '.join(SUFFIXES)})")
    if suffix in (".pt", ".pth"):
        return _load_torch(path, key)
    try:
        loaded = np.load(path, allow_pickle=False)
        if isinstance(loaded, np.lib.npyio.NpzFile):
            with loaded:
                return _pick(path, key, {k: loaded[k] for k in loaded.files})
        return loaded
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise InputError(f"{path}: holds pickled Python objects (an object array); refused, nothing is "
                             "unpickled: save plain numeric arrays") from None
        raise InputError(f"{path}: not a readable {suffix} file ({exc})") from None
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise InputError(f"{path}: not a readable {suffix} file ({type(exc).__name__}: {exc})") from None


def _load_torch(path: Path, key: str) -> np.ndarray:
    import torch

    try:
        value = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError, ... for refused or broken files
        if "Unsupported global" in str(exc):  # the weights-only unpickler met something else than tensors
            raise InputError(f"{path}: holds pickled Python objects besides tensors; refused (read with "
                             "torch.load(weights_only=True)): save tensors only") from None
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise InputError(f"{path}: not a readable .pt file ({type(exc).__name__}: {first[:120]})") from None
    if isinstance(value, dict):
        value = _pick(path, key, value)
    if not isinstance(value, torch.Tensor):
        raise InputError(f"{path}: expected a tensor or a dict with one tensor, found a {type(value).__name__}")
    value = value.detach().cpu()
    if value.dtype == torch.bfloat16:  # numpy has no bfloat16
        value = value.float()
    return value.numpy()


def _pick(path: Path, key: str, arrays: dict):
    if key in arrays:
        return arrays[key]
    if len(arrays) == 1:
        return next(iter(arrays.values()))
    raise InputError(f"{path}: holds {len(arrays)} arrays {sorted(map(str, arrays))[:6]}; expected one, "
                     f"or one named {key!r}")


def _natural_key(name: str) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def _load_models(path: str | os.PathLike, key: str) -> np.ndarray:
    """A ``[models, points]`` array from a file, or from a folder of per-model files (stacked by name)."""
    path = Path(path)
    if not path.is_dir():
        array = load_array(path, key)
        if array.ndim != 2:
            raise InputError(f"{path}: expected a 2-D [models, points] array, got shape {array.shape}")
        return array
    files = sorted((p for p in path.iterdir() if not p.name.startswith(".")), key=lambda p: _natural_key(p.name))
    if not files:
        raise InputError(f"{path}: empty folder (expected one file per model)")
    rows = []
    for file in files:
        if file.is_dir():
            raise InputError(f"{file}: a folder inside the folder of per-model files")
        array = load_array(file, key)
        if array.ndim not in (1, 2):
            raise InputError(f"{file}: expected one model's [points] or [models, points], got shape {array.shape}")
        array = array.reshape(-1, array.shape[-1])
        if rows and array.shape[1] != rows[0].shape[1]:
            raise InputError(f"{file}: {array.shape[1]} points, but {files[0].name} has {rows[0].shape[1]}: "
                             "every file must hold the same points")
        rows.append(array)
    return np.concatenate(rows)


def load_margins(path: str | os.PathLike) -> np.ndarray:
    """Margins ``[models, points]`` (floating point) from a file or a folder."""
    margins = _load_models(path, "margins")
    if margins.dtype.kind != "f":
        raise InputError(f"{path}: expected floating-point margins, got dtype {margins.dtype}")
    return margins


def load_correct(path: str | os.PathLike) -> np.ndarray:
    """Argmax correctness ``bool [models, points]`` from a file or folder: bool, or integers that are 0 or 1."""
    correct = _load_models(path, "correct")
    if correct.dtype == bool:
        return correct
    if correct.dtype.kind in "iu" and np.isin(correct, (0, 1)).all():
        return correct.astype(bool)
    raise InputError(f"{path}: expected correctness flags (bool, or 0/1 integers), got dtype {correct.dtype}"
                     + (" with other values than 0 and 1" if correct.dtype.kind in "iu" else ""))


def load_forget(path: str | os.PathLike, n_train: int) -> np.ndarray:
    """Forget-set indices: a non-empty 1-D integer array of distinct train indices in ``[0, n_train)``."""
    forget = load_array(path, "forget")
    if forget.dtype.kind not in "iu":
        raise InputError(f"{path}: expected integer train indices, got dtype {forget.dtype}")
    if forget.ndim != 1 or forget.size == 0:
        raise InputError(f"{path}: expected a non-empty 1-D array of indices, got shape {forget.shape}")
    outside = (forget < 0) | (forget >= n_train)
    if outside.any():
        raise InputError(f"{path}: {int(outside.sum())} of {forget.size} indices out of range [0, {n_train}) "
                         f"(--n-train), e.g. {int(forget[outside][0])}")
    if np.unique(forget).size != forget.size:
        raise InputError(f"{path}: {forget.size - np.unique(forget).size} repeated index(es)")
    return forget.astype(np.int64)
