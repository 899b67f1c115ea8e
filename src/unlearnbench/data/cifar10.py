"""CIFAR-10 through torchvision's own loader, from a local folder.

Nothing is downloaded unless the config says ``data.download: true``; the train order is torchvision's
(the published forget-set indices refer to it), the test split serves as validation, and the
normalisation constants are the published ones (spec §3). No augmentation.
"""

from __future__ import annotations

import numpy as np

from .splits import Splits

MEAN = np.array([0.4914, 0.4822, 0.4465], dtype=np.float32)
STD = np.array([0.2023, 0.1994, 0.201], dtype=np.float32)


def load_cifar10_splits(root: str = "data", download: bool = False, verify_checksums: bool = True,
                        **_options) -> Splits:
    """Train and test splits of the ``cifar-10-batches-py`` folder under ``root``.

    ``verify_checksums=False`` accepts files whose MD5 differs from the official release (small
    generated folders in the real format, for tests); torchvision's own parser still reads them.
    """
    from torchvision.datasets import CIFAR10

    if not verify_checksums:
        CIFAR10 = _unverified(CIFAR10)
    try:
        train = CIFAR10(root=root, train=True, download=download)
        val = CIFAR10(root=root, train=False, download=download)
    except RuntimeError as err:  # torchvision: "Dataset not found or corrupted"
        raise RuntimeError(
            f"CIFAR-10 not found under {root!r} ({err}). Put the extracted 'cifar-10-batches-py' folder "
            "there, or set data.download: true in the config to fetch it."
        ) from err

    def to_chw(images: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(images.transpose(0, 3, 1, 2))  # [n, 32, 32, 3] -> [n, 3, 32, 32]

    return Splits(
        to_chw(train.data),
        np.asarray(train.targets, dtype=np.int64),
        to_chw(val.data),
        np.asarray(val.targets, dtype=np.int64),
        1 / 255,
        MEAN,
        STD,
    )


def _unverified(cifar_class):
    """The torchvision class with every expected MD5 set to None: torchvision then checks existence only."""
    return type(
        f"Unverified{cifar_class.__name__}",
        (cifar_class,),
        {
            "train_list": [[name, None] for name, _ in cifar_class.train_list],
            "test_list": [[name, None] for name, _ in cifar_class.test_list],
            "meta": {**cifar_class.meta, "md5": None},
        },
    )
