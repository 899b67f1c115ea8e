"""Data sets as fixed train/validation splits of image arrays.

Every data set becomes one :class:`Splits` file (``prepare_dataset``); later stages never touch the
original source again. A registry entry also states the train-set size, so that random forget sets
(and config checks) need no images.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .splits import Splits, load_splits, save_splits


@dataclass(frozen=True)
class DatasetSpec:
    n_train: int
    n_val: int
    num_classes: int
    in_channels: int
    load: Callable[..., Splits]  # load(**options) -> Splits


def _digits(**options) -> Splits:
    from .digits import load_digits_splits

    return load_digits_splits(**options)


def _cifar10(**options) -> Splits:
    from .cifar10 import load_cifar10_splits

    return load_cifar10_splits(**options)


def _living17(**options) -> Splits:
    from .living17 import load_living17_splits

    return load_living17_splits(**options)


DATASETS: dict[str, DatasetSpec] = {
    "digits": DatasetSpec(n_train=300, n_val=1497, num_classes=10, in_channels=1, load=_digits),
    "cifar10": DatasetSpec(n_train=50_000, n_val=10_000, num_classes=10, in_channels=3, load=_cifar10),
    "living17": DatasetSpec(n_train=44_200, n_val=3_400, num_classes=17, in_channels=3, load=_living17),
}


def get_spec(name: str) -> DatasetSpec:
    try:
        return DATASETS[name]
    except KeyError:
        raise ValueError(f"unknown dataset {name!r}; known: {sorted(DATASETS)}") from None


def load_dataset(name: str, **options) -> Splits:
    """Build the splits of data set ``name`` from its source (options: ``root``, ``download``)."""
    return get_spec(name).load(**options)


__all__ = ["DATASETS", "DatasetSpec", "Splits", "get_spec", "load_dataset", "load_splits", "save_splits"]
