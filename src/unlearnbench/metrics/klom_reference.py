"""Literal, per-point KLOM estimator: the baseline the fast :func:`unlearnbench.metrics.klom.klom` is tested against.

This follows the benchmark spec (§2) step by step with ``numpy.linspace`` / ``numpy.digitize`` on one point at a
time, so it is slow (a Python loop over points) but easy to audit against the published estimator.  It deliberately
keeps the published behaviour everywhere, including returning NaN where the published code does:

* P's sample lost all its values (every value of P's sample equals ``hi`` under the default right-open binning),
* the floored Q sums to zero (only possible in the case above),
* the point's margins contain NaN.

The fast estimator maps exactly these cases to the finite saturation value ``ln(1/eps)``.  Like the published
code, this one raises ValueError (from ``numpy.digitize``) for a point whose linspace edges are not monotonic,
which takes margins that differ only by a few subnormal numbers; the fast estimator raises there too.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from unlearnbench.metrics.klom import DIRECTIONS, prepare_inputs

__all__ = ["klom_reference", "klom_point_reference"]


def klom_point_reference(
    a: np.ndarray,
    b: np.ndarray,
    *,
    bins: int = 20,
    eps: float = 1e-5,
    clip: Sequence[float] = (-100.0, 100.0),
    inclusive_last_bin: bool = False,
) -> float:
    """KL(P ‖ Q) of one point: ``a`` gives P, ``b`` gives Q (1-D samples of the same float dtype).

    Returns NaN where the published estimator does (P's sample empty after binning, or NaN margins).
    """
    if np.isnan(a).any() or np.isnan(b).any():
        return math.nan
    lo_c, hi_c = a.dtype.type(clip[0]), a.dtype.type(clip[1])
    a = np.clip(a, lo_c, hi_c)
    b = np.clip(b, lo_c, hi_c)
    lo = min(a.min(), b.min())
    hi = max(a.max(), b.max())
    if lo >= hi:
        hi = lo + 1
    edges = np.linspace(lo, hi, bins + 1)
    count_a = _bin_counts(np.digitize(a, edges), bins, inclusive_last_bin)
    count_b = _bin_counts(np.digitize(b, edges), bins, inclusive_last_bin)
    p = _normalise(count_a)
    q = _normalise(count_b)
    if not p.any():  # the published code divides 0 by 0 here
        return math.nan
    q_floor = np.where(p > 0, np.maximum(q, eps), q)
    total = q_floor.sum()
    if total == 0:
        return math.nan
    q_floor = q_floor / total
    m = p > 0
    return float(np.sum(p[m] * np.log(p[m] / q_floor[m])))


def klom_reference(
    unlearned: np.ndarray,
    oracle: np.ndarray,
    *,
    bins: int = 20,
    eps: float = 1e-5,
    clip: Sequence[float] = (-100.0, 100.0),
    direction: str = "unlearned-oracle",
    inclusive_last_bin: bool = False,
) -> np.ndarray:
    """Per-point KLOM by a plain loop over points; same signature and input rules as ``klom`` (NaN kept)."""
    u, o = prepare_inputs(unlearned, oracle, bins=bins, eps=eps, clip=clip, direction=direction)
    if direction == DIRECTIONS[1]:
        u, o = o, u
    out = np.empty(u.shape[1], dtype=np.float64)
    for j in range(u.shape[1]):
        out[j] = klom_point_reference(
            u[:, j], o[:, j], bins=bins, eps=eps, clip=clip, inclusive_last_bin=inclusive_last_bin
        )
    return out


def _bin_counts(idx: np.ndarray, bins: int, inclusive_last_bin: bool) -> np.ndarray:
    """Counts of bins 1..bins from digitize indices; index bins+1 (value == hi) is dropped unless inclusive."""
    counts = np.bincount(idx, minlength=bins + 2)
    if inclusive_last_bin:
        counts[bins] += counts[bins + 1]
    return counts[1 : bins + 1]


def _normalise(counts: np.ndarray) -> np.ndarray:
    """Probabilities from counts; an empty sample gives all zeros (spec §2.4)."""
    total = counts.sum()
    return counts / total if total > 0 else np.zeros(counts.shape, dtype=np.float64)
