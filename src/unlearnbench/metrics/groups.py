"""The three groups KLOM is reported over, and the statistics reported per group."""

from __future__ import annotations

import numpy as np


def group_masks(forget: np.ndarray, n_train: int, n_val: int) -> dict[str, np.ndarray]:
    """Boolean masks over all points (train then val): forget F, retain (train minus F), validation."""
    n = n_train + n_val
    forget_mask = np.zeros(n, dtype=bool)
    forget_mask[forget] = True
    train = np.arange(n) < n_train
    return {"forget": forget_mask, "retain": train & ~forget_mask, "val": ~train}


def group_stats(values: np.ndarray, percentiles=(95, 99)) -> dict[str, float]:
    """Point count, percentiles (numpy's default linear interpolation), mean and std."""
    stats = {"n_points": int(values.size)}
    for q in percentiles:
        stats[f"p{q:g}"] = float(np.percentile(values, q))
    stats["mean"] = float(values.mean())
    stats["std"] = float(values.std())
    return stats
