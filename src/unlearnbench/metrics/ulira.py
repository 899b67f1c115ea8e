"""U-LiRA (Hayes et al., arXiv 2403.01218) as the public benchmark runs it (benchmark spec §7).

The experiment, in the terms of this module:

1. ``pool_masks``: M pool models, each trained on a seeded random half of the train set.
2. ``make_requests``: for every pool model, K unlearning requests, each a random subset of the target-pool points
   that model trained on.  Running the unlearning method on every (model, request) pair gives R = M·K *unlearned
   runs*, each described by its margins on every point, the points it was asked to forget and its model's training
   mask.
3. ``ulira_accuracy``: some runs are targets, the rest shadows.  A per-example Gaussian likelihood-ratio test,
   fitted on the shadows, tries to tell a target's forgotten points from target-pool points it never trained on.
   Accuracy 0.5 means the unlearned runs are indistinguishable from never having trained on the point (perfect
   unlearning); 1.0 means every forgotten point is recognised.

Everything is pure numpy over arrays, so the same code scores GPU-produced margins and synthetic tests.
"""

from __future__ import annotations

import numpy as np

from ..plan import pool_mask  # the pool's masks are part of the run's plan (seeded with it)

__all__ = [
    "MIN_STD",
    "gaussian_forgotten_probability",
    "make_requests",
    "pool_mask",
    "pool_masks",
    "shadow_gaussians",
    "summarize_ulira",
    "ulira_accuracy",
]

# Floor for the fitted standard deviations.  A sample of identical margins (one shadow, or a method that maps
# every model to the same output) has std 0, and the Gaussian density would divide by zero.  1e-6 is far below
# any meaningful margin spread (margins are O(1)..O(10)) yet keeps the log-densities finite, so such a Gaussian
# behaves as an (almost) point mass: a margin is attributed to whichever mean it is closer to in units of the
# floored stds.
MIN_STD = 1e-6


def pool_masks(n_train: int, n_models: int, seed: int) -> np.ndarray:
    """Masks ``bool [n_models, n_train]`` of pool models ``0..n_models-1`` (see :func:`pool_mask`)."""
    if n_models < 1:
        raise ValueError(f"n_models must be positive, got {n_models}")
    return np.stack([pool_mask(n_train, m, seed) for m in range(n_models)])


def make_requests(
    masks: np.ndarray, target_pool: np.ndarray, n_requests: int, request_size: int, seed: int
) -> np.ndarray:
    """Unlearning requests ``int64 [n_models, n_requests, request_size]`` (sorted point indices per request).

    Request ``k`` of model ``m`` is a uniform random subset (without replacement) of the target-pool points that
    ``m`` trained on, drawn with ``numpy.random.default_rng([seed, m])`` (requests of one model from one stream, so
    a model's requests are reproducible independently of the other models).  Requests of the same model are drawn
    independently of each other and may overlap.  Raises ValueError when a model trained on fewer than
    ``request_size`` target-pool points.
    """
    masks = np.asarray(masks, dtype=bool)
    pool = np.unique(np.asarray(target_pool, dtype=np.int64))
    if masks.ndim != 2:
        raise ValueError(f"masks must be 2-D [n_models, n_train], got shape {masks.shape}")
    if pool.size == 0 or pool[0] < 0 or pool[-1] >= masks.shape[1]:
        raise ValueError("target_pool must be non-empty indices into the train set")
    if n_requests < 1 or request_size < 1:
        raise ValueError(f"n_requests and request_size must be positive, got {n_requests}, {request_size}")
    out = np.empty((masks.shape[0], n_requests, request_size), dtype=np.int64)
    for m in range(masks.shape[0]):
        available = pool[masks[m, pool]]
        if available.size < request_size:
            raise ValueError(
                f"pool model {m} trained on only {available.size} target-pool points; "
                f"requests need {request_size}"
            )
        rng = np.random.default_rng([seed, m])
        for k in range(n_requests):
            out[m, k] = np.sort(rng.choice(available, request_size, replace=False))
    return out


def gaussian_forgotten_probability(
    margin: np.ndarray,
    mean_in: np.ndarray,
    std_in: np.ndarray,
    mean_out: np.ndarray,
    std_out: np.ndarray,
    min_std: float = MIN_STD,
) -> np.ndarray:
    """``N(m; A) / (N(m; A) + N(m; B))`` with A = (mean_in, std_in) ("forgotten"), B = (mean_out, std_out).

    Computed as ``exp(log N_A - logaddexp(log N_A, log N_B))``: densities of a margin far in a tail underflow to
    0 in linear space (0/0), their logs do not.  Stds are floored at ``min_std`` (see ``MIN_STD``).  Broadcasts.
    """
    s_in = np.maximum(np.asarray(std_in, dtype=np.float64), min_std)
    s_out = np.maximum(np.asarray(std_out, dtype=np.float64), min_std)
    m = np.asarray(margin, dtype=np.float64)
    log_a = -0.5 * ((m - mean_in) / s_in) ** 2 - np.log(s_in)
    log_b = -0.5 * ((m - mean_out) / s_out) ** 2 - np.log(s_out)
    return np.exp(log_a - np.logaddexp(log_a, log_b))


def shadow_gaussians(
    margins: np.ndarray,
    forgotten: np.ndarray,
    trained: np.ndarray,
    max_shadows: int = 300,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-point Gaussians fitted to shadow runs: ``(mean_in, std_in, mean_out, std_out, n_used)``, each [n_points].

    Rows are shadow runs.  For point x the "in" sample is the margins of runs that trained on x and then forgot it,
    the "out" sample those of runs that never trained on x.  Both are cut to the same size
    ``n_used = min(#in, #out, max_shadows)`` by keeping the first ``n_used`` runs of each in row order (a
    deterministic choice; runs are exchangeable).  Mean = sample mean, std = population std (ddof=0).  Points with
    ``n_used == 0`` get NaN parameters.
    """
    m = np.asarray(margins, dtype=np.float64)
    ins = np.asarray(forgotten, dtype=bool) & np.asarray(trained, dtype=bool)
    outs = ~np.asarray(trained, dtype=bool)
    n_used = np.minimum(np.minimum(ins.sum(axis=0), outs.sum(axis=0)), max_shadows)
    stats = []
    for sel in (ins, outs):
        keep = sel & (np.cumsum(sel, axis=0) <= n_used)  # the first n_used selected runs of every column
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(keep, m, 0.0).sum(axis=0) / n_used
            var = np.where(keep, (m - mean) ** 2, 0.0).sum(axis=0) / n_used
        stats += [mean, np.sqrt(var)]
    return stats[0], stats[1], stats[2], stats[3], n_used


def ulira_accuracy(
    margins: np.ndarray,
    forgotten: np.ndarray,
    trained: np.ndarray,
    target_runs: np.ndarray,
    target_pool: np.ndarray,
    max_shadows: int = 300,
    seed: int = 0,
) -> np.ndarray:
    """U-LiRA accuracy of every target run, float64 [n_targets] (spec §7).

    Inputs describe R unlearned runs: ``margins [R, n_points]``, ``forgotten bool [R, n_points]`` (points that run
    was asked to forget), ``trained bool [R, n_points]`` (its original model's training mask, padded with False for
    validation points if any).  ``target_runs`` are row indices; every other row is a shadow.

    For target t: positives = its forgotten points; negatives = as many target-pool points t never trained on,
    chosen with ``numpy.random.default_rng([seed, t])`` (all of them when fewer exist).  Each point is scored with
    the Gaussians of ``shadow_gaussians`` (fitted once on the shadows, which are the same for every target) and
    predicted "forgotten" when the probability of ``gaussian_forgotten_probability`` exceeds 0.5.  Accuracy is over
    positives and negatives together.

    Points without shadow evidence on one side (no shadow forgot x, or every shadow trained on x) cannot be scored:
    they are dropped before negatives are drawn, so the classes stay balanced whenever enough negatives exist.  A
    target with no scorable point gets NaN.
    """
    m = np.asarray(margins)
    fg = np.asarray(forgotten, dtype=bool)
    tr = np.asarray(trained, dtype=bool)
    targets = np.asarray(target_runs, dtype=np.int64).ravel()
    pool = np.unique(np.asarray(target_pool, dtype=np.int64))
    if m.ndim != 2 or fg.shape != m.shape or tr.shape != m.shape:
        raise ValueError(f"margins, forgotten, trained must share one 2-D shape, got {m.shape}, {fg.shape}, {tr.shape}")
    if (fg & ~tr).any():
        raise ValueError("a run 'forgot' a point its model never trained on")
    if targets.size == 0 or targets.min() < 0 or targets.max() >= m.shape[0] or np.unique(targets).size != targets.size:
        raise ValueError("target_runs must be distinct row indices")
    if pool.size and (pool[0] < 0 or pool[-1] >= m.shape[1]):
        raise ValueError("target_pool indices out of range")
    if max_shadows < 1:
        raise ValueError(f"max_shadows must be positive, got {max_shadows}")
    shadows = np.ones(m.shape[0], dtype=bool)
    shadows[targets] = False
    mean_in, std_in, mean_out, std_out, n_used = shadow_gaussians(m[shadows], fg[shadows], tr[shadows], max_shadows)
    scorable = n_used > 0
    pool = pool[scorable[pool]]

    acc = np.full(targets.size, np.nan)
    for j, t in enumerate(targets):
        pos = np.flatnonzero(fg[t] & scorable)
        candidates = pool[~tr[t, pool]]
        rng = np.random.default_rng([seed, int(t)])
        neg = rng.choice(candidates, min(pos.size, candidates.size), replace=False) if candidates.size else candidates
        points = np.concatenate([pos, neg])
        if points.size == 0:
            continue
        p = gaussian_forgotten_probability(
            m[t, points], mean_in[points], std_in[points], mean_out[points], std_out[points]
        )
        truth = np.arange(points.size) < pos.size
        acc[j] = np.mean((p > 0.5) == truth)
    return acc


def summarize_ulira(accuracies: np.ndarray) -> dict[str, float]:
    """Mean and population std (ddof=0) of the per-target accuracies, ignoring NaN targets; and their count."""
    a = np.asarray(accuracies, dtype=np.float64).ravel()
    a = a[~np.isnan(a)]
    if a.size == 0:
        return {"mean": float("nan"), "std": float("nan"), "n_targets": 0}
    return {"mean": float(a.mean()), "std": float(a.std()), "n_targets": int(a.size)}
