"""Forget sets: sorted int64 indices into the train split.

Kinds:
- ``random``: numpy's legacy RNG, ``seed(seed)`` then ``choice(n_train, size, replace=False)``, sorted.
  This is exactly how the published CIFAR-10 sets 1-3 were made (seed = id - 1); needs only ``n_train``.
- ``class``: every train point of the given classes, or ``size`` of them drawn with the same seeded recipe.
- ``file``: a user ``.npy`` of indices: a 1-D integer array of distinct indices below the train-set size
  (nothing is coerced: floats, 2-D arrays, strings, scalars and boolean masks are refused with the reason).
- ``attribution_pc``: top-k (or top and bottom k/2) train points along a principal component of the
  train x train datamodel matrix, as the published CIFAR-10 sets 4-9 were made.
"""

from __future__ import annotations

import os

import numpy as np

from .storage import UserInputError, load_npy


def random_forget_set(n_train: int, size: int, seed: int) -> np.ndarray:
    if not 0 < size <= n_train:
        raise ValueError(f"forget-set size {size} must be in 1..{n_train} (the train-set size)")
    rng = np.random.RandomState(seed)  # the legacy generator: reproduces the published sets bit for bit
    return np.sort(rng.choice(n_train, size, replace=False)).astype(np.int64)


def class_forget_set(labels: np.ndarray, classes: list[int], size: int | None, seed: int) -> np.ndarray:
    members = np.flatnonzero(np.isin(labels, classes)).astype(np.int64)
    if len(members) == 0:
        raise ValueError(f"no train point has a class in {classes}")
    if size is None:
        return members
    if size > len(members):
        raise ValueError(f"size {size} exceeds the {len(members)} train points of classes {classes}")
    rng = np.random.RandomState(seed)
    return np.sort(rng.choice(members, size, replace=False)).astype(np.int64)


def file_forget_set(path: str | os.PathLike, n_train: int, what: str = "a forget-set file you supplied") -> np.ndarray:
    """The sorted indices of a user's ``.npy`` file; :class:`UserInputError` (naming ``what``) unless it holds a
    1-D integer array of distinct indices in ``0..n_train-1``."""
    indices = load_npy(path, user_input=what)

    def refuse(problem: str) -> UserInputError:
        return UserInputError(path, problem, what)

    if indices.dtype == np.bool_:
        raise refuse(f"a boolean mask of shape {indices.shape}, not indices; save np.flatnonzero(mask) instead")
    if indices.ndim != 1:
        raise refuse(f"expected a 1-D array of train indices, got shape {indices.shape}")
    if indices.dtype.kind not in "iu":
        raise refuse(f"expected integer indices, got dtype {indices.dtype}")
    if indices.size == 0:
        raise refuse("no indices: a forget set needs at least one point")
    if indices.min() < 0 or indices.max() >= n_train:
        raise refuse(f"indices must be within 0..{n_train - 1} (the train split), found {indices.min()}..{indices.max()}")
    indices = indices.astype(np.int64)
    if len(np.unique(indices)) != len(indices):
        raise refuse("indices repeat")
    if len(indices) >= n_train:
        raise refuse(f"all {n_train} train points: nothing would be retained")
    return np.sort(indices)


def build_forget_set(spec: dict, n_train: int, labels: np.ndarray | None = None,
                    datamodel_weights: np.ndarray | None = None) -> np.ndarray:
    """Build one forget set from its config entry ``spec`` (keys as in config/README.md).

    ``datamodel_weights`` (train x train, rows = train point i, columns = target point x) serve the
    ``attribution_pc`` kind."""
    kind = spec["kind"]
    seed = int(spec.get("seed", 0))
    if kind == "random":
        return random_forget_set(n_train, int(spec["size"]), seed)
    if kind == "class":
        if labels is None:
            raise ValueError("a class forget set needs the train labels")
        return class_forget_set(labels, list(spec["classes"]), spec.get("size"), seed)
    if kind == "file":
        what = f"the file of forget set {spec.get('id', '?')} (config key forget_sets[].path), an input you supplied"
        return file_forget_set(spec["path"], n_train, what)
    if kind == "attribution_pc":
        from .datamodels import attribution_pc_forget_set

        if datamodel_weights is None:
            raise ValueError("an attribution_pc forget set needs the datamodel weights")
        return attribution_pc_forget_set(datamodel_weights, int(spec["component"]), spec["mode"], int(spec["size"]))
    raise ValueError(f"unknown forget-set kind {kind!r}")


def retain_points(forget: np.ndarray, n_train: int) -> np.ndarray:
    """Train indices not in the forget set (train minus F), sorted."""
    keep = np.ones(n_train, dtype=bool)
    keep[forget] = False
    return np.flatnonzero(keep).astype(np.int64)
