"""Stages of ``workflow/rules/scoring.smk``: KLOM of one run (no torch: these jobs start fast), and the summary."""

from __future__ import annotations

import logging

import numpy as np

log = logging.getLogger(__name__)


def score_klom(unlearned: list[str], oracles: list[str], forget_set: str, scores: str, stats: str,
               klom_options: dict, bootstrap: dict | None, run_metrics: dict, n_train: int, n_val: int,
               cost_unit: int, identity: dict, **tables: str) -> None:
    """Per-point KLOM of the ``unlearned`` shards vs the scored ``oracles`` at each snapshot (``scores``),
    per-group statistics with bootstrap intervals over model draws and argmax accuracies (``stats``), and each
    per-run metric's table (``tables``, by metric name: the NeurIPS'23 challenge ε of the forget points, ...;
    ``run_metrics``: their options, None where not computed; see :mod:`unlearnbench.run_metrics`):
    :func:`unlearnbench.scoring.score_snapshots`. ``identity`` (:class:`unlearnbench.identity.Identity` fields:
    data set, model, forget set, method, run, sample) is stored in each, and names the run in the log."""
    import pandas as pd

    from .. import identity as identified
    from ..run_metrics import RUN_METRICS
    from ..scoring import score_snapshots
    from ..storage import MARGINS_REQUIRED, load_arrays, load_npy

    who = identified.Identity(**identity)
    run = _load_unlearned(unlearned)
    oracle_parts = [load_arrays(p, MARGINS_REQUIRED) for p in oracles]
    oracle = np.concatenate([p["margins"] for p in oracle_parts], axis=0)
    oracle_correct = _stored_correctness(oracle_parts, oracles, axis=0)
    forget = load_npy(forget_set)
    if run.margins.shape[-1] != n_train + n_val or oracle.shape[-1] != n_train + n_val:
        raise ValueError(f"margins cover {run.margins.shape[-1]} (unlearned) and {oracle.shape[-1]} (oracle) points, "
                         f"the data set has {n_train} train + {n_val} val")
    log.info("scoring %s: %d unlearned models (%d shard(s)) x %d snapshot(s) vs %d oracles (%d shard(s)), "
             "%d points (%d train, %d val), forget set %s of %d points, KLOM %s",
             who.describe(), run.margins.shape[1], len(unlearned), len(run.epochs), oracle.shape[0],
             len(oracle_parts), run.margins.shape[-1], n_train, n_val, forget_set, len(forget),
             klom_options["direction"])
    if set(tables) != set(RUN_METRICS) or set(run_metrics) != set(RUN_METRICS):
        raise ValueError(f"per-run metrics {sorted(RUN_METRICS)}: the job has tables {sorted(tables)} and options "
                         f"for {sorted(run_metrics)}")
    scored = score_snapshots(run, oracle, forget, n_train, klom_options, bootstrap or {"n_resamples": 0, "alpha": 0.05},
                             run_metrics, cost_unit, oracle_correct)
    identified.save_arrays(scores, who, klom=scored.klom, epochs=run.epochs, direction=np.str_(scored.direction))
    identified.save_table(stats, who, pd.DataFrame(scored.stats))
    for name, metric in RUN_METRICS.items():
        identified.save_table(tables[name], who, pd.DataFrame(scored.metrics[name], columns=["epoch", *metric.columns]))


def _load_unlearned(paths: list[str]):
    """The unlearned shards of a run, concatenated over models (:class:`unlearnbench.scoring.Snapshots`)."""
    from ..scoring import Snapshots
    from ..storage import UNLEARNED_REQUIRED, load_arrays

    parts = [load_arrays(p, UNLEARNED_REQUIRED) for p in paths]
    return Snapshots(margins=np.concatenate([p["margins"] for p in parts], axis=1),
                     samples=np.concatenate([p["samples"] for p in parts], axis=1),
                     diverged=np.concatenate([p["diverged"] for p in parts], axis=1),
                     correct=_stored_correctness(parts, paths, axis=1), epochs=parts[0]["epochs"])


def _stored_correctness(parts: list[dict], paths: list[str], axis: int) -> np.ndarray | None:
    """The ``correct`` arrays of artefacts, concatenated like their margins; None (accuracy NaN) when any lacks
    one: margins with no logits behind them (DM-direct's predictions, imported published margins), or an
    artefact written before correctness was stored (the workflow rebuilds those)."""
    from ..storage import ArtefactError

    missing = [path for part, path in zip(parts, paths) if "correct" not in part]
    if missing:
        log.info("accuracy unknown (NaN): no argmax correctness stored in %s", ", ".join(missing))
        return None
    for part, path in zip(parts, paths):
        correct, margins = part["correct"], part["margins"]
        if correct.dtype != bool or correct.shape != margins.shape:
            raise ArtefactError(path, f"'correct' is {correct.dtype} {correct.shape}, expected bool "
                                      f"{margins.shape} like the margins")
    return np.concatenate([p["correct"] for p in parts], axis=axis)


def summarize(stats: list[str], selections: list[str], csv: str, parquet: str, fixed_selections: list[dict],
              rule: str, methods: dict, descriptions: dict, **run_metrics: str | list[str]) -> None:
    """The KLOM summary (``csv``, ``parquet``) and each per-run metric's summary (``run_metrics``: ``<name>``, the
    metric's score tables, and ``<name>_summary``, its summary; :mod:`unlearnbench.run_metrics`), one row per run,
    sample, snapshot (and group).

    Each score file says whose it is (:mod:`unlearnbench.identity`: data set, model, forget set, method, run and
    sample; the summary shows the sample's kind, ``selection`` or ``report``). ``selections`` (JSON of the
    ``select_run`` checkpoints) and ``fixed_selections`` (methods with one candidate) name each method's reported
    run; ``methods``: per method its ``role`` and ``pool_cost``; ``descriptions``: per forget set its description.
    See :func:`unlearnbench.selection.annotate` for the columns added.
    """
    from ..run_metrics import RUN_METRICS, summary_key
    from ..selection import annotate, read_selection
    from ..storage import save_table

    ids = ["dataset", "model", "forget_set", "method", "run", "sample", "epoch"]
    table = _stack_scores(stats, ids + ["group", "n_points", "n_models"], ids + ["group"])
    chosen = [c for path in selections for c in read_selection(path)] + list(fixed_selections)
    table = annotate(table, chosen, rule, methods or {}, descriptions or {})
    save_table(csv, table)
    save_table(parquet, table)
    for name in RUN_METRICS:
        save_table(run_metrics[summary_key(name)], _stack_scores(run_metrics[name], ids, ids))


def _stack_scores(paths: list[str], first: list[str], order: list[str]):
    """The score tables of ``paths``, stacked (:func:`unlearnbench.storage.stack_tables`), each row's sample as
    its kind (``selection`` / ``report``: the report sample's epoch is the row's own)."""
    from ..identity import load_table
    from ..selection import parse_sample
    from ..storage import stack_tables

    tables = [load_table(path)[1] for path in paths]
    return stack_tables([t.assign(sample=t["sample"].map(lambda s: parse_sample(s)[0])) for t in tables],
                        first, order)
