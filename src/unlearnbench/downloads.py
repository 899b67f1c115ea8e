"""Downloads of forget-set index files given by ``url`` (a ``kind: file`` forget set).

The user's own file (``path``) is never written: a download goes to the results tree
(``results/downloads/``) and the workflow reads "the user's file if present, else the download", so no
Snakemake command (``--forcerun``, ``--delete-all-output``) can delete what the user supplied.

A download is refused unless it is

- over https (or a local ``file://``); plain http, also through a redirect, only with ``allow_http``;
- at most ``max_bytes`` long (an index file of the train set cannot be larger than
  :func:`index_file_limit`: 8 bytes per train point and a ``.npy`` header), checked against the announced
  length and while reading;
- equal to its pinned ``sha256`` when the config gives one;
- a 1-D integer ``.npy`` that loads without pickle.

It goes to a temporary file next to the destination and is renamed over it only after every check, so
an interrupted or refused download never leaves a file under the final name.

The published CIFAR-10 sets come from the Hugging Face data set "royrin/KLOM-models" through
:mod:`unlearnbench.hub` (``kind: published``), pinned by sha256 in ``config/cifar10.yaml``.
"""

from __future__ import annotations

import os
import socket
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np

from .content_digests import sha256 as file_sha256
from .storage import atomic_path

NPY_HEADER_LIMIT = 2**16 + 16  # a .npy header is below 64 KiB (format versions 1-3), plus magic and lengths
CHUNK = 1 << 16


class DownloadError(RuntimeError):
    """A file could not be downloaded, or is not what the config says it is."""


def index_file_limit(n_train: int) -> int:
    """The largest valid index file of a train set of ``n_train`` points: every point once, as int64."""
    return 8 * int(n_train) + NPY_HEADER_LIMIT


def verify_sha256(path: str | os.PathLike, expected: str | None, what: str) -> None:
    """Raise :class:`DownloadError` when ``expected`` is given and ``path`` hashes to something else."""
    if not expected:
        return
    got = file_sha256(path)
    if got != expected.lower():
        raise DownloadError(f"{what}: sha256 {got} differs from the {expected} pinned in the config (sha256)")


def check_index_file(path: str | os.PathLike, name: str | None = None) -> np.ndarray:
    """Load ``path`` as a 1-D integer ``.npy`` without pickle (as int64), or raise :class:`DownloadError`
    (naming ``name``, default ``path``)."""
    name = name or str(path)
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise DownloadError(f"{name}: not a .npy array file ({type(err).__name__}: {err})") from err
    if not isinstance(array, np.ndarray) or array.ndim != 1 or array.dtype.kind not in "iu":
        shape = getattr(array, "shape", None)
        dtype = getattr(array, "dtype", None)
        hint = " (a boolean mask? save np.flatnonzero(mask))" if dtype == bool else ""
        raise DownloadError(
            f"{name}: expected a 1-D integer index array (int64), got shape {shape} dtype {dtype}{hint}"
        )
    return array.astype(np.int64)


def _require_scheme(url: str, allow_http: bool) -> None:
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if scheme == "http" and not allow_http:
        raise DownloadError(f"refusing plain http ({url}): no transport integrity; use https, or set allow_http")
    if scheme not in ("https", "http", "file"):
        raise DownloadError(f"refusing {url}: only https (or file, or http with allow_http)")


class _SchemeCheckingRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect may not downgrade https to http (nor leave for another scheme)."""

    def __init__(self, allow_http: bool):
        super().__init__()
        self.allow_http = allow_http

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        _require_scheme(newurl, self.allow_http)
        if urllib.parse.urlsplit(newurl).scheme == "file":
            raise DownloadError(f"refusing a redirect from {req.full_url} to a local file {newurl}")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _copy_limited(response, out, max_bytes: int, url: str) -> None:
    announced = response.headers.get("Content-Length") if hasattr(response, "headers") else None
    if announced is not None and announced.isdigit() and int(announced) > max_bytes:
        raise DownloadError(f"{url} announces {int(announced)} bytes, more than the limit of {max_bytes}")
    total = 0
    while chunk := response.read(CHUNK):
        total += len(chunk)
        if total > max_bytes:
            raise DownloadError(f"{url} sends more than the limit of {max_bytes} bytes")
        out.write(chunk)


def _describe(url: str, dest: Path, user_path: str | None) -> str:
    if user_path:
        return f"put the file at {user_path} yourself (from {url}) or check your network"
    return f"check the url and your network (the download goes to {dest})"


def fetch_forget_set(url: str, dest: str | os.PathLike, *, max_bytes: int, sha256: str | None = None,
                     allow_http: bool = False, user_path: str | None = None, timeout: float = 60) -> np.ndarray:
    """Download ``url`` to ``dest`` (atomically; see the module doc for the checks) and return its indices.

    ``user_path`` is where the user may put the file instead (named in the error message). Raises
    :class:`DownloadError` when the url cannot be reached (offline, refused, HTTP error, timeout) or the
    content is refused. An existing ``dest`` is only replaced by a valid download.
    """
    dest = Path(dest)
    _require_scheme(url, allow_http)
    opener = urllib.request.build_opener(_SchemeCheckingRedirects(allow_http))
    request = urllib.request.Request(url, headers={"User-Agent": "unlearnbench"})
    how = _describe(url, dest, user_path)
    with atomic_path(dest) as tmp:
        try:
            with opener.open(request, timeout=timeout) as response, open(tmp, "wb") as fh:
                _copy_limited(response, fh, max_bytes, url)
        except DownloadError as err:
            raise DownloadError(f"{err}; {how}") from err
        except (urllib.error.URLError, socket.timeout, TimeoutError, ConnectionError, OSError) as err:
            if isinstance(err, urllib.error.HTTPError):
                reason = f"HTTP {err.code} {err.reason}"
            else:
                reason = getattr(err, "reason", None) or err
            raise DownloadError(f"cannot download {url} ({reason}); {how}") from err
        try:
            verify_sha256(tmp, sha256, f"the download of {url}")
            indices = check_index_file(tmp, f"the download of {url}")
        except DownloadError as err:
            raise DownloadError(f"{err}; {how}") from err
    return indices
