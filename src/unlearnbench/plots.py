"""Figures of a sweep, for the Snakemake report and ``results/figures/``.

Figure builders take tables and arrays and return a :class:`matplotlib.figure.Figure` (no pyplot, no
global state, rendered with Agg); the ``plot_*`` stages (:mod:`unlearnbench.stages.report`) read the
artefacts, build a figure and write it atomically as PNG. The figures follow the table (:mod:`unlearnbench.summary_md`): bars and margin
histograms show each method's reported run (chosen on the selection sample by the configured rule,
scored on the report sample); the trade-off figure shows every candidate on the selection sample, marks
the chosen run and its reported value, and draws the retrain baseline as a line against cost. Optional
summary columns are used when present: confidence bounds ``p95_low`` / ``p95_high`` become error bars.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from .methods import role_of as registered_role
from .selection import GROUPS, wide
from .summary_md import (ci_columns, forget_set_order, forget_set_title, headline_runs, method_order, normalise,
                         roles, selection_rule, with_protocol)

LEGEND_ROWS = 22  # entries per column of the trade-off figure's legend
LEGEND_COLUMN_WIDTH = 3.2  # inches

MARKERS = "osD^vP*Xph<>"
GROUP_COLOURS = {"forget": "#d62728", "retain": "#1f77b4", "val": "#2ca02c"}
ROLE_COLOURS = {"no_unlearning": "#7f7f7f", "oracle": "#000000", "retrain": "#8c564b"}
_PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#e377c2", "#bcbd22", "#17becf"]
DPI = 110


def text(value) -> str:
    """A user string as literal figure text (``$`` would start matplotlib's mathtext)."""
    return str(value).replace("$", r"\$")


def method_colours(methods: Sequence[str], role_of: Mapping[str, str] | None = None) -> dict[str, str]:
    """A stable colour per method: grey for the upper bound, black for the oracle, brown for the retrain
    baseline, the palette for the rest."""
    role_of = role_of or {}
    colours, i = {}, 0
    for method in method_order(methods, role_of or None):
        role = role_of.get(method) or registered_role(method)
        if role in ROLE_COLOURS:
            colours[method] = ROLE_COLOURS[role]
        else:
            colours[method] = _PALETTE[i % len(_PALETTE)]
            i += 1
    return colours


def short_run_labels(runs: Sequence[str]) -> dict[str, str]:
    """Run ids shortened to the ``key~value`` pairs that differ between them (``""`` for a single run)."""
    runs = list(dict.fromkeys(str(r) for r in runs))
    pairs = {r: re.findall(r"[A-Za-z][A-Za-z0-9_]*~[^_]+", r) or [r] for r in runs}
    common = set.intersection(*(set(p) for p in pairs.values())) if runs else set()
    return {r: "_".join(p for p in pairs[r] if p not in common) for r in runs}


def _ci_err(rows: pd.DataFrame, column: str) -> np.ndarray | None:
    low, high = f"{column}_low", f"{column}_high"
    if low not in rows or high not in rows:
        return None
    y = rows[column].to_numpy(float)
    err = np.vstack([y - rows[low].to_numpy(float), rows[high].to_numpy(float) - y])
    return np.where(np.isfinite(err), np.clip(err, 0, None), 0)


def _panels(rule: str, stat: str) -> list[tuple[str, str]]:
    """(column of the wide table, panel title): the three groups, then the value the rule ranks by."""
    return [(f"{g}_{stat}", f"{g} {stat.upper()}") for g in GROUPS] + [("selection_value", rule)]


def tradeoff_figure(summary: pd.DataFrame, forget_set: str, stat: str = "p95", cost_scale: str = "log") -> Figure:
    """Forget / retain / val ``stat`` and the selection rule's value against relative cost, on one forget set.

    Colour = method. Small faded markers: every grid point and snapshot on the selection sample (marker =
    grid point, snapshots of a grid point joined by a thin line); a ringed large marker: the chosen run on
    the selection sample, joined by a dashed line to its value on the report sample (filled large marker,
    what the table reports; the drop is the optimism). The retrain baseline: a line over its budgets (report
    sample). ``oracle`` at its cost (one retraining); ``do_nothing`` and other cost-0 methods as horizontal
    lines. Red rings: snapshots in which models diverged. ``cost_scale``: ``log`` or ``linear``.
    """
    summary = with_protocol(normalise(summary))
    summary = summary[summary["forget_set"] == str(forget_set)]
    rule = selection_rule(summary)
    role_of = roles(summary)
    keys = ["method", "run", "sample", "epoch"]
    table = wide(summary, keys, stat)
    table = table.merge(summary.groupby(keys, sort=False)[["selection_value", "selected", "pool_cost"]
                                                          if "pool_cost" in summary else
                                                          ["selection_value", "selected"]].first().reset_index(),
                        on=keys)
    methods = method_order(table["method"], role_of)
    colours = method_colours(methods, role_of)
    log = cost_scale == "log"
    panels = _panels(rule, stat)
    fig = Figure(figsize=(19, 5), layout="constrained")
    axes = fig.subplots(1, len(panels), sharex=True)
    handles: list = []
    positive = table["relative_cost"][table["relative_cost"] > 0]
    for p, ((column, title), ax) in enumerate(zip(panels, axes)):
        for method in methods:
            rows = table[table["method"] == method]
            colour, role = colours[method], role_of.get(method, "unlearning")
            report = rows[rows["sample"] == "report"].sort_values(["relative_cost", "run"])
            candidates = rows[rows["sample"] == "selection"]
            label, grid_handles = text(method), []
            if "pool_cost" in rows and rows["pool_cost"].fillna(0).max() > 0:
                label += f" (+ pool {rows['pool_cost'].max():.3g})"
            if role == "retrain":
                x, y = report["relative_cost"].to_numpy(float), report[column].to_numpy(float)
                ax.plot(x, y, color=colour, lw=2, marker="o", ms=6, zorder=3)
                oracle = table[(table["method"].map(role_of) == "oracle") & (table["sample"] == "report")]
                if len(x) and len(oracle):  # budget 1 is the oracle: the curve's end
                    ax.plot([x[-1], oracle["relative_cost"].iloc[0]], [y[-1], oracle[column].iloc[0]], color=colour,
                            lw=1.2, ls=":", zorder=2)
                for xi, yi, run in zip(x, y, report["run"]):
                    ax.annotate(text(run.replace("budget~", "")), (xi, yi), xytext=(4, -9), textcoords="offset points",
                                fontsize=7, color=colour)
                handle = Line2D([], [], color=colour, lw=2, marker="o", label=f"{label} (budgets)")
            elif (report["relative_cost"].fillna(0) <= 0).all() and (role != "unlearning" or log):
                for value in report[column]:  # no cost to place it at (on a log axis): a level to compare with
                    ax.axhline(value, color=colour, ls=":" if role != "unlearning" else "--", lw=1.4)
                handle = Line2D([], [], color=colour, ls=":" if role != "unlearning" else "--",
                                label=f"{label} (cost 0)")
            else:
                labels = short_run_labels(candidates["run"])
                for i, (run, sub) in enumerate(candidates.groupby("run", sort=True)):
                    sub = sub.sort_values("epoch")
                    x, y = sub["relative_cost"].to_numpy(float), sub[column].to_numpy(float)
                    if len(sub) > 1:
                        ax.plot(x, y, color=colour, lw=0.7, alpha=0.35)
                    ax.scatter(x, y, color=colour, marker=MARKERS[i % len(MARKERS)], s=18, alpha=0.45,
                               edgecolors="none", zorder=2)
                    bad = sub["diverged"].to_numpy() > 0
                    if bad.any():
                        ax.scatter(x[bad], y[bad], facecolors="none", edgecolors="red", s=70, linewidths=1.0, zorder=4)
                    if labels[run]:
                        grid_handles.append(Line2D([], [], color=colour, marker=MARKERS[i % len(MARKERS)], ls="",
                                                   alpha=0.5, label=f"   {text(labels[run])}"))
                chosen = candidates[candidates["selected"].astype(bool)]
                for _, row in report.iterrows():
                    x, y = float(row["relative_cost"]), float(row[column])
                    err = _ci_err(report.loc[[row.name]], column) if column != "selection_value" else None
                    if err is not None:
                        ax.errorbar([x], [y], yerr=err, fmt="none", ecolor=colour, lw=1, zorder=3)
                    ax.scatter([x], [y], color=colour, marker="o", s=80, edgecolors="black", linewidths=1.0, zorder=5)
                    picked = chosen[(chosen["run"] == row["run"]) & (chosen["epoch"] == row["epoch"])]
                    for _, c in picked.iterrows():
                        ax.scatter([c["relative_cost"]], [c[column]], facecolors="none", edgecolors=colour, s=110,
                                   linewidths=1.4, zorder=5)
                        ax.plot([c["relative_cost"], x], [c[column], y], color=colour, ls="--", lw=1, zorder=4)
                    if role == "oracle":
                        ax.axhline(y, color=colour, ls=":", lw=1.0, alpha=0.6)
                    if row["diverged"] > 0:
                        ax.scatter([x], [y], facecolors="none", edgecolors="red", s=150, linewidths=1.2, zorder=6)
                handle = Line2D([], [], color=colour, marker="o", ls="", markeredgecolor="black", label=label)
            if p == 0:
                handles += [handle, *grid_handles]
        ax.set_title(text(title))
        ax.ticklabel_format(axis="y", useOffset=False)
        if log and len(positive):
            ax.set_xscale("log")
        ax.set_xlabel("relative cost (samples / one base training run)" + (", log scale" if log else ""))
        ax.set_ylabel(f"KLOM {stat.upper()} (lower is better)" if column != "selection_value"
                      else f"{rule} (what the run was chosen by)")
        ax.grid(alpha=0.3, which="both" if log else "major")
    handles += [
        Line2D([], [], marker="o", ls="", color="0.5", alpha=0.45, markersize=5,
               label="every run on the selection sample"),
        Line2D([], [], marker="o", ls="", markerfacecolor="none", markeredgecolor="0.3", markersize=9,
               label="chosen there by " + rule),
        Line2D([], [], marker="o", ls="--", color="0.3", markeredgecolor="black", markersize=8,
               label="its value on the report sample (reported)"),
    ]
    if (table["diverged"] > 0).any():
        handles.append(Line2D([], [], marker="o", ls="", markerfacecolor="none", markeredgecolor="red",
                              label="models diverged"))
    # about 22 small-font entries fit the figure's height: more (many methods and grid points) go side by side
    ncols = -(-len(handles) // LEGEND_ROWS)
    fig.set_figwidth(fig.get_figwidth() + LEGEND_COLUMN_WIDTH * (ncols - 1))  # the panels keep their width
    fig.legend(handles=handles, loc="outside right upper", fontsize="small", title="method, grid point", ncols=ncols)
    title = forget_set_title(str(forget_set), summary)
    fig.suptitle(textwrap.fill(text(f"{title}: KLOM {stat.upper()} against relative cost; runs chosen by {rule} on "
                                    "the selection sample, reported on the report sample"), 130))
    return fig


def group_bars_figure(summary: pd.DataFrame, stat: str = "p95") -> Figure:
    """Per forget set, the forget / retain / val ``stat`` of each method's reported run as grouped bars, with
    confidence intervals as error bars when the summary has ``<stat>_low`` / ``<stat>_high`` (the retrain
    baseline, reported at every budget, is in the trade-off figures)."""
    rows_all = headline_runs(summary, stat)
    rule = selection_rule(summary)
    forget_sets = forget_set_order(rows_all["forget_set"])
    ncols = max(1, min(3, len(forget_sets)))
    nrows = max(1, -(-len(forget_sets) // ncols))
    n_methods = rows_all["method"].nunique()
    fig = Figure(figsize=(max(5.0, 1.1 * n_methods + 1.5) * ncols, 4.8 * nrows), layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    width = 0.27
    for ax, fs in zip(axes, forget_sets):
        rows = rows_all[rows_all["forget_set"] == fs]
        x = np.arange(len(rows))
        for k, group in enumerate(GROUPS):
            column = f"{group}_{stat}"
            ax.bar(x + (k - 1) * width, rows[column].to_numpy(float), width, color=GROUP_COLOURS[group],
                   yerr=_ci_err(rows, column), capsize=2, error_kw={"lw": 0.8})
        ax.set_xticks(x, [text(m) for m in rows["method"]], rotation=30, ha="right")
        ax.set_title(textwrap.fill(text(forget_set_title(fs, rows)), 60))
        ax.set_ylabel(f"KLOM {stat.upper()} of the reported run")
        ax.grid(axis="y", alpha=0.3)
    for ax in axes[len(forget_sets):]:
        ax.set_visible(False)
    ci = " (bars: bootstrap CI)" if ci_columns(normalise(summary), stat) else ""
    fig.legend(handles=[Patch(color=GROUP_COLOURS[g], label=g) for g in GROUPS], loc="outside right upper")
    fig.suptitle(textwrap.fill(f"KLOM {stat.upper()} per group of each method's run chosen by {rule} on the "
                               f"selection sample, reported on the report sample{ci}", 50 * ncols))
    return fig


def klom_epochs_figure(curves: Sequence[Mapping], masks: Mapping[str, np.ndarray], forget_set: str,
                       q: float = 95, title: str | None = None, rule: str = "average_95") -> Figure:
    """Per-point KLOM over the snapshot epochs of each method's chosen grid point, per group.

    ``curves``: one mapping per method with ``method``, ``run``, ``epochs [S]`` and ``klom [S, P]`` (the
    grid point's scores on the sample it was chosen on, at every snapshot), optionally ``role``, ``chosen``
    (the reported epoch) and ``reported`` (``{group: value}`` on the report sample, drawn as a star at the
    chosen epoch). Line = the ``q``-th percentile over the group's points, band = median to that
    percentile. Methods with a single snapshot (do_nothing, oracle) are dotted horizontal references.
    """
    role_of = {c["method"]: c.get("role") for c in curves if c.get("role")}
    colours = method_colours([c["method"] for c in curves], role_of)
    order = method_order([c["method"] for c in curves], role_of or None)
    fig = Figure(figsize=(15, 4.8), layout="constrained")
    axes = fig.subplots(1, len(GROUPS), sharex=True)
    all_epochs = np.concatenate([np.asarray(c["epochs"]) for c in curves]) if curves else np.zeros(1)
    for group, ax in zip(GROUPS, axes):
        mask = np.asarray(masks[group], bool)
        for c in sorted(curves, key=lambda c: order.index(c["method"])):
            scores = np.asarray(c["klom"], float)[:, mask]
            epochs = np.asarray(c["epochs"])
            colour = colours[c["method"]]
            label = text(f"{c['method']} ({c['run']})" if c["run"] != "default" else c["method"])
            if scores.shape[1] == 0:
                continue
            top = np.percentile(scores, q, axis=1)
            mid = np.median(scores, axis=1)
            if len(epochs) == 1:
                ax.axhline(top[0], color=colour, ls=":", lw=1.5, label=label)
                ax.axhline(mid[0], color=colour, ls=":", lw=0.8, alpha=0.5)
                continue
            ax.plot(epochs, top, color=colour, marker="o", lw=1.5, label=label)
            ax.fill_between(epochs, mid, top, color=colour, alpha=0.15, lw=0)
            if c.get("chosen") is not None:
                at = int(np.flatnonzero(epochs == c["chosen"])[0]) if (epochs == c["chosen"]).any() else None
                if at is not None:
                    ax.scatter([epochs[at]], [top[at]], facecolors="none", edgecolors=colour, s=110, zorder=4)
                reported = (c.get("reported") or {}).get(group)
                if reported is not None and np.isfinite(reported):
                    ax.scatter([c["chosen"]], [reported], marker="*", color=colour, edgecolors="black", s=160,
                               zorder=5)
        ax.set_title(f"{group} points")
        ax.set_xlabel("snapshot epoch")
        ax.set_ylabel(f"KLOM (line: P{q:g}, band: median to P{q:g})")
        ax.set_xlim(min(0, all_epochs.min()) - 0.2, max(1, all_epochs.max()) + 0.2)
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    handles += [Line2D([], [], marker="o", ls="", markerfacecolor="none", markeredgecolor="0.3", markersize=9),
                Line2D([], [], marker="*", ls="", color="0.5", markeredgecolor="black", markersize=11)]
    labels += [f"chosen by {rule} (selection sample)", "reported (report sample)"]
    fig.legend(handles, labels, loc="outside right upper", fontsize="small", title="method (chosen grid point)")
    fig.suptitle(textwrap.fill(text(f"{title or f'Forget set {forget_set}'}: KLOM over snapshot epochs of each "
                                    "method's chosen grid point on the selection sample (stars: the reported "
                                    "value)"), 100))
    return fig


def worst_points(klom_row: np.ndarray, mask: np.ndarray, k: int = 3) -> np.ndarray:
    """Indices of the ``k`` points of ``mask`` with the highest KLOM (ties: lower index first)."""
    idx = np.flatnonzero(np.asarray(mask, bool))
    values = np.asarray(klom_row, float)[idx]
    order = np.lexsort((idx, -np.nan_to_num(values, nan=np.inf)))
    return idx[order[:k]]


def margins_figure(points: Sequence[int], oracle: np.ndarray, panels: Sequence[Mapping], forget_set: str,
                   n_train: int, clip: Sequence[float] | None = None, title: str | None = None,
                   reference: str = "") -> Figure:
    """Margin histograms of unlearned vs oracle models on a few points.

    ``oracle``: scored oracle margins ``[N, P]``. ``panels``: one mapping per method with ``method``,
    ``run``, ``epoch``, ``margins [M, P]`` (that snapshot) and ``klom [P]`` (optionally ``role``). Rows =
    points, columns = methods; non-finite margins (diverged models) are left out and counted in the panel.
    ``clip``: margins are clipped to it first, as KLOM does (``klom.clip``). ``reference``: the method whose
    worst-forgotten points these are, named in the title (default: the first panel's).
    """
    if clip is not None:
        oracle = np.clip(oracle, *clip)
        panels = [{**p, "margins": np.clip(p["margins"], *clip)} for p in panels]
    colours = method_colours([p["method"] for p in panels], {p["method"]: p.get("role") for p in panels
                                                              if p.get("role")})
    nrows, ncols = max(1, len(points)), max(1, len(panels))
    fig = Figure(figsize=(max(5.0, 3.1 * ncols + 1), 2.5 * nrows + 1), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for r, point in enumerate(points):
        where = f"train #{point}" if point < n_train else f"val #{point - n_train}"
        base = oracle[:, point]
        base = base[np.isfinite(base)]
        for c, panel in enumerate(panels):
            ax = axes[r, c]
            values = np.asarray(panel["margins"])[:, point]
            finite = values[np.isfinite(values)]
            both = np.concatenate([base, finite])
            bins = np.linspace(both.min(), both.max() if both.max() > both.min() else both.min() + 1, 21) \
                if both.size else 20
            ax.hist(base, bins=bins, color="0.6", alpha=0.6, label="oracle")
            if finite.size:
                ax.hist(finite, bins=bins, histtype="step", lw=1.8, color=colours[panel["method"]],
                        label="unlearned")
            note = f"KLOM {panel['klom'][point]:.2f}"
            if finite.size < values.size:
                note += f"\n{values.size - finite.size} diverged"
            ax.text(0.02, 0.97, note, transform=ax.transAxes, va="top", fontsize="small")
            if r == 0:
                run = "" if panel["run"] == "default" else "\n" + textwrap.fill(
                    " ".join(re.findall(r"[A-Za-z][A-Za-z0-9_]*~[^_]+", panel["run"]) or [panel["run"]])
                    + f", epoch {panel['epoch']}", 34)
                ax.set_title(text(f"{panel['method']}{run}"), fontsize="small")
            if c == 0:
                ax.set_ylabel(f"{where}\nmodels")
            if r == nrows - 1:
                ax.set_xlabel("margin")
    handles = [Patch(color="0.6", alpha=0.6, label="oracle (scored)"),
               Line2D([], [], color="black", lw=1.8, label="unlearned (method colour)")]
    fig.legend(handles=handles, loc="outside lower center", ncols=2, fontsize="small")
    title_margins(fig, forget_set, reference or (panels[0]["method"] if panels else ""), title)
    return fig


def title_margins(fig: Figure, forget_set: str, reference: str, title: str | None = None) -> None:
    heading = (f"{title or f'Forget set {forget_set}'}: margins of each method's reported run (report sample) vs "
               f"the scored oracles on the forget points {reference} forgets worst")
    fig.suptitle(textwrap.fill(text(heading), max(40, int(fig.get_figwidth() * 11))))
