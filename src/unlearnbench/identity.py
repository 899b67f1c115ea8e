"""Artefacts that say what they are: a result's identity (data set, model, forget set, method, run, sample) is
stored inside the file, as :class:`~unlearnbench.data.splits.Splits` and :class:`~unlearnbench.stack.ModelStack` carry
theirs. A job that collects results (the summaries, the figures) reads who each file belongs to from the file,
so no rule passes a list of keys kept parallel to its list of inputs.

One typed save/load per storage kind, both on top of :mod:`unlearnbench.storage` (atomic writes, no pickles):

- tables (``stats.csv``, ``epsilon.csv`` of a KLOM score; ``scores.csv`` of U-LiRA): the identity as leading
  columns, one value per column, repeated on every row (:func:`save_table` / :func:`load_table`);
- arrays (``klom.npz`` of a KLOM score; the unlearned shards): the identity as one small unicode array
  ``identity`` of ``[field, value]`` rows, readable with ``allow_pickle=False`` (:func:`save_arrays` /
  :func:`load_arrays`; :func:`read_identity` reads only that array).
"""

from __future__ import annotations

import dataclasses
import os
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from . import storage

# Every field, in the order the files and the summaries show them.
FIELDS = ("dataset", "model", "forget_set", "method", "run", "sample")
ARRAY = "identity"  # the name of the identity array in an .npz artefact


@dataclass(frozen=True)
class Identity:
    """Who a result belongs to. ``method`` and ``run`` always; the others where the artefact has them
    (a U-LiRA score has no forget set nor sample). ``sample`` is the sample wildcard (``selection`` or
    ``report_epoch~<e>``, :mod:`unlearnbench.selection`)."""

    method: str
    run: str
    dataset: str | None = None
    model: str | None = None
    forget_set: str | None = None
    sample: str | None = None

    def __post_init__(self):
        for field in dataclasses.fields(self):  # ids stay strings: forget set "01" is not 1
            value = getattr(self, field.name)
            if value is not None:
                object.__setattr__(self, field.name, str(value))

    def fields(self) -> dict[str, str]:
        """The fields it has, in :data:`FIELDS` order (plain data: a rule's param, a table's columns)."""
        return {name: getattr(self, name) for name in FIELDS if getattr(self, name) is not None}

    @classmethod
    def of_job(cls, dataset: str, model: str, wildcards: Mapping[str, str]) -> Identity:
        """The identity of what a job writes: the run's data set and model, and the job's own wildcards
        among :data:`FIELDS` (others, such as ``shard``, are left out)."""
        return cls(**{k: v for k, v in wildcards.items() if k in FIELDS} | {"dataset": dataset, "model": model})

    def describe(self) -> str:
        """``method m, run r, forget set f`` (what a log line names)."""
        parts = [f"method {self.method}", f"run {self.run}"]
        return ", ".join(parts + ([f"forget set {self.forget_set}"] if self.forget_set is not None else []))


def save_table(path: str | os.PathLike, identity: Identity, frame) -> None:
    """``frame`` with ``identity`` as its leading columns, as CSV or Parquet (by suffix)."""
    columns = identity.fields()
    clash = [c for c in columns if c in frame.columns]
    if clash:
        raise ValueError(f"the table already has identity columns {clash}")
    storage.save_table(path, frame.assign(**columns)[[*columns, *frame.columns]])


def load_table(path: str | os.PathLike):
    """``(identity, table)`` of a table :func:`save_table` wrote; the table keeps its identity columns (strings).
    The identity is None for a table with no rows (e.g. the ε of a sample that computes none): it describes
    nothing, and adds no rows to a summary."""
    table = storage.load_table(path)
    present = [c for c in FIELDS if c in table.columns]
    if "method" not in present or "run" not in present:
        raise storage.ArtefactError(path, "no identity stored (columns 'method' and 'run'): a file from an older "
                                          "version")
    if not len(table):
        return None, table
    values = {}
    for column in present:
        distinct = table[column].unique()
        if len(distinct) != 1:
            raise storage.ArtefactError(path, f"identity column {column!r} holds {len(distinct)} values")
        values[column] = distinct[0]
    return Identity(**values), table


def save_arrays(path: str | os.PathLike, identity: Identity, /, **arrays: np.ndarray) -> None:
    """Named arrays and ``identity`` (the array ``identity``: ``[field, value]`` rows, unicode) as ``.npz``."""
    if ARRAY in arrays:
        raise ValueError(f"'{ARRAY}' is reserved for the artefact's identity")
    rows = np.array(list(identity.fields().items()), dtype=str).reshape(-1, 2)
    storage.save_arrays(path, **arrays, **{ARRAY: rows})


def load_arrays(path: str | os.PathLike, required: tuple[str, ...] = ()) -> tuple[Identity, dict[str, np.ndarray]]:
    """``(identity, arrays)`` of an ``.npz`` :func:`save_arrays` wrote (the identity array left out)."""
    arrays = storage.load_arrays(path, required)
    return _identity(path, arrays.pop(ARRAY, None)), arrays


def read_identity(path: str | os.PathLike) -> Identity:
    """The identity of an ``.npz`` artefact, reading that array only (the others stay on disk)."""
    if not os.path.exists(path):
        raise storage.ArtefactError(path, "missing file")
    try:
        with np.load(path, allow_pickle=False) as npz:
            rows = npz[ARRAY] if ARRAY in npz.files else None
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as err:
        raise storage.ArtefactError(path, f"cannot read arrays ({type(err).__name__}: {err})") from err
    return _identity(path, rows)


def _identity(path, rows: np.ndarray | None) -> Identity:
    if rows is None:
        raise storage.ArtefactError(path, f"no '{ARRAY}' array: a file from an older version")
    if rows.dtype.kind != "U" or rows.ndim != 2 or rows.shape[1] != 2:
        raise storage.ArtefactError(path, f"'{ARRAY}' is {rows.dtype} {rows.shape}, expected [field, value] strings")
    fields = dict(rows.tolist())
    try:
        return Identity(**fields)
    except TypeError as err:
        raise storage.ArtefactError(path, f"'{ARRAY}' does not name an identity ({err})") from err


def by_run(paths: Iterable[str]) -> dict[tuple[str, str], list[str]]:
    """``(method, run) -> paths`` of ``.npz`` artefacts, in the given order, from their stored identities."""
    index: dict[tuple[str, str], list[str]] = {}
    for path in paths:
        identity = read_identity(path)
        index.setdefault((identity.method, identity.run), []).append(path)
    return index
