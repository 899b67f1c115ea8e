"""The scoring core: margins (and argmax correctness) of unlearned and oracle models in, one row per group out.

One function, :func:`score_margins`, used by the workflow's ``score_klom`` job (once per snapshot) and by
``unlearnbench score`` (margins from any framework), so both compute the same numbers:

- per-point KLOM (:mod:`unlearnbench.metrics.klom`; benchmark spec §2) and, per group (forget F, retain = train ∖ F,
  validation), its percentiles (numpy's linear interpolation), mean and std (:mod:`unlearnbench.metrics.groups`);
- a bootstrap interval of the group's P95 over model draws (:mod:`unlearnbench.metrics.bootstrap`, percentile
  bootstrap re-centred on the estimate; a rough indication of model-draw noise, not a calibrated interval);
- per-group argmax accuracy of the unlearned models (``accuracy``) and of the oracles (``oracle_accuracy``): the
  fraction of (model, point) pairs whose largest logit is the true class, i.e. the mean over models of each
  model's accuracy on the group's points (all models see the same points). NaN where correctness is unknown;
- the NeurIPS'23 challenge ε of the forget points, its bucketed forget score and the final score
  (:mod:`unlearnbench.metrics.epsilon`; Triantafillou et al., arXiv 2406.09073, spec §8): forget score ×
  (retain accuracy ratio) × (test accuracy ratio), each ratio unlearned / retrained, with argmax accuracies
  averaged over models first (as the challenge's released code does). The validation split is the test set.
  In the workflow it is a per-run metric (:mod:`unlearnbench.run_metrics`, :func:`epsilon_row`), as any other.

Conventions where the sources have none: a run with a non-finite margin (a diverged model) gets final score 0 and
no bootstrap interval (every resample containing that model saturates); the final score is NaN when an accuracy
is unknown (margins without logits behind them, e.g. DM-direct's predicted margins or imported published margins),
when there are no validation points, or when the retrained models are never right on retain or validation points
(the ratios are undefined). A diverged model's correctness is stored as all False (see ``unlearning``), so it
lowers ``accuracy`` like any broken classifier.

Only numpy is imported here: scoring jobs start fast.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from .metrics import epsilon as eps_metric
from .metrics.bootstrap import ALPHA, klom_percentile_ci
from .metrics.groups import group_masks, group_stats
from .metrics.klom import klom as klom_per_point
from .metrics.klom import saturation
from .run_metrics import RUN_METRICS
from .run_metrics import compute as compute_run_metric

__all__ = ["EPSILON_COLUMNS", "GROUPS", "KlomOptions", "RunScores", "ScoredSnapshot", "Scores", "Snapshots",
           "epsilon_row", "group_accuracy", "score_margins", "score_snapshots", "snapshot_line", "snapshot_rows"]

log = logging.getLogger(__name__)

GROUPS = ("forget", "retain", "val")
EPSILON_COLUMNS = RUN_METRICS["epsilon"].columns


@dataclass(frozen=True)
class KlomOptions:
    """The KLOM estimator's settings (defaults: the published estimator, KL(unlearned ‖ oracle))."""

    bins: int = 20
    eps: float = 1e-5
    clip: tuple[float, float] = (-100.0, 100.0)
    direction: str = "unlearned-oracle"
    inclusive_last_bin: bool = False

    @classmethod
    def from_config(cls, klom: dict) -> KlomOptions:
        """From the config's ``klom`` mapping (other keys, e.g. ``percentiles``, are ignored)."""
        return cls(bins=int(klom["bins"]), eps=float(klom["eps"]), clip=tuple(klom["clip"]),
                   direction=klom["direction"], inclusive_last_bin=bool(klom.get("inclusive_last_bin", False)))

    def kwargs(self) -> dict:
        return asdict(self)


@dataclass
class Scores:
    klom: np.ndarray  # per-point KLOM, float64 [P]
    rows: list[dict]  # one per non-empty group, in GROUPS order
    epsilon: dict | None  # EPSILON_COLUMNS of the forget points, or None when not asked for
    masks: dict[str, np.ndarray] | None = None  # GROUPS -> bool [P], the points of each group


def group_accuracy(correct: np.ndarray | None, mask: np.ndarray) -> np.ndarray | None:
    """Per-model argmax accuracy on the points of ``mask``: ``[M]`` float64, or None when unknown or empty."""
    if correct is None or not np.any(mask):
        return None
    return np.asarray(correct[:, mask], dtype=np.float64).mean(axis=1)


def _mean_or_nan(values: np.ndarray | None) -> float:
    return float("nan") if values is None else float(values.mean())


def score_margins(
    unlearned: np.ndarray,
    oracle: np.ndarray,
    forget: np.ndarray,
    n_train: int,
    *,
    klom: KlomOptions = KlomOptions(),
    percentiles: Sequence[float] = (95, 99),
    bootstrap: int = 0,
    alpha: float = ALPHA,
    seed: int = 0,
    epsilon: dict | None = None,
    correct_unlearned: np.ndarray | None = None,
    correct_oracle: np.ndarray | None = None,
) -> Scores:
    """Score ``unlearned [Mu, P]`` against ``oracle [Mo, P]`` margins (train points first, then validation).

    ``forget``: train indices (in ``[0, n_train)``, no repeats); ``bootstrap``: resamples of the P95 interval
    (0: none; ``seed`` seeds them); ``epsilon``: ``{"delta", "cap"}`` of the challenge ε, or None to skip it;
    ``correct_*``: bool ``[M, P]`` argmax correctness, or None when unknown.

    Each row: ``group, n_points``, ``p<q>`` for every percentile, ``mean, std``, with ``bootstrap`` also
    ``p95_low, p95_high`` (NaN for a run with non-finite margins), then ``accuracy, oracle_accuracy`` (NaN when
    unknown). A group without points (no validation points) has no row.
    """
    u, o = np.asarray(unlearned), np.asarray(oracle)
    if u.ndim != 2 or o.ndim != 2 or u.shape[1] != o.shape[1]:
        raise ValueError(f"expected [models, points] margins with the same points, got {u.shape} and {o.shape}")
    n_points = u.shape[1]
    if not 0 < n_train <= n_points:
        raise ValueError(f"n_train must be in [1, {n_points}] (the margins' points), got {n_train}")
    forget = np.asarray(forget)
    if forget.ndim != 1 or forget.size == 0 or forget.dtype.kind not in "iu":
        raise ValueError(f"forget must be a non-empty 1-D array of integer indices, got {forget.dtype} {forget.shape}")
    if forget.min() < 0 or forget.max() >= n_train:
        raise ValueError(f"forget indices must be train indices in [0, {n_train}), got {forget.min()}..{forget.max()}")
    if np.unique(forget).size != forget.size:
        raise ValueError(f"forget indices repeat: {forget.size - np.unique(forget).size} duplicate(s)")
    for name, flags, margins in (("correct_unlearned", correct_unlearned, u), ("correct_oracle", correct_oracle, o)):
        if flags is not None and (np.shape(flags) != margins.shape or np.asarray(flags).dtype != bool):
            raise ValueError(f"{name} must be bool {margins.shape} like its margins, got "
                             f"{np.asarray(flags).dtype} {np.shape(flags)}")

    masks = group_masks(forget, n_train, n_points - n_train)
    scores = klom_per_point(u, o, **klom.kwargs())
    finite = bool(np.isfinite(u).all())
    rows = []
    for group in GROUPS:
        mask = masks[group]
        if not mask.any():
            continue
        row = {"group": group, **group_stats(scores[mask], percentiles)}
        if bootstrap:
            row["p95_low"] = row["p95_high"] = math.nan
        if bootstrap and finite:
            low, high = klom_percentile_ci(u, o, mask, 95, bootstrap, alpha, seed=seed, bias_correct=True,
                                           **klom.kwargs())
            # re-centring can step outside KLOM's range [0, saturation]; a saturated group's P95 can exceed
            # ln(1/eps) by ~1e-5 (renormalised floor), so the cap keeps the estimate and the ends ordered
            cap = max(saturation(klom.eps), row.get("p95", 0.0))
            row["p95_low"], row["p95_high"] = min(max(low, 0.0), cap), min(max(high, 0.0), cap)
        row["accuracy"] = _mean_or_nan(group_accuracy(correct_unlearned, mask))
        row["oracle_accuracy"] = _mean_or_nan(group_accuracy(correct_oracle, mask))
        rows.append(row)
    eps = None
    if epsilon is not None:
        eps = _epsilon_scores(u, o, forget, masks, epsilon, correct_unlearned, correct_oracle)
    return Scores(scores, rows, eps, masks)


def _epsilon_scores(u, o, forget, masks, options, correct_u, correct_o) -> dict:
    """The challenge's per-forget-point ε, its bucketed forget score and the final score (see the module doc)."""
    if len(u) < 2:
        raise ValueError("the ε forget score needs at least 2 unlearned models")
    eps = eps_metric.epsilon_per_point(u[:, forget], o[:, forget], options["delta"], options["cap"])
    score = eps_metric.forget_score(eps, n_models=len(u))
    acc = {(who, g): group_accuracy(c, masks[g]) for who, c in (("u", correct_u), ("o", correct_o))
           for g in ("retain", "val")}
    if not np.isfinite(u).all():
        final = 0.0  # a diverged run scores nothing
    elif any(a is None for a in acc.values()):
        final = math.nan  # an accuracy is unknown, or there are no validation (test) points
    elif acc["o", "retain"].mean() > 0 and acc["o", "val"].mean() > 0:
        final = eps_metric.final_score(score, acc["u", "retain"], acc["o", "retain"], acc["u", "val"],
                                       acc["o", "val"])
    else:
        final = math.nan  # the ratios are undefined when the retrained models are never right
    return {"n_forget": len(forget), "epsilon_mean": float(eps.mean()), "epsilon_max": float(eps.max()),
            "forget_score": score, "final_score": final}


@dataclass
class ScoredSnapshot:
    """What a per-run metric (:mod:`unlearnbench.run_metrics`) sees at one snapshot of a run."""

    unlearned: np.ndarray  # margins [M, P]
    oracle: np.ndarray  # margins [Mo, P]
    forget: np.ndarray  # train indices
    masks: dict[str, np.ndarray]  # GROUPS -> bool [P]
    correct_unlearned: np.ndarray | None  # bool [M, P] argmax correctness, or None when unknown
    correct_oracle: np.ndarray | None  # bool [Mo, P], or None


def epsilon_row(snapshot: ScoredSnapshot, delta: float, cap: float) -> dict:
    """The challenge's ε at one snapshot (:data:`EPSILON_COLUMNS`), as :func:`score_margins` computes it."""
    return _epsilon_scores(snapshot.unlearned, snapshot.oracle, snapshot.forget, snapshot.masks,
                           {"delta": delta, "cap": cap}, snapshot.correct_unlearned, snapshot.correct_oracle)


# every snapshot of an unlearned run ---------------------------------------------------------------------


@dataclass
class Snapshots:
    """An unlearned run's shards, concatenated over models."""

    margins: np.ndarray  # [S, M, P]
    samples: np.ndarray  # [S, M]: samples through forward+backward passes up to each snapshot
    diverged: np.ndarray  # [S, M]
    correct: np.ndarray | None  # bool [S, M, P], or None when unknown
    epochs: np.ndarray  # [S]


@dataclass
class RunScores:
    """A run's scores at every snapshot: per-point KLOM ``[S, P]``, the rows of its stats table and, per
    per-run metric (:mod:`unlearnbench.run_metrics`), the rows of its table."""

    klom: np.ndarray
    direction: str
    stats: list[dict]
    metrics: dict[str, list[dict]]


def score_snapshots(run: Snapshots, oracle: np.ndarray, forget: np.ndarray, n_train: int, klom: dict,
                    bootstrap: dict, metrics: dict[str, dict | None], cost_unit: int,
                    oracle_correct: np.ndarray | None = None) -> RunScores:
    """Score every snapshot of ``run`` against the ``oracle [Mo, P]`` margins (:func:`score_margins`, its
    bootstrap seeded by the snapshot's epoch); ``klom``: the config's ``klom`` mapping; ``bootstrap``:
    ``{n_resamples, alpha}``; ``metrics``: per per-run metric its options, or None to skip it
    (:func:`unlearnbench.run_metrics.options`); ``cost_unit``: the samples of one base-model training run (see
    :func:`snapshot_rows`)."""
    options = KlomOptions.from_config(klom)
    scores, stats = [], []
    tables: dict[str, list[dict]] = {name: [] for name in metrics}
    for s, epoch in enumerate(run.epochs):
        correct = None if run.correct is None else run.correct[s]
        scored = score_margins(
            run.margins[s], oracle, forget, n_train, klom=options, percentiles=klom["percentiles"],
            bootstrap=bootstrap["n_resamples"], alpha=bootstrap["alpha"], seed=int(epoch),
            correct_unlearned=correct, correct_oracle=oracle_correct)
        scores.append(scored.klom)
        stats += snapshot_rows(run, s, scored, oracle.shape[0], cost_unit, options.direction)
        snapshot = ScoredSnapshot(run.margins[s], oracle, np.asarray(forget), scored.masks, correct, oracle_correct)
        line = snapshot_line(scored, int(run.diverged[s].sum()))
        for name, metric_options in metrics.items():
            if metric_options is not None:
                row = compute_run_metric(name, snapshot, metric_options)
                tables[name].append({"epoch": int(epoch), **row})
                line += f"; {name} " + ", ".join(f"{k} {v:.4g}" for k, v in row.items())
        log.info("epoch %d: %s", epoch, line)
    return RunScores(np.stack(scores), options.direction, stats, tables)


def snapshot_rows(run: Snapshots, s: int, scored: Scores, n_oracles: int, cost_unit: int, direction: str) -> list[dict]:
    """Rows of the stats table for snapshot ``s``: its groups' statistics and the run's columns. Relative cost
    = mean samples processed by forward+backward passes / ``cost_unit`` (train size x epochs)."""
    run_columns = {"n_models": run.margins.shape[1], "n_oracles": n_oracles,
                   "relative_cost": float(run.samples[s].mean()) / cost_unit, "diverged": int(run.diverged[s].sum()),
                   "direction": direction}
    return [{"epoch": int(run.epochs[s]), **row, **run_columns} for row in scored.rows]


def snapshot_line(scored: Scores, n_diverged: int) -> str:
    """``forget P95 9.12 acc 1.000 (oracle 0.871) | retain ... | val ...; 2 diverged model(s)``."""

    def number(value: float, digits: int) -> str:
        return "n/a" if np.isnan(value) else f"{value:.{digits}f}"

    groups = " | ".join(f"{r['group']} P95 {r['p95']:.3f} acc {number(r['accuracy'], 3)} "
                        f"(oracle {number(r['oracle_accuracy'], 3)})" for r in scored.rows)
    return groups + (f"; {n_diverged} diverged model(s)" if n_diverged else "")
