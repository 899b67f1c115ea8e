"""Stages of ``workflow/rules/report.smk``: the tables and figures people read.

The tables (:mod:`unlearnbench.summary_md`) and figures (:mod:`unlearnbench.plots`) are pure: frames and
arrays in, text and figures out; these stages read the artefacts, pick each method's reported run
(:func:`unlearnbench.summary_md.headline_runs`, which reads the ``selected`` column
:func:`unlearnbench.selection.annotate` wrote) and write the results.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence

import numpy as np

log = logging.getLogger(__name__)


def report_tables(summary: str, markdown: str, best: str, full: str, stat: str, titles: Mapping[str, str],
                  **tables: str) -> None:
    """summary.md and the HTML tables of the report; ``tables``: the optional tables' CSV files (U-LiRA,
    epsilon), by the names ``titles`` gives a title to."""
    from ..storage import load_table, write_text
    from ..summary_md import full_summary_html, reported_runs_html, summary_markdown

    frame = load_table(summary)
    extras = {titles[name]: load_table(tables[name]) for name in titles}
    write_text(markdown, summary_markdown(frame, extras, stat, source=summary))
    write_text(best, reported_runs_html(frame, stat))
    write_text(full, full_summary_html(frame))


def report_extra_table(table: str, html: str, title: str) -> None:
    """One optional table (U-LiRA, epsilon) as HTML."""
    from ..storage import load_table, write_text
    from ..summary_md import table_html

    write_text(html, table_html(title, load_table(table)))


def plot_tradeoff(summary: str, figure: str, stat: str, cost_scale: str, forget_set_id: str) -> None:
    from ..plots import tradeoff_figure

    _save_figure(tradeoff_figure(_load_summary(summary), forget_set_id, stat, cost_scale), figure)


def plot_group_bars(summary: str, figure: str, stat: str) -> None:
    from ..plots import group_bars_figure

    _save_figure(group_bars_figure(_load_summary(summary), stat), figure)


def plot_klom_epochs(summary: str, scores: list[str], forget_set: str, selections: list[str], figure: str, stat: str,
                     n_train: int, n_val: int, forget_set_id: str) -> None:
    """KLOM over snapshot epochs of each method's chosen grid point (``scores``: its klom.npz on the sample
    it was chosen on, each naming its method and run), with the reported values. ``selections`` (the
    checkpoints' choices, already in ``summary``) only order this job after them."""
    from ..identity import by_run, load_arrays
    from ..plots import GROUPS, klom_epochs_figure
    from ..summary_md import forget_set_title, selection_rule

    table = _load_summary(summary)
    index = by_run(scores)
    curves = []
    rows = _headline(table, forget_set_id, stat)
    for _, row in rows.iterrows():
        _, data = load_arrays(index[(row["method"], row["run"])][0], ("klom", "epochs"))
        reported = {g: float(row[f"{g}_{stat}"]) for g in GROUPS}
        curves.append({"method": row["method"], "run": row["run"], "role": row["role"], "chosen": int(row["epoch"]),
                       "reported": reported, **data})
    q = float(stat[1:]) if stat[1:].replace(".", "").isdigit() else 95.0
    title = forget_set_title(str(forget_set_id), rows)
    fig = klom_epochs_figure(curves, _masks(forget_set, n_train, n_val), forget_set_id, q, title,
                             selection_rule(table))
    _save_figure(fig, figure)


def plot_margins(summary: str, scores: list[str], unlearned: list[str], oracles: list[str], forget_set: str,
                 selections: list[str], figure: str, stat: str, n_train: int, n_val: int, n_points: int,
                 reference: str, clip: Sequence[float] | None, forget_set_id: str) -> None:
    """Histograms of unlearned (each method's reported run, on the report sample, at its snapshot) vs scored
    oracle margins on the ``n_points`` forget points with the highest KLOM under ``reference`` (else the first
    method). ``scores`` / ``unlearned``: the reported runs' klom.npz and unlearned shards, each naming its run."""
    from ..identity import by_run
    from ..plots import margins_figure, worst_points
    from ..storage import MARGINS_REQUIRED, load_arrays
    from ..summary_md import forget_set_title

    rows = _headline(_load_summary(summary), forget_set_id, stat)
    oracle = np.concatenate([load_arrays(p, MARGINS_REQUIRED)["margins"] for p in oracles], axis=0)
    panels = _margin_panels(rows, by_run(scores), by_run(unlearned))
    masks = _masks(forget_set, n_train, n_val)
    ref = next((p for p in panels if p["method"] == reference), panels[0] if panels else None)
    points = worst_points(ref["klom"], masks["forget"], n_points) if ref is not None else np.zeros(0, int)
    title = forget_set_title(str(forget_set_id), rows)
    fig = margins_figure([int(p) for p in points], oracle, panels, forget_set_id, n_train, clip, title,
                         reference=ref["method"] if ref is not None else "")
    _save_figure(fig, figure)


def _margin_panels(rows, score_index: dict, shard_index: dict) -> list[dict]:
    """Per reported run: its unlearned margins and per-point KLOM at the reported snapshot."""
    from ..storage import UNLEARNED_REQUIRED, load_arrays

    panels = []
    for _, row in rows.iterrows():
        key = (row["method"], row["run"])
        parts = [load_arrays(p, UNLEARNED_REQUIRED) for p in shard_index[key]]
        s = int(np.flatnonzero(parts[0]["epochs"] == row["epoch"])[0])
        klom = load_arrays(score_index[key][0], ("klom", "epochs"))
        k = int(np.flatnonzero(klom["epochs"] == row["epoch"])[0])
        panels.append({"method": row["method"], "run": row["run"], "epoch": int(row["epoch"]), "role": row["role"],
                       "margins": np.concatenate([p["margins"][s] for p in parts], axis=0),
                       "klom": klom["klom"][k]})
    return panels


def _save_figure(fig, path: str | os.PathLike) -> None:
    """Write a figure as PNG atomically (the temp file has no .png suffix, so the format is explicit)."""
    from ..plots import DPI
    from ..storage import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI)


def _load_summary(path: str):
    from ..storage import load_table
    from ..summary_md import normalise

    return normalise(load_table(path))


def _headline(summary, forget_set: str, stat: str):
    """The reported run of each method on one forget set."""
    from ..summary_md import headline_runs

    rows = headline_runs(summary, stat)
    return rows[rows["forget_set"] == str(forget_set)]


def _masks(forget_set: str, n_train: int, n_val: int) -> dict[str, np.ndarray]:
    from ..metrics.groups import group_masks
    from ..storage import load_npy

    return group_masks(load_npy(forget_set), n_train, n_val)
