"""Content fingerprints of the files a user supplies (forget-set files, imported published assets).

Snakemake decides whether an input changed by its modification time. A user's file replaced by an *older* one
(``cp -p``, ``rsync -a``, ``tar x`` keep the source's mtime) therefore goes unnoticed and the results silently
describe the previous file. The rules that read such files carry the file's SHA-256 as a ``params`` value:
Snakemake reruns a job whose params changed, whatever the mtimes.

Hashing a multi-GB import at every parse (every job parses the workflow again) would be slow, so digests are
cached by ``(path, size, mtime_ns, ctime_ns, inode, device)``. The inode change time cannot be set back by
``cp -p``, ``rsync`` or ``tar`` (the kernel sets it on every write or metadata change), so a replaced file
never matches a stale cache entry.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path

from .storage import atomic_path

MISSING = "missing"  # the fingerprint of a path with no file (yet)
CACHE = Path(".snakemake", "unlearnbench", "content-digests.json")  # relative to the working directory


def _stat_key(st: os.stat_result) -> list[int]:
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev]


def sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class DigestCache:
    """SHA-256 digests of files, remembered per ``(path, size, mtime, ctime, inode, device)`` in a JSON file."""

    def __init__(self, path: str | os.PathLike = CACHE):
        self.path = Path(path)
        self._entries: dict | None = None
        self._dirty = False

    @property
    def entries(self) -> dict:
        if self._entries is None:
            try:
                self._entries = json.loads(self.path.read_text())
            except (OSError, ValueError):  # no cache yet, or a damaged one: start afresh
                self._entries = {}
        return self._entries

    def digest(self, path: str | os.PathLike) -> str:
        """``sha256:<hex>`` of the file's content, or :data:`MISSING` when there is no file at ``path``."""
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return MISSING
        key, stat = os.path.abspath(path), _stat_key(st)
        cached = self.entries.get(key)
        if cached and cached[:-1] == stat:
            return cached[-1]
        value = f"sha256:{sha256(path)}"
        self.entries[key] = [*stat, value]
        self._dirty = True
        return value

    def digests(self, paths) -> list[str]:
        """:meth:`digest` of each path; the cache file is updated when something had to be hashed."""
        values = [self.digest(p) for p in paths]
        self.save()
        return values

    def save(self) -> None:
        """Write the cache if it changed; a read-only working directory only costs the re-hashing."""
        if self._dirty:
            with contextlib.suppress(OSError), atomic_path(self.path) as tmp:
                tmp.write_text(json.dumps(self.entries, sort_keys=True))
            self._dirty = False

