"""Artefact I/O: every write is atomic (temp file in the same folder, then rename) and every read
refuses pickled objects and names the broken file instead of failing deep inside numpy.

Formats: arrays as ``.npz`` (a zip of ``.npy``; loaded with ``allow_pickle=False``), model weights as
``safetensors`` (tensors only), tables as CSV/Parquet.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np


# mkstemp creates files readable by their owner only; artefacts get the usual umask-based mode instead
# (results are shared on clusters). Reading the umask means setting it: do it once, at import.
_UMASK = os.umask(0)
os.umask(_UMASK)


class ArtefactError(RuntimeError):
    """A stored artefact is missing, truncated or corrupt."""

    def __init__(self, path: str | os.PathLike, problem: str):
        self.path = str(path)
        super().__init__(
            f"{problem}: {self.path}\n"
            f"  The file is damaged or incomplete. Delete it and rebuild it, e.g. "
            f"`snakemake --cores all --forcerun {self.path}` (or just `rm {self.path}` and rerun snakemake)."
        )


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it over ``path`` only if the block succeeds.

    A killed job therefore never leaves a half-written file under the final name.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def save_arrays(path: str | os.PathLike, **arrays: np.ndarray) -> None:
    """Write named arrays to an ``.npz`` file atomically."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **{k: np.asarray(v) for k, v in arrays.items()})


def load_arrays(path: str | os.PathLike, required: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """Read every array of an ``.npz`` file (no pickles); raise :class:`ArtefactError` on damage."""
    if not os.path.exists(path):
        raise ArtefactError(path, "missing file")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as err:
        raise ArtefactError(path, f"cannot read arrays ({type(err).__name__}: {err})") from err
    missing = [k for k in required if k not in arrays]
    if missing:
        raise ArtefactError(path, f"arrays {missing} missing")
    return arrays


def save_npy(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write one array as ``.npy`` atomically."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.save(fh, np.asarray(array))


def load_npy(path: str | os.PathLike) -> np.ndarray:
    """Read one ``.npy`` array (no pickles); raise :class:`ArtefactError` on damage."""
    if not os.path.exists(path):
        raise ArtefactError(path, "missing file")
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise ArtefactError(path, f"cannot read array ({type(err).__name__}: {err})") from err


def save_tensors(path: str | os.PathLike, tensors: Mapping, metadata: Mapping[str, str] | None = None) -> None:
    """Write a flat mapping name -> tensor as safetensors atomically."""
    from safetensors.torch import save_file

    contiguous = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    with atomic_path(path) as tmp:
        save_file(contiguous, str(tmp), metadata=dict(metadata or {}))


def load_tensors(path: str | os.PathLike) -> tuple[dict, dict[str, str]]:
    """Read safetensors (tensors only, never pickles); return (tensors, metadata)."""
    from safetensors import SafetensorError, safe_open

    if not os.path.exists(path):
        raise ArtefactError(path, "missing file")
    try:
        with safe_open(str(path), framework="pt") as fh:
            metadata = dict(fh.metadata() or {})
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise ArtefactError(path, f"cannot read weights ({type(err).__name__}: {err})") from err
    return tensors, metadata


def save_table(path: str | os.PathLike, frame) -> None:
    """Write a pandas DataFrame as CSV or Parquet (by suffix) atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        if path.suffix == ".parquet":
            frame.to_parquet(tmp, index=False)
        else:
            frame.to_csv(tmp, index=False)


# Columns that identify things (ids, names, labels, free text): always strings, never NA. pandas would
# otherwise read forget set "01" as 1 (merging it with set 1), "007" as 7, and "NA", "nan", "null" or
# "None" (valid ids, or a plug-in method named NA) as missing values.
KEY_COLUMNS = frozenset({
    "dataset", "model", "forget_set", "forget_set_description", "method", "run", "sample", "group", "role",
    "direction", "selection_rule", "points",
})
# What pandas reads as missing by default; kept for the value columns only.
NA_STRINGS = ("", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN", "<NA>",
              "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null")


def load_table(path: str | os.PathLike):
    """Read a CSV or Parquet table written by :func:`save_table`; :data:`KEY_COLUMNS` come back as strings,
    exactly as written (no number or missing-value parsing), the other columns as pandas infers them."""
    import pandas as pd

    if not os.path.exists(path):
        raise ArtefactError(path, "missing file")
    try:
        if str(path).endswith(".parquet"):
            table = pd.read_parquet(path)
            keys = [c for c in table.columns if c in KEY_COLUMNS]
            return table.astype({c: str for c in keys})
        header = pd.read_csv(path, nrows=0).columns
        return pd.read_csv(path, dtype={c: str for c in header if c in KEY_COLUMNS}, keep_default_na=False,
                           na_values={c: list(NA_STRINGS) for c in header if c not in KEY_COLUMNS})
    except Exception as err:  # pandas raises many parser-specific types
        raise ArtefactError(path, f"cannot read table ({type(err).__name__}: {err})") from err
