"""Artefact I/O: every write is atomic (temp file in the same folder, then rename) and every read
refuses pickled objects and names the broken file instead of failing deep inside numpy.

Formats: arrays as ``.npz`` (a zip of ``.npy``; loaded with ``allow_pickle=False``), model weights as
``safetensors`` (tensors only), tables as CSV/Parquet. Identical content gives identical bytes (no
timestamps, no hash-ordered metadata), so two identical runs can be compared file by file.

A write in progress holds an exclusive ``flock`` on its temp file: :func:`sweep_stale_temp_files`
removes only temp files nobody holds and nobody has written to for a while (a writer killed by
SIGKILL leaves its temp file behind; the kernel releases its lock).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import struct
import tempfile
import time
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np


# mkstemp creates files readable by their owner only; artefacts get the usual umask-based mode instead
# (results are shared on clusters). Reading the umask means setting it: do it once, at import.
_UMASK = os.umask(0)
os.umask(_UMASK)


try:  # POSIX; elsewhere temp files are swept by age alone
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None


class ArtefactError(RuntimeError):
    """A stored artefact (a workflow output) is missing, truncated or corrupt."""

    def __init__(self, path: str | os.PathLike, problem: str):
        self.path = str(path)
        super().__init__(
            f"{problem}: {self.path}\n"
            f"  The file is damaged or incomplete. Delete it and rebuild it, e.g. "
            f"`snakemake --cores all --forcerun {self.path}` (or just `rm {self.path}` and rerun snakemake)."
        )


class UserInputError(ValueError):
    """A file the user supplied (a forget-set file, an imported asset, the raw data) cannot be used.

    Unlike :class:`ArtefactError` the advice is never to delete or rebuild it: the workflow did not make it
    and cannot remake it; the user fixes or replaces it.
    """

    def __init__(self, path: str | os.PathLike, problem: str, what: str = "an input file you supplied"):
        self.path = str(path)
        super().__init__(
            f"{problem}: {self.path}\n"
            f"  This is {what}, not a workflow output: the workflow never rebuilds or deletes it. "
            "Fix or replace the file, then rerun snakemake."
        )


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it over ``path`` only if the block succeeds.

    A killed job therefore never leaves a half-written file under the final name. The temp file is named
    ``.<name>.<8 random characters>.tmp`` and locked (``flock``) until the block ends, so that
    :func:`sweep_stale_temp_files` never removes it while its writer is alive.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    _try_lock(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        os.close(fd)  # releases the lock


def _try_lock(fd: int) -> bool:
    """Take an exclusive lock without waiting; False when it is held elsewhere (or locks are unsupported)."""
    if fcntl is None:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:  # held by a live writer (EWOULDBLOCK), or no lock support on this file system
        return False
    return True


# atomic_path's temp names: "." + final name + "." + mkstemp's 8 characters + ".tmp"
TEMP_NAME = re.compile(r"\..+\.[a-z0-9_]{8}\.tmp")
# A temp file untouched for this long whose lock nobody holds belongs to a dead writer. The age also protects
# writers on another host whose file system does not share locks: a live writer keeps writing (moving mtime).
STALE_AFTER_S = 15 * 60


def sweep_stale_temp_files(root: str | os.PathLike, stale_after_s: float = STALE_AFTER_S) -> list[Path]:
    """Remove the temp files of writers that died under ``root`` (a SIGKILL leaves them); return them.

    A file goes only when (1) its name is :func:`atomic_path`'s temp pattern, (2) it has not been modified for
    ``stale_after_s`` seconds and (3) this process can take its exclusive lock, i.e. no live writer holds it.
    """
    removed: list[Path] = []
    now = time.time()
    for folder, _, names in os.walk(root):
        for name in names:
            if not TEMP_NAME.fullmatch(name):
                continue
            path = Path(folder, name)
            try:
                fd = os.open(path, os.O_RDONLY)
            except OSError:  # gone meanwhile (its writer finished), or unreadable
                continue
            try:
                if now - os.fstat(fd).st_mtime >= stale_after_s and (_try_lock(fd) or fcntl is None):
                    path.unlink()
                    removed.append(path)
            except OSError:
                pass
            finally:
                os.close(fd)
    return removed


def save_arrays(path: str | os.PathLike, **arrays: np.ndarray) -> None:
    """Write named arrays to an ``.npz`` file atomically."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **{k: np.asarray(v) for k, v in arrays.items()})


# the arrays every margins artefact (compute_margins, imports) and unlearned artefact (unlearn) holds
MARGINS_REQUIRED = ("margins", "model_index")
UNLEARNED_REQUIRED = ("margins", "epochs", "samples", "diverged", "model_index")


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


def load_npy(path: str | os.PathLike, user_input: str | None = None) -> np.ndarray:
    """Read one ``.npy`` array (no pickles); raise :class:`ArtefactError` on damage.

    ``user_input`` describes a file the user supplied (e.g. "the file of forget set 4 (config key
    forget_sets[].path)"): problems then raise :class:`UserInputError`, which does not advise a rebuild.
    """
    def fail(problem):
        return UserInputError(path, problem, user_input) if user_input else ArtefactError(path, problem)

    if not os.path.exists(path):
        raise fail("missing file")
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise fail(f"cannot read array ({type(err).__name__}: {err})") from err
    if not isinstance(array, np.ndarray):  # an .npz archive under an .npy name
        array.close()
        raise fail("expected one .npy array, found an .npz archive")
    return array


def save_tensors(path: str | os.PathLike, tensors: Mapping, metadata: Mapping[str, str] | None = None) -> None:
    """Write a flat mapping name -> tensor as safetensors atomically."""
    from safetensors.torch import save_file

    contiguous = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    with atomic_path(path) as tmp:
        save_file(contiguous, str(tmp), metadata=dict(metadata or {}))
        _canonical_safetensors_header(tmp)


def _canonical_safetensors_header(path: str | os.PathLike) -> None:
    """Rewrite a safetensors header with its metadata keys sorted.

    The library writes ``__metadata__`` in the iteration order of a Rust hash map, which is randomised per
    process: identical shards would differ byte for byte between runs. The header is JSON after an 8-byte
    little-endian length, padded with spaces; the sorted text has the same length, so it is rewritten in place
    (else the file is rewritten whole with the new, re-padded header).
    """
    with open(path, "r+b") as fh:
        (length,) = struct.unpack("<Q", fh.read(8))
        header = json.loads(fh.read(length))
        metadata = header.pop("__metadata__", None)
        canonical = {"__metadata__": dict(sorted(metadata.items()))} if metadata is not None else {}
        canonical.update(header)
        text = json.dumps(canonical, separators=(",", ":"), ensure_ascii=False).encode()
        if len(text) <= length:
            fh.seek(8)
            fh.write(text + b" " * (length - len(text)))
            return
        data = fh.read()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", len(text)) + text + data)


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


def stack_tables(tables: list, first: list[str], order: list[str]):
    """Concatenate per-run tables (each with its identifying columns), ``first`` columns first, in a stable order."""
    import pandas as pd

    table = pd.concat(tables, ignore_index=True)
    table = table[first + [c for c in table.columns if c not in first]]
    return table.sort_values(order, kind="stable")


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write a text file atomically (UTF-8)."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
