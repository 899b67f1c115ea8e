"""The NeurIPS 2023 unlearning-challenge ε and score (benchmark spec §8; Triantafillou et al., arXiv 2406.09073).

Per forget point, an attacker sees one output (here the margin, which is exactly the challenge's "logit-scaled
confidence" log p_y − log(1 − p_y)) of either an unlearned or a retrained model and guesses which.  Every decision
rule gives a false-positive and a false-negative rate; (ε, δ)-unlearning bounds both, so each rule certifies a lower
bound ``max(log((1 − δ − FPR)/FNR), log((1 − δ − FNR)/FPR))`` on ε.  The point's ε is the largest bound over the
rule families, as in the challenge's released metric (google-deepmind/unlearning_evaluation, ``metric.py``):

- **positive class**: for single thresholds, whichever sample (unlearned or retrained) has the larger median;
  for intervals, the "peakier" sample, i.e. the one with the smaller range (max − min; on a tie, the sample that is
  not the single-threshold positive, as the released code does);
- **single threshold** t: predict positive when ``v >= t``;
- **interval** [l, r]: predict "peakier" when ``l <= v <= r``.  The released code sweeps a 0.01-spaced grid of
  right ends in ``[min_peaky + w − b, max_peaky + b]`` and widths ``r − l`` in ``[w − b, w + b]`` (w = the peakier
  sample's range, b = 2).

Deviation (documented because it can change numbers slightly): instead of grids with 0.01 spacing this module
enumerates the partitions of the pooled sample values exactly: single thresholds at every pooled value, intervals
between every pair of pooled values, keeping an interval when some grid interval of the released family (at
infinite resolution) selects the same values (``interval_buffer`` = b; ``None`` keeps every interval).  The result
is the released value up to the grid's resolution (the grid can miss a partition that needs a threshold between
values less than 0.01 apart, so this module's ε is never lower and usually equal).

Per-rule conventions, all from the released code:

- FPR = FNR = 0 (perfect separation): ε = ∞ (then capped);
- exactly one of FPR, FNR = 0: the rule is discarded (with finite samples a rule that makes no error on one class
  but some on the other is mostly evidence of too few samples; counting it as ∞ would give the cap even for
  identical distributions, whose extreme thresholds always have FNR = 0 or FPR = 0);
- a logarithm of a non-positive number is NaN and ignored; if both are, the rule is discarded; bounds below 0 are 0;
- a point whose samples have ranges in ratio below ``peaky_ratio`` (0.01) gets the cap outright (a near-constant
  output of one family is a sure tell that threshold sweeps can miss).

Conventions of this module where the released code has none: a point with no valid rule (e.g. both samples the same
constant) gets ε = 0 (no evidence of a difference; the released code asserts there); a point with a non-finite
margin gets the cap (a diverged model is trivially told apart, consistent with KLOM's saturation of such points).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["DELTA", "EPSILON_CAP", "epsilon_per_point", "final_score", "forget_score"]

DELTA = 1e-5
EPSILON_CAP = 50.0

# Interval attacks cost n^2 entries per point (n = pooled sample size); points are processed in chunks of about
# this many interval entries so the scratch arrays stay around 8 MB each.
_CHUNK_ELEMENTS = 1 << 20


def epsilon_per_point(
    unlearned: np.ndarray,
    retrained: np.ndarray,
    delta: float = DELTA,
    cap: float = EPSILON_CAP,
    *,
    interval_buffer: float | None = 2.0,
    peaky_ratio: float = 0.01,
) -> np.ndarray:
    """ε of every point from ``unlearned [Mu, P]`` and ``retrained [Mr, P]`` outputs: float64 [P] in [0, cap].

    See the module docstring for the attack families and conventions.  Cost: O((Mu + Mr)^2) per point for the
    interval family (about 1.2 s per thousand points at Mu = Mr = 100 on one core).
    """
    u = np.asarray(unlearned, dtype=np.float64)
    r = np.asarray(retrained, dtype=np.float64)
    if u.ndim != 2 or r.ndim != 2 or u.shape[1] != r.shape[1]:
        raise ValueError(f"expected [Mu, P] and [Mr, P] with the same P, got {u.shape} and {r.shape}")
    if u.shape[0] < 1 or r.shape[0] < 1:
        raise ValueError("each sample needs at least one model")
    if not 0 <= delta < 1 or cap <= 0:
        raise ValueError(f"need 0 <= delta < 1 and cap > 0, got delta={delta}, cap={cap}")
    n = u.shape[0] + r.shape[0]
    out = np.empty(u.shape[1], dtype=np.float64)
    chunk = max(1, _CHUNK_ELEMENTS // (n * n))
    for start in range(0, u.shape[1], chunk):
        sl = slice(start, start + chunk)
        out[sl] = _epsilon_chunk(u[:, sl], r[:, sl], delta, cap, interval_buffer, peaky_ratio)
    return out


def _rule_table(n_pos: int, n_neg: int, delta: float) -> np.ndarray:
    """ε bound of a rule by its error counts: ``table[fn, fp]`` with FNR = fn/n_pos, FPR = fp/n_neg; NaN = discarded.

    Rates are multiples of 1/n, so every rule's bound is looked up here instead of taking four logarithms per rule.
    """
    fnr = (np.arange(n_pos + 1) / n_pos)[:, None]
    fpr = (np.arange(n_neg + 1) / n_neg)[None, :]
    with np.errstate(invalid="ignore", divide="ignore"):
        e1 = np.log(1.0 - delta - fpr) - np.log(fnr)
        e2 = np.log(1.0 - delta - fnr) - np.log(fpr)
    eps = np.maximum(np.fmax(e1, e2), 0.0)  # NaN only when both bounds are NaN (log of a negative number)
    fpr0 = np.broadcast_to(fpr == 0, eps.shape)
    fnr0 = np.broadcast_to(fnr == 0, eps.shape)
    eps[fpr0 ^ fnr0] = np.nan
    eps[fpr0 & fnr0] = np.inf
    return eps


def _epsilon_chunk(
    u: np.ndarray, r: np.ndarray, delta: float, cap: float, buffer: float | None, peaky_ratio: float
) -> np.ndarray:
    mu, mr = u.shape[0], r.shape[0]
    n, c = mu + mr, u.shape[1]
    finite = np.isfinite(u).all(axis=0) & np.isfinite(r).all(axis=0)
    u = np.where(finite, u, 0.0)
    r = np.where(finite, r, 0.0)

    # Single-threshold positive: the larger median ("retrained" when strictly larger, as released).
    r_pos = np.median(r, axis=0) > np.median(u, axis=0)
    range_u, range_r = np.ptp(u, axis=0), np.ptp(r, axis=0)
    largest, smallest = np.maximum(range_u, range_r), np.minimum(range_u, range_r)
    with np.errstate(invalid="ignore", divide="ignore"):
        peaky = (largest > 0) & (smallest / largest < peaky_ratio)
    # Interval positive ("Q"): the sample with the smaller range; a tie goes to the single-threshold negative.
    q_is_r = np.where(np.where(r_pos, range_r < range_u, range_u < range_r), r_pos, ~r_pos)

    # Rule bounds by error counts, for "unlearned positive" and "retrained positive", in one flat table with a
    # trailing NaN slot for absent rules: index = offset + fn * stride + fp.
    t_u, t_r = _rule_table(mu, mr, delta), _rule_table(mr, mu, delta)
    table = np.concatenate([t_u.ravel(), t_r.ravel(), [np.nan]])
    absent = table.size - 1

    def lookup(pos_is_r: np.ndarray, fn: np.ndarray, fp: np.ndarray, present: np.ndarray | bool = True) -> np.ndarray:
        offset = np.where(pos_is_r, t_u.size, 0)
        stride = np.where(pos_is_r, mu + 1, mr + 1)  # columns of the table = n_neg + 1
        return table[np.where(present, offset + fn * stride + fp, absent)]

    pooled = np.concatenate([u, r], axis=0)
    order = np.argsort(pooled, axis=0, kind="stable")
    sv = np.take_along_axis(pooled, order, axis=0)  # sorted pooled values [n, c]
    cu = np.zeros((n + 1, c), dtype=np.int64)
    np.cumsum(order < mu, axis=0, out=cu[1:])  # cu[j] = unlearned values among the j smallest
    idx = np.arange(n)[:, None]
    new_group = np.ones((n, c), dtype=bool)
    new_group[1:] = sv[1:] != sv[:-1]
    first = np.maximum.accumulate(np.where(new_group, idx, 0), axis=0)  # first index of each value's tie group
    ends_group = np.ones((n, c), dtype=bool)
    ends_group[:-1] = new_group[1:]
    last = np.minimum.accumulate(np.where(ends_group, idx, n - 1)[::-1], axis=0)[::-1]
    cols = np.arange(c)
    lt_u = cu[first, cols]  # unlearned values < sv[k]
    le_u = cu[last + 1, cols]  # unlearned values <= sv[k]
    lt_r, le_r = first - lt_u, last + 1 - le_u

    # Single thresholds t = sv[k], positive when v >= t: false negatives = positives below t, false positives =
    # negatives at or above t.
    fn = np.where(r_pos, lt_r, lt_u)
    fp = np.where(r_pos, mu - lt_u, mr - lt_r)
    best = np.fmax.reduce(lookup(r_pos, fn, fp), axis=0)

    # Intervals [sv[a], sv[b]] (a <= b), "Q" inside: false negatives = Q outside, false positives = non-Q inside.
    lt_q, le_q = np.where(q_is_r, lt_r, lt_u), np.where(q_is_r, le_r, le_u)
    lt_nq, le_nq = np.where(q_is_r, lt_u, lt_r), np.where(q_is_r, le_u, le_r)
    n_q = np.where(q_is_r, mr, mu)
    fn = n_q - (le_q[None, :, :] - lt_q[:, None, :])  # [a, b, c]
    fp = le_nq[None, :, :] - lt_nq[:, None, :]
    valid = idx[:, :, None] <= idx[None, :, :]
    if buffer is not None:
        w = smallest
        q_min = np.where(q_is_r, r.min(axis=0), u.min(axis=0))
        q_max = np.where(q_is_r, r.max(axis=0), u.max(axis=0))
        prev = np.where(first > 0, np.take_along_axis(sv, np.maximum(first - 1, 0), axis=0), -np.inf)
        nxt = np.where(last < n - 1, np.take_along_axis(sv, np.minimum(last + 1, n - 1), axis=0), np.inf)
        r_lo = np.maximum(sv, q_min + w - buffer)  # right ends allowed for b: [r_lo, r_hi]
        r_hi = np.minimum(nxt, q_max + buffer)
        # Some l in (prev_a, sv_a] and r in [r_lo_b, r_hi_b] with r - l in [w - buffer, w + buffer].
        valid = valid & (r_lo <= r_hi)[None, :, :]
        valid &= r_lo[None, :, :] - sv[:, None, :] <= w + buffer
        valid &= r_hi[None, :, :] - prev[:, None, :] > w - buffer
    best = np.fmax(best, np.fmax.reduce(lookup(q_is_r, fn, fp, valid).reshape(n * n, c), axis=0))

    eps = np.where(np.isnan(best), 0.0, best)
    eps[peaky | ~finite] = np.inf
    return np.clip(eps, 0.0, cap)


def forget_score(eps: np.ndarray, n_models: int | None = None, bucket_width: float = 0.5) -> float:
    """Mean bucket value of the per-point ε (spec §8): bucket ``k = floor(ε / bucket_width)`` is worth ``2^-k``.

    So ε in [0, 0.5) scores 1, [0.5, 1) scores 1/2, [1, 1.5) scores 1/4, ...; a score of 1 is perfect.  The released
    code also stops the buckets where an estimate stops being meaningful with its sample size: with ``n_models``
    given, only buckets ending at or below ``ceil(ln(n_models − 1))`` exist and ε beyond them scores 0 (pass the
    number of unlearned models, as the released code does; 512 models give 14 buckets, ε ≥ 7 scoring 0).  Without
    ``n_models`` the buckets continue (the capped ε = 50 is then worth 2^-100, i.e. 0 in practice).
    """
    e = np.asarray(eps, dtype=np.float64).ravel()
    if e.size == 0:
        raise ValueError("no ε values to score")
    if np.isnan(e).any() or (e < 0).any():
        raise ValueError("ε values must be non-negative numbers")
    k = np.floor(e / bucket_width)
    value = np.exp2(-np.minimum(k, 1100.0))
    if n_models is not None:
        if n_models < 2:
            raise ValueError(f"n_models must be at least 2, got {n_models}")
        n_buckets = math.floor(math.ceil(math.log(n_models - 1)) / bucket_width)
        value = np.where(k < n_buckets, value, 0.0)
    return float(value.mean())


def final_score(
    forget_score: float,
    retain_acc_unlearned: float | np.ndarray,
    retain_acc_retrained: float | np.ndarray,
    test_acc_unlearned: float | np.ndarray,
    test_acc_retrained: float | np.ndarray,
) -> float:
    """``forget_score × (RA_unlearned / RA_retrained) × (TA_unlearned / TA_retrained)`` (challenge final score).

    Accuracies may be per-model arrays; each is averaged over its models first (as released).
    """
    rau, rar, tau, tar = (float(np.mean(a)) for a in (
        retain_acc_unlearned, retain_acc_retrained, test_acc_unlearned, test_acc_retrained))
    if rar <= 0 or tar <= 0:
        raise ValueError("retrained accuracies must be positive")
    return float(forget_score) * (rau / rar) * (tau / tar)
