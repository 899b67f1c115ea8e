"""U-LiRA (spec §7): masks, requests, the Gaussian likelihood ratio and the accuracy on synthetic margins."""

from __future__ import annotations

import math

import numpy as np
import pytest

from unlearnbench.metrics.ulira import (
    gaussian_forgotten_probability,
    make_requests,
    pool_masks,
    shadow_gaussians,
    summarize_ulira,
    ulira_accuracy,
)


def test_pool_masks_exact_half_and_reproducible() -> None:
    masks = pool_masks(101, 6, seed=7)
    assert masks.shape == (6, 101) and masks.dtype == bool
    np.testing.assert_array_equal(masks.sum(axis=1), 50)
    np.testing.assert_array_equal(pool_masks(101, 3, seed=7), masks[:3])  # a row depends on (seed, m) only
    assert len({row.tobytes() for row in masks}) == 6
    assert not np.array_equal(pool_masks(101, 6, seed=8), masks)
    # inclusion frequency is about one half for every point (not a fixed half)
    freq = pool_masks(40, 400, seed=0).mean(axis=0)
    assert np.abs(freq - 0.5).max() < 0.12


def test_requests_only_trained_target_pool_points() -> None:
    masks = pool_masks(200, 8, seed=1)
    pool = np.arange(50, 150)
    req = make_requests(masks, pool, n_requests=3, request_size=20, seed=2)
    assert req.shape == (8, 3, 20) and req.dtype == np.int64
    for m in range(8):
        for k in range(3):
            assert np.isin(req[m, k], pool).all()
            assert masks[m, req[m, k]].all()
            assert np.unique(req[m, k]).size == 20 and (np.diff(req[m, k]) > 0).all()
    np.testing.assert_array_equal(make_requests(masks, pool, 3, 20, seed=2), req)
    np.testing.assert_array_equal(make_requests(masks[:2], pool, 3, 20, seed=2), req[:2])
    assert not np.array_equal(make_requests(masks, pool, 3, 20, seed=3), req)
    with pytest.raises(ValueError, match="trained on only"):
        make_requests(masks, pool[:10], 1, 20, seed=0)


def test_gaussian_probability_matches_density_ratio_and_is_stable() -> None:
    rng = np.random.default_rng(0)
    m, ma, sa, mb, sb = rng.normal(0, 2, 50), rng.normal(0, 1, 50), rng.uniform(0.3, 2, 50), \
        rng.normal(0, 1, 50), rng.uniform(0.3, 2, 50)

    def pdf(x: np.ndarray, mu: np.ndarray, s: np.ndarray) -> np.ndarray:
        return np.exp(-0.5 * ((x - mu) / s) ** 2) / (s * math.sqrt(2 * math.pi))

    expect = pdf(m, ma, sa) / (pdf(m, ma, sa) + pdf(m, mb, sb))
    np.testing.assert_allclose(gaussian_forgotten_probability(m, ma, sa, mb, sb), expect, rtol=1e-12)
    # far tails underflow in linear space; in log space the wider Gaussian wins
    p = gaussian_forgotten_probability(np.array([1e4, -1e4]), 0.0, 2.0, 0.0, 1.0)
    np.testing.assert_array_equal(p, [1.0, 1.0])
    # zero std is floored: a point mass at its mean, no NaN
    p = gaussian_forgotten_probability(np.array([0.9, 0.1, 0.5]), 1.0, 0.0, 0.0, 0.0)
    assert np.isfinite(p).all() and p[0] > 0.5 > p[1]


def test_shadow_gaussians_equal_sizes_first_runs_population_std() -> None:
    margins = np.array([[1.0, 0.0], [3.0, 0.0], [100.0, 0.0], [0.0, 0.0], [2.0, 0.0], [-50.0, 0.0]])
    forgotten = np.array([[1, 0], [1, 0], [1, 0], [0, 0], [0, 0], [0, 0]], dtype=bool)
    trained = np.array([[1, 1], [1, 1], [1, 1], [0, 1], [0, 1], [1, 1]], dtype=bool)
    mi, si, mo, so, n = shadow_gaussians(margins, forgotten, trained)
    # point 0: 3 "in" runs, 2 "out" runs -> both cut to 2, the first ones: in {1, 3}, out {0, 2}
    assert n[0] == 2 and mi[0] == 2.0 and si[0] == 1.0 and mo[0] == 1.0 and so[0] == 1.0
    assert n[1] == 0 and np.isnan(mi[1])  # never forgotten, always trained: no evidence
    mi, si, mo, so, n = shadow_gaussians(margins, forgotten, trained, max_shadows=1)
    assert n[0] == 1 and mi[0] == 1.0 and si[0] == 0.0 and mo[0] == 0.0


def simulate(rng: np.random.Generator, forget_shift: float, noise: float = 0.5) -> dict:
    """U-LiRA run set: 40 pool models × 2 requests of 20 points from a 100-point target pool.

    Margin of run s at x: base_x + 2·[trained, kept] + forget_shift·[forgotten] + noise.  forget_shift = 0 is
    perfect unlearning (a forgotten point looks exactly like a never-trained one).
    """
    n_train, n_models, k = 160, 40, 2
    pool = np.arange(100)
    masks = pool_masks(n_train, n_models, seed=int(rng.integers(1 << 30)))
    req = make_requests(masks, pool, k, 20, seed=int(rng.integers(1 << 30)))
    trained = np.repeat(masks, k, axis=0)
    forgotten = np.zeros_like(trained)
    for m in range(n_models):
        for j in range(k):
            forgotten[m * k + j, req[m, j]] = True
    base = rng.normal(0, 2, n_train)
    margins = base + 2.0 * (trained & ~forgotten) + forget_shift * forgotten + rng.normal(0, noise, trained.shape)
    return {"margins": margins, "forgotten": forgotten, "trained": trained, "target_pool": pool}


def test_separated_distributions_accuracy_near_one() -> None:
    runs = simulate(np.random.default_rng(1), forget_shift=4.0)
    acc = ulira_accuracy(**runs, target_runs=np.arange(10), seed=0)
    assert acc.shape == (10,)
    np.testing.assert_array_equal(acc, 1.0)  # 8 noise sd apart: every guess is right


def test_hand_computed_accuracy() -> None:
    """Target run 0 forgot points 0, 1 and never trained on 2, 3; shadows: in ~ {9, 11}, out ~ {-1, 1}."""
    margins = np.array([[10.0, 0.0, 0.0, 1.0], [9, 9, 9, 9], [11, 11, 11, 11], [-1, -1, -1, -1], [1, 1, 1, 1]])
    trained = np.array([[1, 1, 0, 0], [1, 1, 1, 1], [1, 1, 1, 1], [0, 0, 0, 0], [0, 0, 0, 0]], dtype=bool)
    forgotten = trained.copy()
    # point 0: forgotten, looks forgotten (right); point 1: forgotten, looks kept-out (wrong);
    # points 2, 3: never trained, look never trained (right): 3 of 4
    acc = ulira_accuracy(margins, forgotten, trained, target_runs=[0], target_pool=np.arange(4))
    np.testing.assert_array_equal(acc, [0.75])


def test_identical_distributions_accuracy_near_half() -> None:
    runs = simulate(np.random.default_rng(2), forget_shift=0.0)
    acc = ulira_accuracy(**runs, target_runs=np.arange(0, 80, 4), seed=0)
    summary = summarize_ulira(acc)
    # 20 targets × (20 positives + 20 negatives) = 800 guesses independent of the truth: the mean accuracy has
    # sd 0.5/sqrt(800) ≈ 0.018 (shadow-fit noise only adds correlated error); 0.07 is about 4 sd.
    assert summary["n_targets"] == 20
    assert abs(summary["mean"] - 0.5) < 0.07
    # and a partially unlearned method sits in between
    partial_runs = simulate(np.random.default_rng(2), forget_shift=1.0)
    partial = summarize_ulira(ulira_accuracy(**partial_runs, target_runs=np.arange(0, 80, 4)))
    assert summary["mean"] + 0.1 < partial["mean"] < 0.95


def test_targets_are_not_shadows_and_negatives_are_seeded() -> None:
    runs = simulate(np.random.default_rng(3), forget_shift=1.0)
    a = ulira_accuracy(**runs, target_runs=[0, 5], seed=4)
    np.testing.assert_array_equal(ulira_accuracy(**runs, target_runs=[0, 5], seed=4), a)
    # making a target's margins absurd must not change the other target's score unless it were used as a shadow
    poisoned = dict(runs, margins=runs["margins"].copy())
    poisoned["margins"][5] = 1e6
    assert ulira_accuracy(**poisoned, target_runs=[0, 5], seed=4)[0] == a[0]
    assert ulira_accuracy(**poisoned, target_runs=[0], seed=4)[0] != a[0]


def test_unscorable_points_and_bad_inputs() -> None:
    margins = np.zeros((3, 4))
    trained = np.ones((3, 4), dtype=bool)
    forgotten = np.zeros((3, 4), dtype=bool)
    forgotten[0, 0] = True
    # no shadow ever forgets anything: the target has nothing scorable
    acc = ulira_accuracy(margins, forgotten, trained, target_runs=[0], target_pool=np.arange(4))
    assert np.isnan(acc[0])
    s = summarize_ulira(acc)
    assert s["n_targets"] == 0 and np.isnan(s["mean"])
    bad = forgotten.copy()
    bad[1, 1] = True
    with pytest.raises(ValueError, match="never trained"):
        ulira_accuracy(margins, bad, trained & ~bad, target_runs=[0], target_pool=np.arange(4))
    with pytest.raises(ValueError):
        ulira_accuracy(margins, forgotten, trained, target_runs=[0, 0], target_pool=np.arange(4))


def test_summarize() -> None:
    s = summarize_ulira(np.array([0.5, 0.7, np.nan, 0.9]))
    assert s["n_targets"] == 3 and s["mean"] == pytest.approx(0.7)
    assert s["std"] == pytest.approx(np.std([0.5, 0.7, 0.9]))
