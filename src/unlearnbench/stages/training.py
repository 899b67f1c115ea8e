"""Stages of ``workflow/rules/training.smk``: base models, oracles and pool models, a shard per job.

The three differ only in the points each model trains on: the whole train split (base), train minus the
forget set (oracles), each model's own seeded random half (pool: the masks are stored with the weights).
"""

from __future__ import annotations

import logging
import time

import numpy as np

log = logging.getLogger(__name__)


def train_base(splits: str, weights: str, model: str, recipe: dict, model_range: tuple[int, int], seeds: list[int],
               device: str, models_per_batch: int | None, compile: bool, threads: int = 1) -> None:
    """Base models ``model_range`` on the whole train split."""
    _train_shard(splits, weights, model, recipe, model_range, seeds, device, models_per_batch, compile, threads)


def train_oracle(splits: str, forget_set: str, weights: str, model: str, recipe: dict, model_range: tuple[int, int],
                 seeds: list[int], device: str, models_per_batch: int | None, compile: bool, threads: int = 1) -> None:
    """Oracles ``model_range`` of one forget set: trained on the train split minus ``forget_set``."""
    _train_shard(splits, weights, model, recipe, model_range, seeds, device, models_per_batch, compile, threads,
                 forget_set=forget_set)


def train_pool(splits: str, weights: str, model: str, recipe: dict, model_range: tuple[int, int], seeds: list[int],
               pool_seed: int, device: str, models_per_batch: int | None, compile: bool, threads: int = 1) -> None:
    """Pool models ``model_range``: each on its own random half of the train split (seeded by ``pool_seed``
    and its index); the masks are stored with the weights (and later with the margins)."""
    _train_shard(splits, weights, model, recipe, model_range, seeds, device, models_per_batch, compile, threads,
                 pool_seed=pool_seed)


def _train_shard(splits: str, out: str, model: str, recipe: dict, model_range: tuple[int, int], seeds: list[int],
                 device: str, models_per_batch: int | None, compile: bool, threads: int,
                 forget_set: str | None = None, pool_seed: int | None = None) -> None:
    import torch

    from ..data import load_splits
    from ..device import torch_setup
    from ..forget_sets import retain_points
    from ..stack import ModelStack
    from ..storage import load_npy
    from ..training import Recipe, mixed_precision, train_stack

    dev = torch_setup(threads, device, compile)
    data = load_splits(splits)
    points = np.arange(data.n_train) if forget_set is None else retain_points(load_npy(forget_set), data.n_train)
    stack = ModelStack.initialise(model, data.num_classes, data.x_train.shape[1], seeds, range(*model_range), dev)
    if pool_seed is not None:
        from ..metrics.ulira import pool_mask

        masks = np.stack([pool_mask(data.n_train, m, pool_seed) for m in range(*model_range)])
        stack.extras["train_mask"] = masks
        points = np.stack([np.flatnonzero(row) for row in masks])  # [M, n_train // 2]
    start = time.perf_counter()
    val = np.arange(data.n_train, data.n_train + data.n_val)
    train_stack(stack, data.images(dev), torch.from_numpy(data.labels()).to(dev), points, seeds,
                Recipe.from_config(recipe), models_per_batch, amp=mixed_precision(dev),
                eval_points={"train": points, "val": val})
    log.info("trained %d models on %d points in %.1f s", stack.n_models, points.shape[-1], time.perf_counter() - start)
    stack.save(out, {"train_points": points.shape[-1]})
