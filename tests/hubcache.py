"""A local Hugging Face Hub cache built in the library's own layout, and generated published data sets.

``{cache}/datasets--{owner}--{name}/blobs/<sha256>`` holds each file's bytes (LFS files are named by their
sha256, the Hub's etag), ``snapshots/<commit>/<path>`` links to the blob, ``refs/<branch>`` holds the
commit. With ``HF_HUB_CACHE`` pointing at it and ``HF_HUB_OFFLINE=1``, ``huggingface_hub`` serves these
files as it would after a real download.
"""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import numpy as np
from huggingface_hub.file_download import repo_folder_name

from unlearnbench.hub_layouts import EASYDUB

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def add_snapshot(cache: Path, repo: str, files: dict[str, bytes], commit: str = COMMIT, ref: str | None = "main",
                 corrupt: tuple[str, ...] = ()) -> Path:
    """Put ``files`` into ``cache`` at ``commit`` (and point ``refs/<ref>`` at it); the blobs of ``corrupt``
    files get other bytes than their name says (a damaged cache). Returns the repo folder."""
    folder = Path(cache) / repo_folder_name(repo_id=repo, repo_type="dataset")
    for name, data in files.items():
        blob = folder / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data + b"damage" if name in corrupt else data)
        link = folder / "snapshots" / commit / name
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(os.path.relpath(blob, link.parent))
    if ref:
        (folder / "refs").mkdir(parents=True, exist_ok=True)
        (folder / "refs" / ref).write_text(commit)
    return folder


def easydub_dataset(n_train: int, n_val: int, n_base: int, n_oracles: int, forget_sets: dict[int, np.ndarray],
                    seed: int = 0) -> tuple[dict[str, bytes], dict]:
    """A margin set in the successor's published layout, and the truth in train order.

    Returns (files, truth) with truth ``{"base": [n_base, n_train + n_val], ("oracle", id): [n_oracles, ...]}``
    (float32): each published file is cut out of these rows as the published code does (retain points in
    increasing order, forget points in the index file's order). Oracles are drawn with the forget points'
    margins shifted down, as forgetting does, so their KLOM differs from the base models'.
    """
    rng = np.random.default_rng(seed)
    files: dict[str, bytes] = {}
    truth: dict = {"base": rng.normal(3.0, 1.0, (n_base, n_train + n_val)).astype(np.float32)}
    for i, row in enumerate(truth["base"]):
        retain_file, val_file = EASYDUB.base_margins(i)
        files[retain_file] = npy_bytes(row[:n_train])
        files[val_file] = npy_bytes(row[n_train:])
    for fs, forget in forget_sets.items():
        files[EASYDUB.forget_set(fs)] = npy_bytes(np.asarray(forget, dtype=np.int64))
        rows = rng.normal(3.0, 1.0, (n_oracles, n_train + n_val)).astype(np.float32)
        rows[:, forget] -= 6.0
        truth[("oracle", fs)] = rows
        keep = np.ones(n_train, dtype=bool)
        keep[forget] = False
        for j, row in enumerate(rows):
            retain_file, forget_file, val_file = EASYDUB.oracle_margins(fs, j)
            files[retain_file] = npy_bytes(row[:n_train][keep])
            files[forget_file] = npy_bytes(row[forget])
            files[val_file] = npy_bytes(row[n_train:])
    return files, truth
