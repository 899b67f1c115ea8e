"""On-demand download of published forget sets (CIFAR-10 sets 4-10 cannot be regenerated: spec §4).

The index files are never committed; a ``kind: file`` forget set with a ``url`` is fetched into its
``path`` the first time the workflow needs it. The download goes to a temporary file next to the
destination and is renamed over it only after it has been checked (an int64 1-D ``.npy`` that loads
without pickle), so an interrupted or wrong download never leaves a file under the final name.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np

from .storage import atomic_path

# The public Hugging Face data set holding the published CIFAR-10 forget-set indices (MIT licence).
KLOM_FORGET_SET_URL = (
    "https://huggingface.co/datasets/royrin/KLOM-models/resolve/main/forget_set_indices/CIFAR10/forget_set_{id}.npy"
)


class DownloadError(RuntimeError):
    """A forget set could not be downloaded or is not a valid index file."""


def _describe(url: str, dest: Path) -> str:
    match = re.search(r"forget_set_([A-Za-z0-9-]+)\.npy$", url)
    what = f"the published forget set {match.group(1)}" if match else "the forget-set index file"
    return f"put the file at {dest} yourself (it is {what}, from {url}) or check your network"


def check_index_file(path: str | os.PathLike) -> np.ndarray:
    """Load ``path`` as a 1-D int64 ``.npy`` without pickle, or raise :class:`DownloadError`."""
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise DownloadError(f"{path}: not a .npy array file ({type(err).__name__}: {err})") from err
    if not isinstance(array, np.ndarray) or array.ndim != 1 or array.dtype != np.int64:
        shape = getattr(array, "shape", None)
        dtype = getattr(array, "dtype", None)
        raise DownloadError(f"{path}: expected a 1-D int64 index array, got shape {shape} dtype {dtype}")
    return array


def fetch_forget_set(url: str, dest: str | os.PathLike, timeout: float = 60) -> np.ndarray:
    """Download ``url`` to ``dest`` (atomically) and return the indices it holds.

    Raises :class:`DownloadError` with a message saying how to supply the file by hand when the URL
    cannot be reached (offline, refused, HTTP error, timeout) or the content is not a 1-D int64
    ``.npy`` without pickled objects. An existing ``dest`` is only replaced by a valid download.
    """
    dest = Path(dest)
    request = urllib.request.Request(url, headers={"User-Agent": "unlearnbench"})
    try:
        with atomic_path(dest) as tmp:
            try:
                with urllib.request.urlopen(request, timeout=timeout) as response, open(tmp, "wb") as fh:
                    shutil.copyfileobj(response, fh)
            except (urllib.error.URLError, socket.timeout, TimeoutError, ConnectionError, OSError) as err:
                if isinstance(err, urllib.error.HTTPError):
                    reason = f"HTTP {err.code} {err.reason}"
                else:
                    reason = getattr(err, "reason", None) or err
                raise DownloadError(f"cannot download {url} ({reason}); {_describe(url, dest)}") from err
            indices = check_index_file(tmp)
    except DownloadError as err:
        if "cannot download" in str(err):
            raise
        raise DownloadError(f"{err} (downloaded from {url}); {_describe(url, dest)}") from err
    return indices
