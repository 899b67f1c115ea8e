"""Datamodels (benchmark spec §6): linear predictors of a point's output from the training-set inclusion mask.

For a target point x, ``f_x(S) ≈ θ_x · 1_S + b_x`` where ``1_S`` is the 0/1 mask of the training subset S.  The
coefficients ``β_i(x) = θ_x[i]`` estimate how much including train point i moves x's output; they drive
datamodel matching (DMM) and DM-direct (spec §5), whose predicted oracle output is ``f(x) − Σ_{i∈F} β_i(x)``, and the
principal-component forget sets 4–9 (spec §4).

The published datamodels were fitted with an L1 (LASSO) solver; this module fits ridge regression instead: a closed
form solved for every target point with a single factorisation, with no iterative solver or GPU needed.  Coefficients
therefore differ from the published ones in sparsity, not in meaning.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

__all__ = [
    "attribution_pc_forget_set",
    "dm_direct_margins",
    "fit_datamodels",
    "forget_effect",
    "holdout_correlation",
    "predict",
]


def fit_datamodels(masks: np.ndarray, outputs: np.ndarray, l2: float) -> tuple[np.ndarray, np.ndarray]:
    """Ridge datamodels of every point at once: ``(weights [n_train, n_points(, C)], bias [n_points(, C)])``.

    ``masks``: bool/0-1 [M, n_train], the training mask of each of M models; ``outputs``: [M, n_points] (margins) or
    [M, n_points, C] (e.g. logits) of those models.  With ``X`` the column-centred masks and ``Y`` the centred outputs
    (all in float64), the weights minimise ``‖Y − X W‖² + l2 ‖W‖²`` (the intercept is not penalised), i.e.

        (XᵀX + l2·I) W = XᵀY,

    solved once for all output columns.  When M < n_train the equivalent dual form ``W = Xᵀ (XXᵀ + l2·I)⁻¹ Y`` is used
    (same solution, an M×M system instead of n_train×n_train: 50,000 train points would need a 20 GB Gram matrix).
    ``bias = mean(Y) − mean(X) · W``, so ``predict(weights, bias, masks) = masks @ weights + bias``.

    ``l2`` must be positive when the system would otherwise be singular (always in the dual form with repeated
    masks); a small multiple of the number of models is a reasonable start.  Memory: weights are
    n_train × n_points(·C) float64, so fit subsets of points when that product is large.
    """
    x = np.asarray(masks, dtype=np.float64)
    y = np.asarray(outputs, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"masks must be 2-D [n_models, n_train], got shape {x.shape}")
    if y.ndim not in (2, 3) or y.shape[0] != x.shape[0]:
        raise ValueError(f"outputs must be [n_models, n_points(, C)] with {x.shape[0]} models, got {y.shape}")
    if l2 < 0:
        raise ValueError(f"l2 must be non-negative, got {l2}")
    n_models, n_train = x.shape
    tail = y.shape[1:]
    y2 = y.reshape(n_models, -1)
    x_mean = x.mean(axis=0)
    y_mean = y2.mean(axis=0)
    xc = x - x_mean
    yc = y2 - y_mean
    if n_train <= n_models:
        gram = xc.T @ xc
        gram[np.diag_indices(n_train)] += l2
        w = np.linalg.solve(gram, xc.T @ yc)
    else:
        gram = xc @ xc.T
        gram[np.diag_indices(n_models)] += l2
        w = xc.T @ np.linalg.solve(gram, yc)
    bias = y_mean - x_mean @ w
    return w.reshape((n_train, *tail)), bias.reshape(tail)


def predict(weights: np.ndarray, bias: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Predicted outputs ``[M, n_points(, C)] = masks @ weights + bias`` for masks [M, n_train]."""
    w = np.asarray(weights, dtype=np.float64)
    x = np.asarray(masks, dtype=np.float64)
    out = x @ w.reshape(w.shape[0], -1) + np.asarray(bias, dtype=np.float64).reshape(-1)
    return out.reshape((x.shape[0], *w.shape[1:]))


def holdout_correlation(
    masks_fit: np.ndarray,
    outputs_fit: np.ndarray,
    masks_test: np.ndarray,
    outputs_test: np.ndarray,
    l2: float,
) -> tuple[np.ndarray, dict[str, float]]:
    """Per-point Pearson correlation between predicted and actual outputs over held-out models, and a summary.

    Fits on ``(masks_fit, outputs_fit)``, predicts the held-out models' outputs and correlates, for every point (and
    class), the prediction with the truth across the held-out models.  This is the standard datamodel quality check
    (how much of a point's model-to-model variation the linear model explains).  Returns ``(corr [n_points(, C)],
    {"mean", "median", "n_points"})``; points whose prediction or truth is constant over the held-out models have an
    undefined correlation (NaN) and are left out of the summary.
    """
    weights, bias = fit_datamodels(masks_fit, outputs_fit, l2)
    pred = predict(weights, bias, masks_test)
    truth = np.asarray(outputs_test, dtype=np.float64)
    if truth.shape != pred.shape:
        raise ValueError(f"outputs_test has shape {truth.shape}, predictions have {pred.shape}")
    pc = pred - pred.mean(axis=0)
    tc = truth - truth.mean(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = (pc * tc).sum(axis=0) / np.sqrt((pc**2).sum(axis=0) * (tc**2).sum(axis=0))
    valid = corr[np.isfinite(corr)]
    summary = {
        "mean": float(valid.mean()) if valid.size else float("nan"),
        "median": float(np.median(valid)) if valid.size else float("nan"),
        "n_points": int(valid.size),
    }
    return corr, summary


def forget_effect(weights: np.ndarray, forget_indices: np.ndarray) -> np.ndarray:
    """``Σ_{i∈F} β_i(x)`` for every point x: shape [n_points(, C)] (the datamodel-predicted effect of F)."""
    w = np.asarray(weights)
    f = np.asarray(forget_indices, dtype=np.int64).ravel()
    if f.size and (f.min() < 0 or f.max() >= w.shape[0]):
        raise ValueError(f"forget indices must lie in 0..{w.shape[0] - 1}")
    if np.unique(f).size != f.size:
        raise ValueError("forget indices must be distinct")
    return w[f].sum(axis=0, dtype=np.float64)


def dm_direct_margins(
    base_margins: np.ndarray, weights: np.ndarray, forget: np.ndarray, multiplier: float = 1.0
) -> np.ndarray:
    """DM-direct predicted margins (spec §5): ``base − multiplier · Σ_{i∈F} β_i(x)``, shape [M, P].

    ``base_margins`` [M, P] are the base models' margins; ``weights`` [n_train, P] datamodels of the same P points.
    No model is updated: the result measures attribution quality only (the same shift for every model).
    """
    base = np.asarray(base_margins)
    effect = forget_effect(weights, forget)
    if effect.shape != base.shape[1:]:
        raise ValueError(f"weights cover points {effect.shape}, base margins have {base.shape[1:]}")
    return base - multiplier * effect


def attribution_pc_forget_set(
    weights_train_by_train: np.ndarray,
    component: int,
    mode: Literal["top", "top_bottom"],
    size: int,
    method: Literal["auto", "exact", "randomized"] = "auto",
    seed: int = 0,
) -> np.ndarray:
    """Train points ranked along a principal component of the train×train datamodel matrix (spec §4 sets 4–9).

    The matrix is ``weights_train_by_train[i, x] = β_i(x)`` as returned by ``fit_datamodels`` for the train points
    themselves (rows = train points i whose inclusion is varied, columns = target train points x).  It is read as a
    data set with one observation per *target* x and one feature per train point i, i.e. ``A = weightsᵀ``
    [n_x, n_i]; each feature is centred over the targets, and the principal axes are the right singular vectors of
    the centred A.  The score of train point i along component k (1-based) is its loading ``v_k[i]``; the sign of
    ``v_k`` is fixed so that its largest-magnitude loading is positive (ties: the first).

    ``mode="top"``: the ``size`` highest scores; ``"top_bottom"``: the ``size/2`` highest and ``size/2`` lowest
    (``size`` even).  Ties in score rank the lower index first.  Returns sorted int64 indices.

    ``method="exact"`` uses a full SVD; ``"randomized"`` a seeded randomized subspace iteration (Halko et al.) that
    never forms a centred copy or a Gram matrix, for the 50,000×50,000 CIFAR-10 case; ``"auto"`` picks exact up to
    4·10⁶ entries.
    """
    w = np.asarray(weights_train_by_train)
    if w.ndim != 2 or w.shape[0] != w.shape[1]:
        raise ValueError(f"expected a square train×train matrix, got shape {w.shape}")
    n = w.shape[0]
    if not 1 <= component <= n:
        raise ValueError(f"component must be in 1..{n}, got {component}")
    if mode == "top":
        if not 1 <= size <= n:
            raise ValueError(f"size must be in 1..{n}, got {size}")
    elif mode == "top_bottom":
        if size < 2 or size % 2 or size > n:
            raise ValueError(f"top_bottom needs an even size in 2..{n}, got {size}")
    else:
        raise ValueError(f"mode must be 'top' or 'top_bottom', got {mode!r}")
    if method == "auto":
        method = "exact" if w.size <= 4_000_000 else "randomized"
    if method == "exact":
        a = w.T.astype(np.float64)
        a -= a.mean(axis=0)
        v = np.linalg.svd(a, full_matrices=False)[2][component - 1]
    elif method == "randomized":
        v = _randomized_right_vector(w.T, component, seed)
    else:
        raise ValueError(f"method must be 'auto', 'exact' or 'randomized', got {method!r}")
    if v[np.argmax(np.abs(v))] < 0:
        v = -v
    order = np.argsort(-v, kind="stable")
    if mode == "top":
        chosen = order[:size]
    else:
        half = size // 2
        chosen = np.concatenate([order[:half], np.argsort(v, kind="stable")[:half]])
    return np.sort(chosen).astype(np.int64)


def _randomized_right_vector(
    a: np.ndarray, component: int, seed: int, oversample: int = 10, n_iter: int = 6
) -> np.ndarray:
    """The ``component``-th right singular vector of ``a`` with its columns centred, without centring a copy.

    Centred products: ``(A − 1μᵀ) V = A V − 1 (μᵀ V)`` and ``(A − 1μᵀ)ᵀ U = Aᵀ U − μ (1ᵀ U)``.  Subspace iteration
    with QR re-orthonormalisation after every product (stable for slowly decaying spectra).
    """
    n_rows, n_cols = a.shape
    k = min(component + oversample, n_rows, n_cols)
    mu = a.mean(axis=0, dtype=np.float64)

    def times(v: np.ndarray) -> np.ndarray:  # centred A @ v
        return a @ v - (mu @ v)[None, :]

    def t_times(u: np.ndarray) -> np.ndarray:  # centred Aᵀ @ u
        return a.T @ u - np.outer(mu, u.sum(axis=0))

    rng = np.random.default_rng(seed)
    q = np.linalg.qr(times(rng.standard_normal((n_cols, k))))[0]
    for _ in range(n_iter):
        q = np.linalg.qr(t_times(q))[0]
        q = np.linalg.qr(times(q))[0]
    b = t_times(q).T  # [k, n_cols] = Qᵀ (centred A)
    return np.linalg.svd(b, full_matrices=False)[2][component - 1]


def forget_effect_from_pool(masks: np.ndarray, outputs: np.ndarray, forget: np.ndarray, l2: float) -> np.ndarray:
    """``Σ_{i∈F} β_i(x)`` of the ridge datamodels of :func:`fit_datamodels`, without materialising ``β``.

    With the dual form ``W = Xᵀ (XXᵀ + l2·I)⁻¹ Y`` the rows of ``W`` over F sum to
    ``(Σ_{i∈F} X_{:,i})ᵀ (XXᵀ + l2·I)⁻¹ Y``: an M×M solve per call, so datamodel matching at CIFAR-10
    scale never builds the 50,000 × 60,000 (× 10 logits) weight matrix. Same values as
    ``forget_effect(fit_datamodels(masks, outputs, l2)[0], forget)``.
    """
    x = np.asarray(masks, dtype=np.float64)
    y = np.asarray(outputs, dtype=np.float64)
    n_models = x.shape[0]
    tail = y.shape[1:]
    xc = x - x.mean(axis=0)
    yc = y.reshape(n_models, -1)
    yc = yc - yc.mean(axis=0)
    gram = xc @ xc.T
    gram[np.diag_indices(n_models)] += l2
    effect = xc[:, np.asarray(forget)].sum(axis=1) @ np.linalg.solve(gram, yc)
    return effect.reshape(tail)
