"""Datamodels (spec §6): ridge fit, planted-effect recovery, hold-out correlation, DM-direct, PC forget sets."""

from __future__ import annotations

import numpy as np
import pytest

from unlearnbench.datamodels import (
    attribution_pc_forget_set,
    dm_direct_margins,
    fit_datamodels,
    forget_effect,
    holdout_correlation,
    predict,
)
from unlearnbench.metrics.ulira import pool_masks


def ridge_reference(masks: np.ndarray, y: np.ndarray, l2: float) -> tuple[np.ndarray, np.ndarray]:
    """Ridge with an unpenalised intercept as an augmented least-squares problem (independent of the module)."""
    x = masks.astype(float)
    xc, yc = x - x.mean(0), y - y.mean(0)
    a = np.vstack([xc, np.sqrt(l2) * np.eye(x.shape[1])])
    b = np.vstack([yc, np.zeros((x.shape[1], y.shape[1]))])
    w = np.linalg.lstsq(a, b, rcond=None)[0]
    return w, y.mean(0) - x.mean(0) @ w


@pytest.mark.parametrize("n_models,n_train", [(80, 30), (30, 80)])  # primal and dual forms
def test_matches_reference_ridge(n_models: int, n_train: int) -> None:
    rng = np.random.default_rng(0)
    masks = rng.random((n_models, n_train)) < 0.5
    y = rng.normal(0, 1, (n_models, 7))
    w, b = fit_datamodels(masks, y, l2=3.0)
    w_ref, b_ref = ridge_reference(masks, y, 3.0)
    assert w.shape == (n_train, 7) and b.shape == (7,)
    np.testing.assert_allclose(w, w_ref, atol=1e-10)
    np.testing.assert_allclose(b, b_ref, atol=1e-10)


def test_multiclass_outputs_equal_per_class_fits() -> None:
    rng = np.random.default_rng(1)
    masks = rng.random((60, 20)) < 0.5
    y = rng.normal(0, 1, (60, 5, 3))
    w, b = fit_datamodels(masks, y, l2=1.0)
    assert w.shape == (20, 5, 3) and b.shape == (5, 3)
    for c in range(3):
        wc, bc = fit_datamodels(masks, y[:, :, c], l2=1.0)
        np.testing.assert_allclose(w[:, :, c], wc, atol=1e-12)
        np.testing.assert_allclose(b[:, c], bc, atol=1e-12)
    assert predict(w, b, masks[:4]).shape == (4, 5, 3)


def planted(rng: np.random.Generator, n_models: int, n_train: int = 100, n_points: int = 30, noise: float = 1.0):
    masks = pool_masks(n_train, n_models, seed=int(rng.integers(1 << 30)))
    theta = rng.normal(0, 1, (n_train, n_points)) * (rng.random((n_train, n_points)) < 0.3)
    bias = rng.normal(0, 3, n_points)
    outputs = masks @ theta + bias + rng.normal(0, noise, (n_models, n_points))
    return masks, outputs, theta, bias


def test_recovers_planted_linear_effect() -> None:
    rng = np.random.default_rng(2)
    masks, outputs, theta, bias = planted(rng, 800)
    w, b = fit_datamodels(masks, outputs, l2=1.0)
    assert np.corrcoef(w.ravel(), theta.ravel())[0, 1] > 0.9
    per_point = [np.corrcoef(w[:, j], theta[:, j])[0, 1] for j in range(theta.shape[1])]
    assert min(per_point) > 0.8
    # prediction error of the noiseless output: ~ noise · sqrt(n_train / n_models) ≈ 0.35 rms
    assert np.sqrt(np.mean((predict(w, b, masks) - (masks @ theta + bias)) ** 2)) < 0.5


def test_holdout_correlation_high_for_signal_low_for_noise() -> None:
    rng = np.random.default_rng(3)
    masks, outputs, _, _ = planted(rng, 700)
    corr, summary = holdout_correlation(masks[:500], outputs[:500], masks[500:], outputs[500:], l2=1.0)
    assert corr.shape == (30,) and summary["n_points"] == 30
    assert summary["mean"] > 0.85 and summary["median"] > 0.85
    noise = rng.normal(0, 1, outputs.shape)
    _, s_noise = holdout_correlation(masks[:500], noise[:500], masks[500:], noise[500:], l2=1.0)
    assert abs(s_noise["mean"]) < 0.15
    # a constant output has no defined correlation and is left out of the summary
    const = outputs.copy()
    const[:, 0] = 1.0
    corr, summary = holdout_correlation(masks[:500], const[:500], masks[500:], const[500:], l2=1.0)
    assert np.isnan(corr[0]) and summary["n_points"] == 29


def test_forget_effect_and_dm_direct() -> None:
    w = np.arange(12.0).reshape(4, 3)  # [n_train=4, points=3]
    np.testing.assert_array_equal(forget_effect(w, [1, 3]), w[1] + w[3])
    base = np.ones((2, 3))
    got = dm_direct_margins(base, w, np.array([1, 3]), multiplier=0.5)
    np.testing.assert_array_equal(got, np.tile(1 - 0.5 * (w[1] + w[3]), (2, 1)))
    np.testing.assert_array_equal(dm_direct_margins(base, w, np.array([], dtype=np.int64)), base)
    with pytest.raises(ValueError):
        forget_effect(w, [4])
    with pytest.raises(ValueError):
        forget_effect(w, [1, 1])
    with pytest.raises(ValueError):
        dm_direct_margins(np.ones((2, 5)), w, [0])


def rank2_matrix(rng: np.random.Generator, n: int = 300) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """weights[i, x] = v1[i] z1[x] + v2[i] z2[x] + noise, with planted top/bottom train points in v1 and v2."""
    v1 = rng.normal(0, 0.05, n)
    top1, bottom1 = np.arange(0, 10), np.arange(10, 20)
    v1[top1], v1[bottom1] = 1.0 + rng.random(10), -0.8 - 0.1 * rng.random(10)
    v2 = rng.normal(0, 0.05, n)
    top2 = np.arange(100, 110)
    v2[top2] = 1.0 + rng.random(10)
    z1, z2 = rng.normal(0, 3.0, n), rng.normal(0, 1.0, n)  # component 1 carries more variance over targets x
    w = np.outer(v1, z1) + np.outer(v2, z2) + rng.normal(0, 0.02, (n, n))
    return w, top1, bottom1, top2


@pytest.mark.parametrize("method", ["exact", "randomized"])
def test_attribution_pc_recovers_planted_points(method: str) -> None:
    w, top1, bottom1, top2 = rank2_matrix(np.random.default_rng(4))
    got = attribution_pc_forget_set(w, 1, "top", 10, method=method)
    assert got.dtype == np.int64 and (np.diff(got) > 0).all()
    np.testing.assert_array_equal(got, top1)
    np.testing.assert_array_equal(attribution_pc_forget_set(w, 1, "top_bottom", 20, method=method),
                                  np.union1d(top1, bottom1))
    np.testing.assert_array_equal(attribution_pc_forget_set(w, 2, "top", 10, method=method), top2)
    # the sign convention makes the set independent of the SVD's arbitrary sign
    np.testing.assert_array_equal(attribution_pc_forget_set(-w, 1, "top", 10, method=method), top1)


def test_attribution_pc_rejects_bad_arguments() -> None:
    w = np.zeros((5, 5))
    with pytest.raises(ValueError):
        attribution_pc_forget_set(w, 1, "top_bottom", 3)
    with pytest.raises(ValueError):
        attribution_pc_forget_set(w, 0, "top", 2)
    with pytest.raises(ValueError):
        attribution_pc_forget_set(np.zeros((5, 4)), 1, "top", 2)
    with pytest.raises(ValueError):
        attribution_pc_forget_set(w, 1, "middle", 2)  # type: ignore[arg-type]


def test_forget_effect_from_pool_equals_the_fitted_weights_summed_over_f():
    from unlearnbench.datamodels import fit_datamodels, forget_effect, forget_effect_from_pool

    rng = np.random.default_rng(0)
    masks = rng.random((30, 50)) < 0.5
    outputs = masks @ rng.normal(size=(50, 7, 3)).reshape(50, -1) + rng.normal(size=(30, 21))
    outputs = outputs.reshape(30, 7, 3)
    forget = np.array([1, 4, 9])
    weights, _ = fit_datamodels(masks, outputs, l2=2.0)
    np.testing.assert_allclose(forget_effect_from_pool(masks, outputs, forget, 2.0), forget_effect(weights, forget),
                               rtol=1e-8, atol=1e-10)
