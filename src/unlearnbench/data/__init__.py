"""Data sets as fixed train/validation splits of image arrays.

Every data set becomes one :class:`Splits` file (``prepare_dataset``); later stages never touch the
original source again. A registry entry also states the train-set size, so that random forget sets
(and config checks) need no images.

One table, :data:`DATASETS`, of one kind of entry (the convention of :mod:`unlearnbench.registry`): add a data
set with its module and one line here. The table imports neither torch nor the loaders.
"""

from __future__ import annotations

from dataclasses import dataclass

from .. import registry
from .splits import Splits, load_splits, save_splits


@dataclass(frozen=True)
class DatasetSpec:
    n_train: int
    n_val: int
    num_classes: int
    in_channels: int
    target: str  # "module:function", called as function(**options) -> Splits

    def load(self, **options) -> Splits:
        return registry.load(self.target)(**options)


DATASETS: dict[str, DatasetSpec] = {
    "digits": DatasetSpec(300, 1497, num_classes=10, in_channels=1, target="unlearnbench.data.digits:load_digits_splits"),
    "cifar10": DatasetSpec(50_000, 10_000, num_classes=10, in_channels=3,
                           target="unlearnbench.data.cifar10:load_cifar10_splits"),
    "living17": DatasetSpec(44_200, 3_400, num_classes=17, in_channels=3,
                            target="unlearnbench.data.living17:load_living17_splits"),
}


def get_spec(name: str) -> DatasetSpec:
    return registry.find(DATASETS, name, "dataset")


def load_dataset(name: str, **options) -> Splits:
    """Build the splits of data set ``name`` from its source (options: ``root``, ``download``)."""
    return get_spec(name).load(**options)


__all__ = ["DATASETS", "DatasetSpec", "Splits", "get_spec", "load_dataset", "load_splits", "save_splits"]
