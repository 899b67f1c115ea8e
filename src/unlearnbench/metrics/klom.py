"""KLOM: per-point KL divergence between the margin distributions of unlearned and oracle models.

The estimator is the published, histogram-based one (benchmark spec §2), vectorised over points.  For each point,
with ``a`` the margins of the unlearned models and ``b`` those of the oracle models (sample sizes may differ):

1. clip both samples to ``clip`` (default [-100, 100]) in the margins' own dtype;
2. ``lo = min(a ∪ b)``, ``hi = max(a ∪ b)``; if ``lo >= hi`` then ``hi = lo + 1``;
3. ``edges = numpy.linspace(lo, hi, bins + 1)`` in that dtype (float32 margins give float32 edges, as NumPy 2 does),
   and a value ``v`` falls in bin ``i`` when ``edges[i-1] <= v < edges[i]`` (``numpy.digitize``).  By default the
   published quirk is kept: values equal to ``hi`` fall in no bin and are dropped, and counts are normalised by what
   remains.  ``inclusive_last_bin=True`` closes the last bin instead;
4. ``P``/``Q`` = normalised counts (an empty sample gives all-zero probabilities);
5. ``Q~_i = max(Q_i, eps)`` where ``P_i > 0``, else ``Q_i``;
6. ``KL = Σ_{P_i>0} P_i ln(P_i / (Q~_i / Σ_k Q~_k))``;
7. ``direction="unlearned-oracle"`` (default, P = unlearned) or ``"oracle-unlearned"`` (the published run script's
   swapped order).

Deviation from the published estimator (documented because it changes numbers): where it returns NaN this module
returns the finite saturation value ``saturation(eps) = ln(1/eps)`` (≈ 11.51 for eps = 1e-5), the estimator's
ceiling (a defined point never exceeds ``ln(1/eps + 1)``), so such points count as "not forgotten at all" in the
percentiles.  That happens when P's sample loses every value (all of P's values equal ``hi`` under the default
right-open binning), when ``Q~`` sums to zero, and when the point's margins contain NaN (a diverged model gives no
evidence the point was forgotten, so it scores as maximally distinguishable).

Bin assignment is exact, not approximate: edges are built with the very operations ``numpy.linspace`` performs for
one point (including its special path for a step that underflows to zero), a fast arithmetic guess of each value's
bin is verified against those edges, and the rare values the guess misplaces are re-binned by comparison with every
edge.  The result therefore equals the per-point reference (``klom_reference``) wherever that one is finite.

Points are processed in chunks (about 1,200 points for 100 + 100 models, a few MB of scratch memory) spread over the
CPUs the process may use; the inputs are read in place, never copied whole, unless they need a dtype conversion.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable, Sequence

import numpy as np

__all__ = ["DIRECTIONS", "klom", "saturation", "prepare_inputs"]

DIRECTIONS: tuple[str, str] = ("unlearned-oracle", "oracle-unlearned")

_KEPT_DTYPES = (np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64))

# Margins per chunk of points (both samples): ~1200 points for N = 100 + 100 models.  Small enough that a chunk's
# scratch arrays stay in a core's L2 cache (measured: 2**18 beat 2**16 and 2**19 on a 2-core EPYC).
_CHUNK_ELEMENTS = 1 << 18


def saturation(eps: float = 1e-5) -> float:
    """The finite KLOM value ``ln(1/eps)`` returned where the published estimator gives NaN."""
    return math.log(1.0 / eps)


def prepare_inputs(
    unlearned: np.ndarray,
    oracle: np.ndarray,
    *,
    bins: int,
    eps: float,
    clip: Sequence[float],
    direction: str,
) -> tuple[np.ndarray, np.ndarray]:
    """Validate arguments and bring both margin matrices to one float dtype.

    The common dtype is NumPy's promotion of the two (float32 + float32 stays float32, so edges are float32 as in
    the published code); integer, boolean and long-double margins become float64.  Shared with
    ``klom_reference`` so both estimators see identical inputs.
    """
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
    if int(bins) != bins or bins < 1:
        raise ValueError(f"bins must be a positive integer, got {bins!r}")
    if not 0 < eps < 1:
        raise ValueError(f"eps must be in (0, 1), got {eps!r}")
    if len(clip) != 2 or not clip[0] < clip[1]:
        raise ValueError(f"clip must be (low, high) with low < high, got {clip!r}")
    u, o = np.asarray(unlearned), np.asarray(oracle)
    if u.ndim != 2 or o.ndim != 2:
        raise ValueError(f"margins must be 2-D [n_models, n_points], got shapes {u.shape} and {o.shape}")
    if u.shape[1] != o.shape[1]:
        raise ValueError(f"point counts differ: unlearned has {u.shape[1]}, oracle has {o.shape[1]}")
    if u.shape[0] == 0 or o.shape[0] == 0:
        raise ValueError("each margin matrix needs at least one model (row)")
    dtype = np.result_type(u.dtype, o.dtype)
    if dtype.kind not in "biuf":
        raise TypeError(f"margins must be real numbers, got dtype {dtype}")
    if dtype not in _KEPT_DTYPES:  # integers, and long double (which numpy.digitize cannot take)
        dtype = np.dtype(np.float64)
    return u.astype(dtype, copy=False), o.astype(dtype, copy=False)


def klom(
    unlearned: np.ndarray,
    oracle: np.ndarray,
    *,
    bins: int = 20,
    eps: float = 1e-5,
    clip: Sequence[float] = (-100.0, 100.0),
    direction: str = "unlearned-oracle",
    inclusive_last_bin: bool = False,
) -> np.ndarray:
    """Per-point KLOM of ``unlearned`` [n_models_u, n_points] against ``oracle`` [n_models_o, n_points].

    Returns a float64 vector [n_points].  Points where the published estimator gives NaN (P's sample empty after
    binning, ``Q~`` summing to zero, NaN margins) get ``saturation(eps) = ln(1/eps)`` instead; see the module
    docstring.  Raises ValueError for an unknown ``direction``, inconsistent shapes, and (like the reference's
    ``numpy.digitize``) for a point whose linspace edges are not monotonic, which needs margins that differ only by
    a few subnormal numbers.
    """
    u, o = prepare_inputs(unlearned, oracle, bins=bins, eps=eps, clip=clip, direction=direction)
    bins = int(bins)
    n_points = u.shape[1]
    out = np.empty(n_points, dtype=np.float64)
    chunk = max(1, _CHUNK_ELEMENTS // (u.shape[0] + o.shape[0] + bins + 2))
    starts = range(0, n_points, chunk)

    def run(start: int) -> None:
        sl = slice(start, min(start + chunk, n_points))
        count_u, count_o, nan = _bin_counts(u[:, sl], o[:, sl], bins, clip, inclusive_last_bin)
        if direction == DIRECTIONS[1]:
            count_u, count_o = count_o, count_u
        out[sl] = _kl(count_u, count_o, eps)
        out[sl][nan] = saturation(eps)

    _run_threaded(run, starts, min(len(starts), _usable_cpus()))
    return out


def _run_threaded(func: Callable[[int], None], items: Sequence[int], workers: int) -> None:
    """Call ``func`` on every item, spread over ``workers`` threads; re-raise the first error.

    NumPy releases the GIL inside its loops, so chunks of points run in parallel.  Plain threads rather than
    concurrent.futures, whose import (logging) costs a scoring job several milliseconds of start-up.
    """
    errors: list[BaseException] = []

    def work(part: Sequence[int]) -> None:
        try:
            for item in part:
                func(item)
        except BaseException as exc:  # handed to the calling thread
            errors.append(exc)

    if workers <= 1:
        work(items)
    else:
        threads = [threading.Thread(target=work, args=(items[i::workers],)) for i in range(workers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    if errors:
        raise errors[0]


def _usable_cpus() -> int:
    """CPUs this process may run on (a Slurm job's allocation, not the whole machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _linspace_edges(lo: np.ndarray, hi: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Edges [bins+1, n] equal bit for bit to ``numpy.linspace(lo[j], hi[j], bins+1)`` for every j, and the step.

    The operations are linspace's own (``delta = hi - lo``, ``step = delta / bins``, ``k * step + lo``, last edge
    ``hi``).  ``numpy.linspace`` with array endpoints switches *all* points to its denormal-step path as soon as one
    step underflows to zero, which would differ from the scalar calls; here that switch is made per point.
    """
    dt = lo.dtype.type
    delta = np.subtract(hi, lo, dtype=dt)
    step = delta / bins
    k = np.arange(0, bins + 1, dtype=dt).reshape(-1, 1)
    edges = k * step
    zero = step == 0
    if zero.any():
        edges[:, zero] = (k / bins) * delta[zero]
    edges += lo
    edges[-1] = hi
    return edges, step


def _bin_counts(
    a: np.ndarray, b: np.ndarray, bins: int, clip: Sequence[float], inclusive_last_bin: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Histogram counts [n, bins] of both samples of every point (digitize semantics on exact edges).

    Also returns the mask of points with NaN margins: they are binned as if constant and saturated by the caller.
    """
    dt = a.dtype.type
    c_lo, c_hi = dt(clip[0]), dt(clip[1])
    extremes = [(s.min(axis=0), s.max(axis=0)) for s in (a, b)]
    # Clip only what needs it; clipping commutes with min/max, so lo/hi come from the raw extremes.
    samples = [
        np.clip(s, c_lo, c_hi) if (mn < c_lo).any() or (mx > c_hi).any() else s
        for s, (mn, mx) in zip((a, b), extremes)
    ]
    lo = np.clip(np.minimum(extremes[0][0], extremes[1][0]), c_lo, c_hi)
    hi = np.clip(np.maximum(extremes[0][1], extremes[1][1]), c_lo, c_hi)
    nan = np.isnan(lo) | np.isnan(hi)
    if nan.any():
        samples = [np.where(nan, dt(0), s) for s in samples]
        lo[nan], hi[nan] = 0, 0
    hi = np.where(lo >= hi, lo + dt(1), hi)
    edges, step = _linspace_edges(lo, hi, bins)
    decreasing = (edges[1:] < edges[:-1]).any(axis=0)
    if decreasing.any():  # a step rounded up among subnormal numbers; the reference's numpy.digitize raises too
        raise ValueError(f"linspace bin edges of {int(decreasing.sum())} point(s) are not monotonic (their margins "
                         "span only a few subnormal numbers); numpy.digitize cannot bin them either")

    # Guess a value's bin as floor((v - lo) * inv_step); inv_step is shrunk by a few ulps so that the guess for
    # v == hi is bins - 1 (checked per point below) and never beyond.  Every guess is verified in _digitize_counts.
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        inv_step = np.reciprocal(step) * dt(1 - 8 * np.finfo(dt).eps)
        guess_hi = np.floor(np.subtract(hi, lo, dtype=dt) * inv_step)
    fast = np.isfinite(inv_step) & (guess_hi == bins - 1)  # step == 0 gives an infinite inv_step
    inv_step[~fast] = 0
    counts = [_digitize_counts(s, lo, hi, step, inv_step, fast, edges) for s in samples]
    for c in counts:
        if inclusive_last_bin:
            c[:, bins] += c[:, bins + 1]
    return counts[0][:, 1 : bins + 1], counts[1][:, 1 : bins + 1], nan


def _digitize_counts(
    s: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    step: np.ndarray,
    inv_step: np.ndarray,
    fast: np.ndarray,
    edges: np.ndarray,
) -> np.ndarray:
    """Counts [n, bins+2] of the indices ``numpy.digitize(s[:, j], edges[:, j])`` for every point j.

    For a guess g (0 <= g <= bins-1), the edges enclosing it are recomputed with linspace's own operations
    (``g * step + lo``), so they are the exact edges: the digitize index is g + 1 when edge_g <= v < edge_{g+1},
    and bins + 1 when v == hi (for fast points g is bins - 1 there).  A computed edge_bins may differ from hi, but
    then the check only fails spuriously.  Failed checks, and all values of non-fast points, are binned by
    comparison with every edge, so the counts are exact.
    """
    n = s.shape[1]
    width = edges.shape[0] + 1
    g = s - lo
    g *= inv_step
    np.floor(g, out=g)
    edge = g * step
    edge += lo
    ok = edge <= s
    g += 1
    np.multiply(g, step, out=edge)
    edge += lo
    at_hi = s >= hi
    upper = s < edge
    upper |= at_hi
    ok &= upper
    g += at_hi
    idx = g.astype(np.intp)  # the digitize index wherever ok
    bad_cols = np.flatnonzero(~(ok.all(axis=0) & fast))
    if bad_cols.size:
        bad = ~ok[:, bad_cols]
        bad[:, ~fast[bad_cols]] = True
        rows, k = np.nonzero(bad)
        cols = bad_cols[k]
        idx[rows, cols] = (edges[:, cols] <= s[rows, cols]).sum(axis=0)
    idx += np.arange(0, n * width, width, dtype=np.intp)
    return np.bincount(idx.ravel(), minlength=n * width).reshape(n, width)


def _kl(count_p: np.ndarray, count_q: np.ndarray, eps: float) -> np.ndarray:
    """Row-wise floored KL(P ‖ Q) from counts [n, bins]; rows the reference leaves NaN get ``saturation(eps)``.

    Uses Σ P ln(P / (Q~/S)) = Σ P ln(P / Q~) + ln S (P sums to one), which saves a pass over the bins.
    """
    n_p = count_p.sum(axis=1, keepdims=True)
    pos = count_p > 0
    p = count_p / np.maximum(n_p, 1)
    q = count_q / np.maximum(count_q.sum(axis=1, keepdims=True), 1)  # an empty sample gives all zeros
    q_floor = np.where(pos, np.maximum(q, eps), q)
    total = q_floor.sum(axis=1)
    ratio = np.divide(p, q_floor, out=np.ones_like(p), where=pos)
    kl = (p * np.log(ratio)).sum(axis=1)
    undefined = (n_p[:, 0] == 0) | (total == 0)
    with np.errstate(divide="ignore"):
        kl += np.log(total)
    kl[undefined] = saturation(eps)
    return kl
