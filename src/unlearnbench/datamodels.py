"""Datamodels (benchmark spec §6): linear predictors of a point's output from the training-set inclusion mask.

For a target point x, ``f_x(S) ≈ θ_x · 1_S + b_x`` where ``1_S`` is the 0/1 mask of the training subset S (Ilyas et
al., "Datamodels: predicting predictions from training data", ICML 2022).  The coefficient ``β_i(x) = θ_x[i]`` is the
expected change of x's output when train point i is *included*; they drive datamodel matching (DMM) and DM-direct
(spec §5) and the principal-component forget sets 4–9 (spec §4).

**Sign convention.**  The forget effect ``EFFECT(x) = Σ_{i∈F} β_i(x)`` is the predicted *drop* of x's output when the
forget set F is removed from training, so the predicted oracle output is ``base(x) − EFFECT(x)`` (DM-direct, DMM).

**Estimators** (``datamodels.estimator``; each is linear in the outputs, ``β_i(x) = Σ_m A[m, i] · y_m(x)`` for a
weight matrix ``A [M, n_train]`` of the M pool masks alone, see :func:`attribution_weights`):

- ``ridge``: ridge regression of the outputs on the masks (the published datamodels used L1/LASSO; ridge has a
  closed form).  With M models and n train points, M ≪ n puts ridge in its minimum-norm regime: every coefficient is
  shrunk by ≈ M/n (slope 0.005 on a planted truth at n = 50,000, M = 256), and at M ≈ n a penalty that makes the
  fit stable still shrinks by ≈ 0.6 (n = 300, M = 352, l2 = 30).  Right in scale only when M ≫ n.
- ``diff_means``: the difference in mean output between the models that include i and those that exclude it.
  Unbiased for any M when the masks are independent random halves (each point's inclusion is independent of the
  others', so the other points' effects average out); noisier than a regression when M ≳ n, because the other
  points' effects stay in its noise.  This is the estimator of Feldman & Zhang ("What neural networks memorize and
  why", NeurIPS 2020) applied to every target, which is what the published DM-direct / DMM influence file is named
  after (spec §10).
- ``ridge_rescaled``: ridge divided by its mean shrinkage ``df / n``, with ``df = tr[XᵀX (XᵀX + l2·I)⁻¹]`` of the
  centred masks X (the effective degrees of freedom, computed exactly from the masks).  Columns of random-half
  masks are exchangeable and symmetric under 0/1 flips, so ``E[(XᵀX + l2·I)⁻¹ XᵀX] = (df/n)·I`` and the rescaled
  coefficients are unbiased on average over masks, with ridge's correlation.  At M ≪ n it equals
  ``diff_means`` up to the masks' sampling correlations; at M ≈ n it keeps ridge's lower noise at the right
  scale.  A deviation from the published (L1) fit, measured on a planted truth in ``config/README.md``.
- ``auto``: ``diff_means`` when M < n/10 (regression has no spare degrees of freedom there: both give the same
  correlation, measured 0.497 vs 0.498 at n = 50,000, M = 256, |F| = 100, and ``diff_means`` needs no
  penalty), otherwise ``ridge_rescaled``.  The measurements behind it are in ``config/README.md``.

An externally computed matrix (``datamodels.import``: β of every train point on every target, e.g. influence
estimates from thousands of models) replaces the pool fit through :class:`MatrixAttribution`; the pool fit is
:class:`PoolAttribution`.  Both answer the same questions (a forget set's effect, group effects for the fit-quality
table, the train×train matrix) without materialising β for every train point and target.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Literal

import numpy as np

log = logging.getLogger(__name__)

__all__ = [
    "ESTIMATORS",
    "MatrixAttribution",
    "PoolAttribution",
    "attribution_pc_forget_set",
    "attribution_weights",
    "dm_direct_margins",
    "effect_calibration",
    "fit_datamodel_weights",
    "fit_quality",
    "forget_effect",
    "forget_effect_from_pool",
    "holdout_correlation",
    "load_attribution_matrix",
    "pearson",
    "predict",
    "resolve_estimator",
    "train_by_train",
]

ESTIMATORS = ("ridge", "ridge_rescaled", "diff_means")
AUTO_DIFF_MEANS_BELOW = 0.1  # auto: diff_means when n_models < 0.1 * n_train (see the module doc)
_CHUNK_FLOATS = 1 << 24  # float64 values per chunk of outputs converted at once (128 MB)


def resolve_estimator(name: str, n_models: int, n_train: int) -> str:
    """The concrete estimator ``name`` stands for (``auto`` chooses by the ratio of models to train points)."""
    if name == "auto":
        return "diff_means" if n_models < AUTO_DIFF_MEANS_BELOW * n_train else "ridge_rescaled"
    if name not in ESTIMATORS:
        raise ValueError(f"unknown estimator {name!r}; known: {['auto', *ESTIMATORS]}")
    return name


def _check_masks(masks: np.ndarray) -> np.ndarray:
    x = np.asarray(masks)
    if x.ndim != 2:
        raise ValueError(f"masks must be 2-D [n_models, n_train], got shape {x.shape}")
    return x


def attribution_weights(masks: np.ndarray, estimator: str, l2: float = 1.0,
                        columns: np.ndarray | None = None) -> np.ndarray:
    """Weights ``A [M, len(columns)]`` (float64) with ``β_i(x) = Σ_m A[m, i] · y_m(x)`` for ``i`` in ``columns``.

    ``masks``: bool/0-1 ``[M, n_train]``; ``columns``: train indices (default: all).  Every column of A sums to zero
    over the models, so the outputs need no centring.  ``estimator`` is one of :data:`ESTIMATORS` or ``auto``;
    ``l2`` is the ridge penalty (unused by ``diff_means``).  Columns of points that every model or no model
    trained on have no ``diff_means`` coefficient: their weights are zero (see :meth:`PoolAttribution.identified`).
    """
    return _weights_of(_check_masks(masks), estimator, l2)(columns)


def _weights_of(x: np.ndarray, estimator: str, l2: float):
    """``columns -> A[:, columns]`` for masks ``x``; a ridge factorisation is computed once and reused."""
    n_models, n_train = x.shape
    estimator = resolve_estimator(estimator, n_models, n_train)

    def cols(columns) -> np.ndarray:
        return np.arange(n_train) if columns is None else np.asarray(columns, dtype=np.int64).ravel()

    if estimator == "diff_means":
        def diff_means(columns=None) -> np.ndarray:
            sub = x[:, cols(columns)].astype(np.float64)
            n_in = sub.sum(axis=0)
            n_out = n_models - n_in
            with np.errstate(divide="ignore", invalid="ignore"):
                a = sub / n_in - (1.0 - sub) / n_out
            a[:, (n_in == 0) | (n_out == 0)] = 0.0
            return a

        return diff_means
    if l2 < 0:
        raise ValueError(f"l2 must be non-negative, got {l2}")
    xc = x.astype(np.float64)
    xc -= xc.mean(axis=0)
    primal = n_train <= n_models  # an n_train × n_train system; else the M × M dual (no n_train² Gram matrix)
    eig, vec = np.linalg.eigh(xc.T @ xc if primal else xc @ xc.T)
    if eig.min() + l2 <= 1e-10 * max(1.0, float(eig.max())):
        raise ValueError("the ridge system is singular: use a positive l2")
    scale = 1.0
    if estimator == "ridge_rescaled":  # divide by the mean shrinkage df / n (module doc)
        clipped = np.clip(eig, 0.0, None)
        scale = n_train / float(np.sum(clipped / (clipped + l2)))
    inverse = vec / (eig + l2)

    def ridge(columns=None) -> np.ndarray:
        c = cols(columns)
        if primal:  # A = Xc (XcᵀXc + l2·I)⁻¹ [:, cols]
            return scale * (xc @ (inverse @ vec[c].T))
        return scale * (inverse @ (vec.T @ xc[:, c]))  # A = (XcXcᵀ + l2·I)⁻¹ Xc[:, cols]

    return ridge


def _weighted_sum(a: np.ndarray, outputs: np.ndarray) -> np.ndarray:
    """``aᵀ Y`` for ``a [M, k]`` and outputs ``[M, ...]`` in float64, converting the outputs a chunk at a time."""
    y = outputs.reshape(outputs.shape[0], -1)
    out = np.empty((a.shape[1], y.shape[1]), dtype=np.float64)
    step = max(1, _CHUNK_FLOATS // max(1, y.shape[0]))
    for start in range(0, y.shape[1], step):
        out[:, start:start + step] = a.T @ np.asarray(y[:, start:start + step], dtype=np.float64)
    return out.reshape((a.shape[1], *outputs.shape[1:]))


def _check_forget(forget: np.ndarray, n_train: int) -> np.ndarray:
    f = np.asarray(forget)
    if f.size and not np.issubdtype(f.dtype, np.integer):
        raise ValueError(f"forget indices must be integers, got dtype {f.dtype}")
    f = f.astype(np.int64).ravel()
    if f.size and (f.min() < 0 or f.max() >= n_train):
        raise ValueError(f"forget indices must lie in 0..{n_train - 1}, got {f.min()}..{f.max()}")
    if np.unique(f).size != f.size:
        raise ValueError("forget indices must be distinct")
    return f


class PoolAttribution:
    """The datamodels of one estimator on a pool, kept as ``A [M, n_train]`` and the outputs (β = Aᵀ Y).

    ``masks`` bool/0-1 ``[M, n_train]``; ``outputs`` ``[M, P]`` margins or ``[M, P, C]`` logits of the same models
    (any float dtype, memory-mapped arrays work: they are read a chunk at a time).  A is built lazily per set of
    columns; only :meth:`member_effects`, :meth:`predict` and :meth:`train_matrix` need all of it (M × n_train
    float64: 100 MB for 256 models × 50,000 points).
    """

    def __init__(self, masks: np.ndarray, outputs: np.ndarray, estimator: str = "auto", l2: float = 1.0):
        self.masks = _check_masks(masks)
        self.outputs = outputs if isinstance(outputs, np.ndarray) else np.asarray(outputs)
        if self.outputs.ndim not in (2, 3) or self.outputs.shape[0] != self.masks.shape[0]:
            raise ValueError(f"outputs must be [n_models, n_points(, C)] with {self.masks.shape[0]} models, "
                             f"got {self.outputs.shape}")
        self.n_models, self.n_train = self.masks.shape
        self.estimator = resolve_estimator(estimator, self.n_models, self.n_train)
        self.l2 = float(l2)
        self._columns = None  # columns -> A[:, columns], built on first use
        self._all: np.ndarray | None = None

    @property
    def n_points(self) -> int:
        return self.outputs.shape[1]

    def weights(self, columns: np.ndarray | None = None) -> np.ndarray:
        """``A[:, columns]`` (all columns are computed once and kept)."""
        if self._all is not None:
            return self._all if columns is None else self._all[:, columns]
        if self._columns is None:
            self._columns = _weights_of(self.masks, self.estimator, self.l2)
        if columns is None:
            self._all = self._columns(None)
            return self._all
        return self._columns(columns)

    def identified(self) -> np.ndarray:
        """Per train point: did some models include it and some exclude it (else it has no coefficient)?"""
        n_in = np.asarray(self.masks, dtype=bool).sum(axis=0)
        return (n_in > 0) & (n_in < self.n_models)

    def effect(self, forget: np.ndarray) -> np.ndarray:
        """``Σ_{i∈F} β_i(x)`` for every target x: ``[P(, C)]`` float64, from ``A[:, F]`` only (one M-vector)."""
        f = _check_forget(forget, self.n_train)
        a = self.weights(f).sum(axis=1, keepdims=True)
        return _weighted_sum(a, self.outputs)[0]

    def group_effects(self, groups: Sequence[np.ndarray]) -> np.ndarray:
        """``[len(groups), P(, C)]``: the forget effect of each group of train points."""
        a = np.stack([self.weights(_check_forget(g, self.n_train)).sum(axis=1) for g in groups], axis=1)
        return _weighted_sum(a, self.outputs)

    def member_effects(self, group_of: np.ndarray) -> np.ndarray:
        """For each train point x with ``group_of[x] = g ≥ 0``: ``Σ_{i∈G_g} β_i(x)`` (NaN where ``g < 0``).

        The effect of removing x's own group on x (for groups of one: x's self-influence).  Margins only.
        """
        g = np.asarray(group_of, dtype=np.int64)
        if self.outputs.ndim != 2:
            raise ValueError("member_effects needs margins [M, P]")
        out = np.full(self.n_train, np.nan)
        member = np.flatnonzero(g >= 0)
        if not member.size:
            return out
        by_group = member[np.argsort(g[member], kind="stable")]
        starts = np.r_[0, np.flatnonzero(np.diff(g[by_group])) + 1]
        summed = np.add.reduceat(self.weights()[:, by_group], starts, axis=1)  # [M, groups present]
        column = np.searchsorted(g[by_group][starts], g[member])
        y = np.asarray(self.outputs[:, member], dtype=np.float64)
        out[member] = np.einsum("mk,mk->k", summed[:, column], y)
        return out

    def predict(self, masks: np.ndarray) -> np.ndarray:
        """Predicted outputs ``[M', P(, C)]`` of models with ``masks [M', n_train]`` (mean + (mask − mean mask)·β)."""
        x = np.asarray(masks, dtype=np.float64) - np.asarray(self.masks, dtype=np.float64).mean(axis=0)
        y = self.outputs.reshape(self.n_models, -1)
        mean = np.asarray(y, dtype=np.float64).mean(axis=0)
        coupling = x @ self.weights().T  # [M', M]
        return (mean + _weighted_sum(coupling.T, y)).reshape((x.shape[0], *self.outputs.shape[1:]))

    def train_matrix(self, n_targets: int | None = None, dtype=np.float32) -> np.ndarray:
        """``β[i, x]`` for every train point i and the first ``n_targets`` targets (default: the train points)."""
        n_targets = self.n_train if n_targets is None else n_targets
        a = self.weights()
        out = np.empty((self.n_train, n_targets), dtype=dtype)
        step = max(1, _CHUNK_FLOATS // max(1, self.n_train))
        for start in range(0, n_targets, step):
            stop = min(n_targets, start + step)
            out[:, start:stop] = a.T @ np.asarray(self.outputs[:, start:stop], dtype=np.float64)
        return out


class MatrixAttribution:
    """A given matrix ``β [n_train, P(, C)]`` (e.g. imported, memory-mapped), answering the questions of
    :class:`PoolAttribution`."""

    def __init__(self, weights: np.ndarray):
        if weights.ndim not in (2, 3):
            raise ValueError(f"an attribution matrix is [n_train, P(, C)], got shape {weights.shape}")
        self.beta = weights
        self.n_train = weights.shape[0]
        self.estimator = "import"

    @property
    def n_points(self) -> int:
        return self.beta.shape[1]

    def identified(self) -> np.ndarray:
        return np.ones(self.n_train, dtype=bool)

    def effect(self, forget: np.ndarray) -> np.ndarray:
        f = np.sort(_check_forget(forget, self.n_train))
        return np.asarray(self.beta[f], dtype=np.float64).sum(axis=0)

    def group_effects(self, groups: Sequence[np.ndarray]) -> np.ndarray:
        return np.stack([self.effect(g) for g in groups])

    def member_effects(self, group_of: np.ndarray) -> np.ndarray:
        g = np.asarray(group_of, dtype=np.int64)
        out = np.full(self.n_train, np.nan)
        for group in np.unique(g[g >= 0]):
            members = np.flatnonzero(g == group)
            block = np.asarray(self.beta[members][:, members], dtype=np.float64)
            out[members] = block.sum(axis=0)
        return out

    def predict(self, masks: np.ndarray, reference_masks: np.ndarray, reference_outputs: np.ndarray) -> np.ndarray:
        """Outputs of ``masks`` predicted around the mean of reference models (β has no intercept of its own)."""
        ref = np.asarray(reference_masks, dtype=np.float64)
        x = np.asarray(masks, dtype=np.float64) - ref.mean(axis=0)
        mean = np.asarray(reference_outputs, dtype=np.float64).mean(axis=0)
        out = np.zeros((x.shape[0], *self.beta.shape[1:]))
        step = max(1, _CHUNK_FLOATS // max(1, int(np.prod(self.beta.shape[1:]))))
        for start in range(0, self.n_train, step):
            out += np.tensordot(x[:, start:start + step], np.asarray(self.beta[start:start + step], np.float64), 1)
        return mean + out

    def train_matrix(self, n_targets: int | None = None, dtype=np.float32) -> np.ndarray:
        n_targets = self.n_train if n_targets is None else n_targets
        return np.asarray(self.beta[:, :n_targets], dtype=dtype)


def load_attribution_matrix(path: str | os.PathLike, n_train: int, n_points: int,
                            n_classes: int | None = None) -> np.ndarray:
    """An imported β file, memory-mapped: ``.npy``, float, shape ``[n_train, n_points]`` (or ``[..., n_classes]``).

    Read with ``allow_pickle=False`` and ``mmap_mode="r"`` (a 50,000 × 60,000 float32 file is 12 GB and is never
    loaded whole).  Raises ValueError naming the file on a wrong shape or dtype.
    """
    try:
        beta = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise ValueError(f"{path}: not a readable .npy array ({exc})") from None
    if not isinstance(beta, np.ndarray):
        raise ValueError(f"{path}: expected a .npy array, got {type(beta).__name__}")
    expected = (n_train, n_points) if n_classes is None else (n_train, n_points, n_classes)
    if beta.shape != expected:
        raise ValueError(f"{path}: expected shape {list(expected)} (train points × targets"
                         f"{' × classes' if n_classes else ''}), got {list(beta.shape)}")
    if not np.issubdtype(beta.dtype, np.floating):
        raise ValueError(f"{path}: expected a float array, got dtype {beta.dtype}")
    return beta


def train_by_train(path: str | os.PathLike, n_train: int) -> np.ndarray:
    """The train×train block ``β[i, x]`` (x < n_train) of the pool's ``fit.npz`` or of an imported ``.npy``
    (memory-mapped, not read whole)."""
    if str(path).endswith(".npy"):
        beta = np.load(path, mmap_mode="r", allow_pickle=False)
        if beta.ndim != 2 or beta.shape[0] != n_train or beta.shape[1] < n_train:
            raise ValueError(f"{path}: expected [n_train = {n_train}, targets >= {n_train}], got {list(beta.shape)}")
        return beta[:, :n_train]
    from .storage import load_arrays

    return load_arrays(path, ("weights",))["weights"][:, :n_train]


def fit_datamodel_weights(masks: np.ndarray, outputs: np.ndarray, l2: float,
                   estimator: str = "ridge") -> tuple[np.ndarray, np.ndarray]:
    """Datamodels of every point at once: ``(weights [n_train, n_points(, C)], bias [n_points(, C)])``.

    ``masks``: bool/0-1 [M, n_train]; ``outputs``: [M, n_points] (margins) or [M, n_points, C] (logits).  For
    ``ridge``, with ``X`` the column-centred masks and ``Y`` the centred outputs, the weights minimise
    ``‖Y − X W‖² + l2 ‖W‖²`` (the intercept is not penalised); the M×M dual form is used when M < n_train.
    ``bias = mean(Y) − mean(X) · W``, so ``predict(weights, bias, masks) = masks @ weights + bias``.  Memory: the
    weights are n_train × n_points(·C) float64; :class:`PoolAttribution` answers forget-effect questions without them.
    """
    x = _check_masks(masks)
    y = np.asarray(outputs)
    if y.ndim not in (2, 3) or y.shape[0] != x.shape[0]:
        raise ValueError(f"outputs must be [n_models, n_points(, C)] with {x.shape[0]} models, got {y.shape}")
    w = _weighted_sum(attribution_weights(x, estimator, l2), y)
    flat = w.reshape(w.shape[0], -1)
    bias = np.asarray(y, dtype=np.float64).reshape(len(y), -1).mean(axis=0) - np.asarray(x, np.float64).mean(0) @ flat
    return w, bias.reshape(y.shape[1:])


def predict(weights: np.ndarray, bias: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Predicted outputs ``[M, n_points(, C)] = masks @ weights + bias`` for masks [M, n_train]."""
    w = np.asarray(weights, dtype=np.float64)
    x = np.asarray(masks, dtype=np.float64)
    out = x @ w.reshape(w.shape[0], -1) + np.asarray(bias, dtype=np.float64).reshape(-1)
    return out.reshape((x.shape[0], *w.shape[1:]))


def pearson(pred: np.ndarray, truth: np.ndarray, axis: int = 0) -> np.ndarray:
    """Pearson correlation of ``pred`` and ``truth`` along ``axis`` (NaN where either is constant)."""
    pc = pred - pred.mean(axis=axis)
    tc = truth - truth.mean(axis=axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (pc * tc).sum(axis=axis) / np.sqrt((pc**2).sum(axis=axis) * (tc**2).sum(axis=axis))


def holdout_correlation(
    masks_fit: np.ndarray,
    outputs_fit: np.ndarray,
    masks_test: np.ndarray,
    outputs_test: np.ndarray,
    l2: float,
    estimator: str = "ridge",
) -> tuple[np.ndarray, dict[str, float]]:
    """Per-point Pearson correlation between predicted and actual outputs over held-out models, and a summary.

    Fits on ``(masks_fit, outputs_fit)``, predicts the held-out models' whole outputs and correlates, for every
    point (and class), the prediction with the truth across the held-out models: the classic datamodel check.  It
    is blind to scale (a prediction shrunk 200-fold correlates as well); :func:`effect_calibration` is not.
    Returns ``(corr [n_points(, C)], {"mean", "median", "n_points"})``; points whose prediction or truth is constant
    over the held-out models have an undefined correlation (NaN) and are left out of the summary.
    """
    pred = PoolAttribution(masks_fit, outputs_fit, estimator, l2).predict(masks_test)
    truth = np.asarray(outputs_test, dtype=np.float64)
    if truth.shape != pred.shape:
        raise ValueError(f"outputs_test has shape {truth.shape}, predictions have {pred.shape}")
    corr = pearson(pred, truth)
    valid = corr[np.isfinite(corr)]
    summary = {
        "mean": float(valid.mean()) if valid.size else float("nan"),
        "median": float(np.median(valid)) if valid.size else float("nan"),
        "n_points": int(valid.size),
    }
    return corr, summary


def _agreement(pred: np.ndarray, obs: np.ndarray, with_scale: bool) -> dict[str, float]:
    """Calibration figures of predicted vs observed changes (see :func:`effect_calibration`)."""
    keep = np.isfinite(pred) & np.isfinite(obs)
    p, o = pred[keep], obs[keep]
    nan = float("nan")
    if p.size < 2:
        return {"n_pairs": int(p.size), "mean_predicted": nan, "mean_observed": nan, "scale": nan,
                "calibration_slope": nan, "correlation": nan, "mae": nan, "predicted_sd": nan}
    var_p = float(p.var())
    slope = float(np.mean((p - p.mean()) * (o - o.mean())) / var_p) if var_p > 0 else nan
    mean_o = float(o.mean())
    return {
        "n_pairs": int(p.size),
        "mean_predicted": float(p.mean()),
        "mean_observed": mean_o,
        "scale": float(p.mean() / mean_o) if with_scale and mean_o != 0 else nan,
        "calibration_slope": slope,
        "correlation": float(pearson(p, o)),
        "mae": float(np.mean(np.abs(p - o))),
        "predicted_sd": float(np.sqrt(var_p)),
    }


def effect_calibration(fitted, observed: PoolAttribution, group_sizes: Sequence[int], seed: int = 0,
                       max_groups: int = 16) -> list[dict]:
    """How well ``fitted`` predicts the output *changes* the forget effect stands for, on independent models.

    For each size k, the train points are split at random (seeded) into groups of k.  For a group G and a target
    x the **predicted change** is ``Σ_{i∈G} β̂_i(x)`` of ``fitted`` (what DM-direct subtracts when G is the forget
    set) and the **observed change** is the same sum of ``diff_means`` coefficients of ``observed``, the held-out
    pool models: the difference in x's mean output between held-out models that include and exclude each i,
    summed over G — unbiased for the true effect whatever the estimator, and independent of the fitted models.
    Rows: ``forget`` = targets inside their own group (every grouped train point; k = 1 is self-influence),
    ``retain`` = other train points and ``val`` = validation points, for the first ``max_groups`` groups.  Pairs
    whose group has a point that all or none of the held-out models trained on are left out.

    Figures per row (NaN where undefined): ``mean_predicted`` / ``mean_observed``; ``scale`` = their ratio
    (``forget`` rows only: the true mean effect elsewhere is ≈ 0) — 1 when the estimator has the right scale, and
    unaffected by either side's noise; ``calibration_slope`` = least-squares slope of observed on predicted
    (1 = calibrated, < 1 = predictions too spread out, e.g. noise, > 1 = shrunk); ``correlation``; ``mae`` = mean
    |predicted − observed| (includes the held-out side's noise, so compare estimators, not to 0);
    ``predicted_sd`` = spread of the predictions (on ``retain`` / ``val``: the noise a forget effect adds there).
    """
    n_train = observed.n_train
    n_points = observed.n_points
    rng = np.random.default_rng(seed)
    usable = observed.identified() & fitted.identified()
    rows = []
    for k in sorted(set(int(k) for k in group_sizes)):
        if not 1 <= k <= n_train:
            continue
        order = rng.permutation(n_train)
        n_groups = n_train // k
        group_of = np.full(n_train, -1, dtype=np.int64)
        group_of[order[: n_groups * k]] = np.repeat(np.arange(n_groups), k)
        complete = np.ones(n_groups, dtype=bool)
        np.logical_and.at(complete, group_of[group_of >= 0], usable[group_of >= 0])
        group_of[(group_of >= 0) & ~complete[np.maximum(group_of, 0)]] = -1
        pred, obs = fitted.member_effects(group_of), observed.member_effects(group_of)
        rows.append({"group_size": k, "points": "forget", **_agreement(pred, obs, with_scale=True)})
        chosen = [np.flatnonzero(group_of == g) for g in np.flatnonzero(complete)[:max_groups]]
        if not chosen:
            continue
        pred_g = np.asarray(fitted.group_effects(chosen), dtype=np.float64)
        obs_g = observed.group_effects(chosen)
        retain = np.ones((len(chosen), n_points), dtype=bool)
        retain[:, n_train:] = False
        for row, members in enumerate(chosen):
            retain[row, members] = False
        val = np.zeros_like(retain)
        val[:, n_train:] = True
        for name, keep in (("retain", retain), ("val", val)):
            if keep.any():
                rows.append({"group_size": k, "points": name, **_agreement(pred_g[keep], obs_g[keep], False)})
    return rows


def forget_effect(weights: np.ndarray, forget_indices: np.ndarray) -> np.ndarray:
    """``Σ_{i∈F} β_i(x)`` for every point x: shape [n_points(, C)] (the datamodel-predicted effect of F)."""
    w = np.asarray(weights)
    f = _check_forget(forget_indices, w.shape[0])
    return w[f].sum(axis=0, dtype=np.float64)


def forget_effect_from_pool(masks: np.ndarray, outputs: np.ndarray, forget: np.ndarray, l2: float,
                            estimator: str = "ridge") -> np.ndarray:
    """``Σ_{i∈F} β_i(x)`` of the datamodels of ``estimator``, without materialising ``β``.

    The sum over F of the coefficients is ``aᵀ Y`` with ``a = Σ_{i∈F} A[:, i]`` an M-vector
    (:func:`attribution_weights`): for ridge in the dual form an M×M solve, for ``diff_means`` a pass over the F
    columns of the masks, so datamodel matching at CIFAR-10 scale never builds the 50,000 × 60,000 (× 10 logits)
    weight matrix.  Same values as ``forget_effect(fit_datamodel_weights(masks, outputs, l2, estimator)[0], forget)``.
    """
    return PoolAttribution(masks, outputs, estimator, l2).effect(forget)


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
    method: Literal["auto", "exact", "iterative"] = "auto",
    seed: int = 0,
) -> np.ndarray:
    """Train points ranked along a principal component of the train×train datamodel matrix (spec §4 sets 4–9).

    The matrix is ``weights_train_by_train[i, x] = β_i(x)`` (rows = train points i whose inclusion is varied,
    columns = target train points x).  It is read as a data set with one observation per *target* x and one feature
    per train point i, i.e. ``A = weightsᵀ`` [n_x, n_i]; each feature is centred over the targets, and the principal
    axes are the right singular vectors of the centred A.  The score of train point i along component k (1-based)
    is its loading ``v_k[i]``; the sign of ``v_k`` is fixed so that its largest-magnitude loading is positive (ties:
    the first).

    ``mode="top"``: the ``size`` highest scores; ``"top_bottom"``: the ``size/2`` highest and ``size/2`` lowest
    (``size`` even).  Ties in score rank the lower index first.  Returns sorted int64 indices.

    ``method="exact"`` uses a full SVD; ``"iterative"`` ARPACK (``scipy.sparse.linalg.svds``, Lanczos iterations run
    to machine-precision tolerance) on a centring linear operator that never forms a centred copy or a Gram
    matrix, for the 50,000 × 50,000 CIFAR-10 case (memory-mapped input works); ``"auto"`` picks exact up to 4·10⁶
    entries.  The iterative solver converges however small the gap to the next singular value is (a fixed number of
    subspace iterations does not).
    """
    w = np.asarray(weights_train_by_train)  # a memory-mapped matrix stays mapped
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
        method = "exact" if w.size <= 4_000_000 else "iterative"
    if method == "exact":
        a = np.asarray(w, dtype=np.float64).T.copy()
        a -= a.mean(axis=0)
        v = np.linalg.svd(a, full_matrices=False)[2][component - 1]
    elif method == "iterative":
        v = _centred_right_vector(w.T, component, seed)
    else:
        raise ValueError(f"method must be 'auto', 'exact' or 'iterative', got {method!r}")
    if v[np.argmax(np.abs(v))] < 0:
        v = -v
    order = np.argsort(-v, kind="stable")
    if mode == "top":
        chosen = order[:size]
    else:
        half = size // 2
        chosen = np.concatenate([order[:half], np.argsort(v, kind="stable")[:half]])
    return np.sort(chosen).astype(np.int64)


def _centred_right_vector(a: np.ndarray, component: int, seed: int) -> np.ndarray:
    """The ``component``-th right singular vector of ``a`` with its columns centred, without centring a copy.

    Centred products: ``(A − 1μᵀ) v = A v − 1 (μᵀ v)`` and ``(A − 1μᵀ)ᵀ u = Aᵀ u − μ (1ᵀ u)``, wrapped in a
    ``LinearOperator`` for ``scipy.sparse.linalg.svds`` (ARPACK, ``tol=0``: machine precision).  The start vector is
    seeded, so the result is reproducible.
    """
    from scipy.sparse.linalg import LinearOperator, svds

    n_rows, n_cols = a.shape
    mu = np.asarray(a.mean(axis=0, dtype=np.float64))

    def times(v: np.ndarray) -> np.ndarray:  # centred A @ v (v: a vector or a block of vectors)
        v = np.asarray(v, dtype=np.float64)
        return np.asarray(a @ v, dtype=np.float64) - np.multiply.outer(np.ones(n_rows), mu @ v)

    def t_times(u: np.ndarray) -> np.ndarray:  # centred Aᵀ @ u
        u = np.asarray(u, dtype=np.float64)
        return np.asarray(a.T @ u, dtype=np.float64) - np.multiply.outer(mu, u.sum(axis=0))

    op = LinearOperator((n_rows, n_cols), matvec=times, rmatvec=t_times, matmat=times, rmatmat=t_times,
                        dtype=np.float64)
    if component >= min(n_rows, n_cols):  # ARPACK needs k < min(shape): the last component from a dense SVD
        dense = np.asarray(a, dtype=np.float64) - mu
        return np.linalg.svd(dense, full_matrices=False)[2][component - 1]
    v0 = np.random.default_rng(seed).standard_normal(min(n_rows, n_cols))
    _, s, vt = svds(op, k=component, tol=0, v0=v0, solver="arpack")
    return vt[np.argsort(-s)[component - 1]]


def fit_quality(masks: np.ndarray, margins: np.ndarray, estimator: str | None, l2: float, holdout_models: int,
                group_sizes: list[int], seed: int, n_train: int, imported: MatrixAttribution | None = None):
    """The fit-quality table (``fit_quality.csv``, a DataFrame): forget effects of groups of train points,
    predicted vs observed on held-out pool models (``masks [M, n_train]``, ``margins [M, P]``).

    The last ``holdout_models`` pool models are held out; ``estimator`` (``auto`` decided on the whole pool, as
    for the effects the methods use) is fitted on the others. An ``imported`` attribution is judged against the
    whole pool instead. Columns: ``estimator``, ``l2``, ``n_fit_models``, ``n_holdout_models``, those of
    :func:`effect_calibration` and ``output_correlation`` (see ``config/README.md``).
    """
    import pandas as pd

    if estimator is not None:
        estimator = resolve_estimator(estimator, len(masks), n_train)
    if imported is not None:
        fitted = imported
        n_fit, held = 0, slice(None)
        output_corr = None
    else:
        n_fit = len(masks) - holdout_models
        held = slice(n_fit, None)
        fitted = PoolAttribution(masks[:n_fit], margins[:n_fit], estimator, l2)
        output_corr = pearson(fitted.predict(masks[held]), np.asarray(margins[held], dtype=np.float64))
    observed = PoolAttribution(masks[held], margins[held], "diff_means")
    rows = effect_calibration(fitted, observed, group_sizes, seed)
    for row in rows:
        points = slice(n_train, None) if row["points"] == "val" else slice(0, n_train)
        row["output_correlation"] = float(np.nanmean(output_corr[points])) if output_corr is not None else np.nan
    frame = pd.DataFrame(rows)
    frame.insert(0, "n_holdout_models", observed.n_models)
    frame.insert(0, "n_fit_models", n_fit)
    frame.insert(0, "l2", np.nan if imported is not None or fitted.estimator == "diff_means" else l2)
    frame.insert(0, "estimator", fitted.estimator)
    return frame
