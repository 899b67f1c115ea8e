"""NeurIPS'23 challenge ε (spec §8): released-algorithm agreement, brute force, known answers, bucket scoring."""

from __future__ import annotations

import math

import numpy as np
import pytest

from unlearnbench.metrics import epsilon as eps_mod
from unlearnbench.metrics.epsilon import EPSILON_CAP, epsilon_per_point, final_score, forget_score

DELTA = 1e-5


def rule_eps(fpr: np.ndarray, fnr: np.ndarray, delta: float = DELTA) -> float:
    """Largest per-rule bound with the released conventions, written independently (NaN: no valid rule)."""
    fpr, fnr = np.ravel(fpr).astype(float), np.ravel(fnr).astype(float)
    if ((fpr == 0) & (fnr == 0)).any():
        return math.inf
    keep = (fpr > 0) & (fnr > 0)
    a, b = fpr[keep], fnr[keep]
    t1 = np.full(a.shape, np.nan)
    t2 = np.full(a.shape, np.nan)
    ok1, ok2 = 1 - delta - a > 0, 1 - delta - b > 0
    t1[ok1] = np.log(1 - delta - a[ok1]) - np.log(b[ok1])
    t2[ok2] = np.log(1 - delta - b[ok2]) - np.log(a[ok2])
    both = np.stack([t1, t2])
    defined = ~np.isnan(both).all(axis=0)
    if not defined.any():
        return np.nan
    return float(max(0.0, np.nanmax(both[:, defined])))


def released_grid_epsilon(u: np.ndarray, r: np.ndarray, delta: float = DELTA, cap: float = EPSILON_CAP) -> float:
    """The challenge's released per-point algorithm re-expressed in numpy: 0.01-spaced threshold grids."""
    pos, neg = (r, u) if np.median(r) > np.median(u) else (u, r)
    pd, nd = np.ptp(pos), np.ptp(neg)
    if min(pd, nd) / max(pd, nd) < 0.01:
        return cap
    ps, ns = np.sort(pos), np.sort(neg)

    def count_ge(s: np.ndarray, t: np.ndarray) -> np.ndarray:
        return s.size - np.searchsorted(s, t, side="left")

    all_v = np.concatenate([pos, neg])
    thr = np.linspace(all_v.min(), all_v.max(), int(np.ceil((all_v.max() - all_v.min()) * 100)))
    fpr_s = count_ge(ns, thr) / ns.size
    fnr_s = 1 - count_ge(ps, thr) / ps.size
    # intervals: "peaky" (smaller range) inside [l, r]
    p, q = (ns, ps) if pd >= nd else (ps, ns)
    width, buffer = min(pd, nd), 2.0
    lo, hi = p.min() + width - buffer, p.max() + buffer
    rights = np.linspace(lo, hi, int(np.ceil((hi - lo) * 100)))
    offsets = np.linspace(-width - buffer, -width + buffer, int(np.ceil(2 * buffer * 100)))
    right = np.repeat(rights, offsets.size)
    left = (rights[:, None] + offsets[None, :]).ravel()

    def inside(s: np.ndarray) -> np.ndarray:
        return np.searchsorted(s, right, side="right") - np.searchsorted(s, left, side="left")

    tpr_d = np.maximum(inside(p), 0) / p.size
    fpr_d = np.maximum(inside(q), 0) / q.size
    e = rule_eps(np.concatenate([fpr_d, fpr_s]), np.concatenate([1 - tpr_d, fnr_s]), delta)
    return float(np.clip(0.0 if np.isnan(e) else e, 0, cap))


def gapped_samples(rng: np.random.Generator, m: int, n_points: int) -> tuple[np.ndarray, np.ndarray]:
    """Distinct values at least ~0.05 apart (so a 0.01 grid realises every partition), varied separations."""
    u = np.empty((m, n_points))
    r = np.empty((m, n_points))
    for j in range(n_points):
        vals = np.sort(0.06 * rng.choice(160, 2 * m, replace=False) - 4.8) + rng.uniform(-0.004, 0.004, 2 * m)
        key = rng.random(2 * m) + [0.0, 0.3, 1.0, 3.0][j % 4] * np.linspace(0, 1, 2 * m)
        is_r = np.zeros(2 * m, dtype=bool)
        is_r[np.argsort(key)[m:]] = True
        u[:, j], r[:, j] = vals[~is_r], vals[is_r]
    return u, r


def test_matches_released_grid_algorithm() -> None:
    rng = np.random.default_rng(0)
    u, r = gapped_samples(rng, 16, 48)
    ours = epsilon_per_point(u, r)
    ref = np.array([released_grid_epsilon(u[:, j], r[:, j]) for j in range(u.shape[1])])
    # exact enumeration realises every rule the grid does, so it never reports less
    assert (ours >= ref - 1e-12).all()
    same = np.isclose(ours, ref, rtol=0, atol=1e-12)
    assert same.mean() >= 0.95, (ours[~same], ref[~same])
    assert len(np.unique(np.round(ref, 6))) > 5  # the data exercises a range of ε values
    # the data is sensitive to the interval family's width rule: keeping every interval changes some points
    assert (epsilon_per_point(u, r, interval_buffer=None) > ref + 1e-9).any()


def brute_force_all_intervals(u: np.ndarray, r: np.ndarray, delta: float = DELTA) -> float:
    """Every single threshold and every interval between pooled values, by direct comparison (no buffer)."""
    pos, neg = (r, u) if np.median(r) > np.median(u) else (u, r)
    pd, nd = np.ptp(pos), np.ptp(neg)
    q, nq = (pos, neg) if pd < nd else (neg, pos)
    vals = np.unique(np.concatenate([u, r]))
    fpr = [np.mean(neg >= t) for t in vals]
    fnr = [np.mean(pos < t) for t in vals]
    for a in vals:
        for b in vals[vals >= a]:
            fpr.append(np.mean((nq >= a) & (nq <= b)))
            fnr.append(1 - np.mean((q >= a) & (q <= b)))
    e = rule_eps(np.array(fpr), np.array(fnr), delta)
    return 0.0 if np.isnan(e) else min(e, EPSILON_CAP)


def test_brute_force_unequal_sizes_and_ties() -> None:
    rng = np.random.default_rng(1)
    n_points = 30
    u = np.round(rng.normal(0, 1, (11, n_points)) * 2) / 2  # many ties, also across the samples
    r = np.round(rng.normal(np.linspace(-1, 2, n_points), 1.2, (7, n_points)) * 2) / 2
    ours = epsilon_per_point(u, r, interval_buffer=None, peaky_ratio=0.0)
    ref = [brute_force_all_intervals(u[:, j], r[:, j]) for j in range(n_points)]
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-12)
    # role symmetry: which sample is called "unlearned" does not matter
    np.testing.assert_allclose(epsilon_per_point(r, u, interval_buffer=None, peaky_ratio=0.0), ours, atol=1e-12)


def test_identical_distributions_small_disjoint_cap() -> None:
    rng = np.random.default_rng(2)
    same = epsilon_per_point(rng.normal(0, 1, (100, 200)), rng.normal(0, 1, (100, 200)))
    # Finite-sample noise: with 100 + 100 models the best of ~10^4 rules finds ε ≈ 1-2.5 even for equal laws.
    assert np.median(same) < 2.0 and same.max() < 4.0
    apart = epsilon_per_point(rng.normal(0, 1, (50, 20)), rng.normal(8, 1, (60, 20)))
    np.testing.assert_array_equal(apart, EPSILON_CAP)
    shifted = [np.median(epsilon_per_point(rng.normal(0, 1, (50, 100)), rng.normal(s, 1, (50, 100))))
               for s in (0.0, 1.0, 2.0)]
    assert shifted[0] < shifted[1] < shifted[2] < EPSILON_CAP


def test_special_cases() -> None:
    rng = np.random.default_rng(3)
    u = rng.normal(0, 1, (20, 5))
    r = rng.normal(0, 1, (20, 5))
    u[:, 0] = 0.3 + rng.normal(0, 1e-4, 20)  # near-constant unlearned outputs: the peaky rule caps
    u[:, 1], r[:, 1] = 2.0, 2.0  # the same constant: no valid rule, ε = 0
    u[:, 2], r[:, 2] = 1.0, 2.0  # two different constants: perfect separation
    u[3, 3] = np.nan  # a diverged model
    e = epsilon_per_point(u, r)
    assert e[0] == EPSILON_CAP and e[1] == 0.0 and e[2] == EPSILON_CAP and e[3] == EPSILON_CAP
    assert 0.0 <= e[4] < EPSILON_CAP
    assert epsilon_per_point(u, r, cap=7.0).max() == 7.0
    with pytest.raises(ValueError):
        epsilon_per_point(u, r[:, :4])


def test_chunking_does_not_change_results(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(4)
    u, r = rng.normal(0, 1, (12, 40)), rng.normal(0.5, 1.5, (9, 40))
    whole = epsilon_per_point(u, r)
    monkeypatch.setattr(eps_mod, "_CHUNK_ELEMENTS", 1)  # one point per chunk
    np.testing.assert_array_equal(epsilon_per_point(u, r), whole)


def released_score(eps: np.ndarray, num_models: int) -> float:
    """The released bucket loop, re-expressed."""
    max_eps = math.ceil(math.log(num_models - 1))
    buckets, start, points = [], 0.0, 1.0
    while start + 0.5 <= max_eps:
        buckets.append((start, points))
        points /= 2
        start += 0.5
    total = 0.0
    for e in eps:
        for s, p in buckets:
            if e < s + 0.5:
                total += p
                break
    return total / len(eps)


def test_forget_score_buckets() -> None:
    e = np.array([0.0, 0.49, 0.5, 0.99, 1.0, 2.6])
    assert forget_score(e) == pytest.approx((1 + 1 + 0.5 + 0.5 + 0.25 + 2**-5) / 6, abs=1e-15)
    # with 512 models: buckets up to ceil(ln 511) = 7, i.e. 14 of them; ε >= 7 scores 0
    assert forget_score(np.array([6.99]), 512) == 2.0**-13
    assert forget_score(np.array([7.0]), 512) == 0.0
    assert forget_score(np.array([EPSILON_CAP])) < 1e-30
    assert forget_score(np.array([4.99, 5.0]), 100) == pytest.approx(2.0**-9 / 2)  # ceil(ln 99) = 5
    rng = np.random.default_rng(5)
    for n_models in (10, 100, 512):
        vals = np.concatenate([rng.uniform(0, 9, 200), np.arange(0, 9, 0.5), [EPSILON_CAP]])
        assert forget_score(vals, n_models) == pytest.approx(released_score(vals, n_models), abs=1e-15)
    with pytest.raises(ValueError):
        forget_score(np.array([np.nan]))


def test_final_score() -> None:
    assert final_score(0.5, 0.9, 0.95, np.array([0.8, 0.84]), 0.88) == pytest.approx(0.5 * 0.9 / 0.95 * 0.82 / 0.88)
    with pytest.raises(ValueError):
        final_score(0.5, 0.9, 0.0, 0.8, 0.8)
