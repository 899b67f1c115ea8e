"""CIFAR-10 from the official ``cifar-10-batches-py`` folder, read without running pickled code.

Nothing is downloaded unless the config says ``data.download: true`` (torchvision's downloader, MD5-checked
archive). The train order is torchvision's (``data_batch_1`` .. ``data_batch_5``: the published forget-set
indices refer to it), the test batch serves as validation, and the normalisation constants are the published
ones (spec §3). No augmentation.

The batches are pickles (written by Python 2's cPickle). torchvision unpickles them with ``pickle.load``, which
runs whatever a crafted file asks for; with ``data.verify_checksums: false`` (generated test folders) nothing
would vouch for the files. This module parses them with a restricted unpickler instead: the only globals it
resolves are the ones a batch needs to rebuild numpy arrays (``numpy.core.multiarray._reconstruct``,
``numpy.ndarray``, ``numpy.dtype``, and the names newer numpy and Python 3 pickles use for the same thing);
anything else is refused before it is called. The result must then be a dict with a ``uint8 [n, 3072]``
``data`` array and ``n`` integer ``labels`` in 0..9.
"""

from __future__ import annotations

import codecs
import hashlib
import os
import pickle  # only through RestrictedUnpickler below: globals limited to numpy array reconstruction
from pathlib import Path

import numpy as np

from ..storage import UserInputError
from .splits import Splits

MEAN = np.array([0.4914, 0.4822, 0.4465], dtype=np.float32)
STD = np.array([0.2023, 0.1994, 0.201], dtype=np.float32)

FOLDER = "cifar-10-batches-py"
TRAIN_BATCHES = [f"data_batch_{i}" for i in range(1, 6)]
TEST_BATCH = "test_batch"
IMAGE_BYTES = 3 * 32 * 32
NUM_CLASSES = 10
WHAT = "the CIFAR-10 data under data.root (config key data.root), an input you supplied"

_EMPTY = np.empty(0, dtype=np.uint8)
# (module, name) -> object: how numpy arrays are rebuilt by numpy 1.x / 2.x pickles of protocol 2 (Python 2's
# cPickle: the real batches), 2 from Python 3 (bytes via _codecs.encode), 3-4 and 5 (_frombuffer).
ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _EMPTY.__reduce__()[0],
    ("numpy._core.multiarray", "_reconstruct"): _EMPTY.__reduce__()[0],
    ("numpy.core.numeric", "_frombuffer"): _EMPTY.__reduce_ex__(5)[0],
    ("numpy._core.numeric", "_frombuffer"): _EMPTY.__reduce_ex__(5)[0],
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): codecs.encode,
}


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only :data:`ALLOWED_GLOBALS`; any other global is refused, never imported."""

    def find_class(self, module: str, name: str):
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"it asks for {module}.{name}, which a CIFAR-10 batch never contains (only numpy arrays, lists, "
                "numbers and text are read)"
            ) from None


def read_batch(path: str | os.PathLike) -> tuple[np.ndarray, list[int]]:
    """``(data uint8 [n, 3072], labels)`` of one batch file, parsed by :class:`RestrictedUnpickler`."""
    try:
        with open(path, "rb") as fh:
            entry = RestrictedUnpickler(fh, encoding="latin1").load()
    except OSError as err:
        raise UserInputError(path, f"cannot read a CIFAR-10 batch ({err})", WHAT) from err
    except Exception as err:  # anything a malformed pickle raises
        raise UserInputError(path, f"not a CIFAR-10 batch, refused: {err}", WHAT) from err
    if not isinstance(entry, dict) or "data" not in entry or "labels" not in entry:
        found = sorted(map(repr, entry)) if isinstance(entry, dict) else type(entry).__name__
        raise UserInputError(path, f"not a CIFAR-10 batch: expected a dict with 'data' and 'labels', found {found}",
                             WHAT)
    data, labels = entry["data"], entry["labels"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != IMAGE_BYTES:
        shape, dtype = getattr(data, "shape", None), getattr(data, "dtype", type(data).__name__)
        raise UserInputError(path, f"'data' must be uint8 [n, {IMAGE_BYTES}], found shape {shape} dtype {dtype}", WHAT)
    labels = np.asarray(labels)
    valid = labels.shape == (len(data),) and labels.dtype.kind in "iu"
    if not valid or (labels.size and not 0 <= labels.min() <= labels.max() < NUM_CLASSES):
        raise UserInputError(path, f"'labels' must be {len(data)} integers in 0..{NUM_CLASSES - 1}", WHAT)
    return data, labels.astype(np.int64).tolist()


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _official_md5s() -> dict[str, str]:
    from torchvision.datasets import CIFAR10

    return dict(CIFAR10.train_list + CIFAR10.test_list)


def _download(root: str) -> None:
    from torchvision.datasets import CIFAR10
    from torchvision.datasets.utils import download_and_extract_archive

    download_and_extract_archive(CIFAR10.url, root, filename=CIFAR10.filename, md5=CIFAR10.tgz_md5)


def load_cifar10_splits(root: str = "data", download: bool = False, verify_checksums: bool = True,
                        **_options) -> Splits:
    """Train and test splits of the ``cifar-10-batches-py`` folder under ``root``.

    ``verify_checksums=False`` accepts files whose MD5 differs from the official release (small generated
    folders in the real format, for tests); they are parsed by the same restricted unpickler.
    """
    folder = Path(root, FOLDER)
    names = TRAIN_BATCHES + [TEST_BATCH]
    md5s = _official_md5s() if verify_checksums or download else {}

    def official(name: str) -> bool:
        return (folder / name).is_file() and (not verify_checksums or _md5(folder / name) == md5s[name])

    if download and not all(official(name) for name in names):
        _download(root)
    missing = [name for name in names if not (folder / name).is_file()]
    if missing:
        raise RuntimeError(
            f"CIFAR-10 not found under {root!r} (missing {', '.join(missing)} in {folder}). Put the extracted "
            f"'{FOLDER}' folder there, or set data.download: true in the config to fetch it."
        )
    if verify_checksums:
        for name in names:
            if _md5(folder / name) != md5s[name]:
                raise UserInputError(
                    folder / name, "differs from the official CIFAR-10 release (MD5 mismatch): a damaged or "
                    "different file (data.verify_checksums: false accepts other data, e.g. generated test folders)",
                    WHAT)
    train = [read_batch(folder / name) for name in TRAIN_BATCHES]
    x_val, y_val = read_batch(folder / TEST_BATCH)

    def to_chw(images: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(images.reshape(-1, 3, 32, 32))  # rows are channel-major: R, G, B planes

    return Splits(
        to_chw(np.concatenate([x for x, _ in train])),
        np.asarray([y for _, labels in train for y in labels], dtype=np.int64),
        to_chw(x_val),
        np.asarray(y_val, dtype=np.int64),
        1 / 255,
        MEAN,
        STD,
    )
