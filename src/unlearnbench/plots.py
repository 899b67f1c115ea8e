"""Figures of a sweep, for the Snakemake report and ``results/figures/``.

Figure builders take tables and arrays and return a :class:`matplotlib.figure.Figure` (no pyplot, no
global state, rendered with Agg); ``plot_*`` job functions read artefacts, build a figure and write it
atomically as PNG. Optional summary columns are used when present: confidence bounds ``p95_low`` /
``p95_high`` become error bars.
"""

from __future__ import annotations

import os
import re
import textwrap
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from .summary_md import (GROUPS, REFERENCE_METHODS, best_runs, ci_columns, forget_set_order, method_order, normalise,
                         wide)

MARKERS = "osD^vP*Xph<>"
GROUP_COLOURS = {"forget": "#d62728", "retain": "#1f77b4", "val": "#2ca02c"}
REFERENCE_COLOURS = {"do_nothing": "#7f7f7f", "oracle": "#000000"}
_PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf"]
DPI = 110


def method_colours(methods: Sequence[str]) -> dict[str, str]:
    """A stable colour per method: grey for do_nothing, black for oracle, the palette for the rest."""
    colours, i = {}, 0
    for method in method_order(methods):
        if method in REFERENCE_COLOURS:
            colours[method] = REFERENCE_COLOURS[method]
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


def pareto_frontier(costs, values) -> tuple[np.ndarray, np.ndarray]:
    """The lowest value reachable at each cost or less: the points where the running minimum improves."""
    costs, values = np.asarray(costs, float), np.asarray(values, float)
    keep = np.isfinite(costs) & np.isfinite(values)
    order = np.lexsort((values[keep], costs[keep]))
    x, y = costs[keep][order], values[keep][order]
    best, xs, ys = np.inf, [], []
    for c, v in zip(x, y):
        if v < best:
            best = v
            xs.append(c)
            ys.append(v)
    return np.asarray(xs), np.asarray(ys)


def _ci_err(rows: pd.DataFrame, column: str) -> np.ndarray | None:
    low, high = f"{column}_low", f"{column}_high"
    if low not in rows or high not in rows:
        return None
    y = rows[column].to_numpy(float)
    err = np.vstack([y - rows[low].to_numpy(float), rows[high].to_numpy(float) - y])
    return np.where(np.isfinite(err), np.clip(err, 0, None), 0)


def tradeoff_figure(summary: pd.DataFrame, forget_set: str, stat: str = "p95") -> Figure:
    """Forget / retain / val ``stat`` against relative cost for every method, grid point and snapshot.

    Colour = method, marker = grid point (consecutive snapshots of one grid point joined by a thin
    line, labelled e<epoch>), pale thick step line = the method's frontier (lowest value at that cost
    or less), dotted horizontal lines = do_nothing and oracle (cost 0). Red rings mark snapshots in
    which models diverged.
    """
    table = wide(summary, stat)
    table = table[table["forget_set"] == str(forget_set)]
    methods = method_order(table["method"])
    colours = method_colours(methods)
    fig = Figure(figsize=(15, 5), layout="constrained")
    axes = fig.subplots(1, len(GROUPS), sharex=True)
    handles: list = []
    for g, (group, ax) in enumerate(zip(GROUPS, axes)):
        column = f"{group}_{stat}"
        for method in methods:
            rows = table[table["method"] == method].sort_values(["run", "epoch"])
            colour = colours[method]
            labels = short_run_labels(rows["run"])
            if method in REFERENCE_METHODS and (rows["relative_cost"].fillna(0) == 0).all():
                for value in rows[column]:
                    ax.axhline(value, color=colour, ls=":", lw=1.2)
            for i, (run, sub) in enumerate(rows.groupby("run", sort=True)):
                sub = sub.sort_values("epoch")
                marker = MARKERS[i % len(MARKERS)]
                x, y = sub["relative_cost"].to_numpy(float), sub[column].to_numpy(float)
                if len(sub) > 1:
                    ax.plot(x, y, color=colour, lw=0.8, alpha=0.5)
                err = _ci_err(sub, column)
                if err is not None:
                    ax.errorbar(x, y, yerr=err, fmt="none", ecolor=colour, alpha=0.6, lw=0.8)
                ax.scatter(x, y, color=colour, marker=marker, s=36, edgecolors="white", linewidths=0.5, zorder=3)
                if len(sub) > 1:
                    for xi, yi, epoch in zip(x, y, sub["epoch"]):
                        ax.annotate(f"e{epoch}", (xi, yi), xytext=(4, 3), textcoords="offset points",
                                    fontsize=7, color=colour)
                bad = sub["diverged"].to_numpy() > 0
                if bad.any():
                    ax.scatter(x[bad], y[bad], facecolors="none", edgecolors="red", s=110, linewidths=1.2, zorder=4)
                if g == 0:
                    label = method + (f" {labels[run]}" if labels[run] else "")
                    handles.append(Line2D([], [], color=colour, marker=marker, ls="", label=label))
            if rows["run"].nunique() * rows["epoch"].nunique() > 1:
                fx, fy = pareto_frontier(rows["relative_cost"], rows[column])
                if len(fx):
                    fx = np.append(fx, table["relative_cost"].max())
                    fy = np.append(fy, fy[-1])
                    ax.step(fx, fy, where="post", color=colour, lw=2, alpha=0.35)
        ax.set_title(f"{group} {stat.upper()}")
        ax.ticklabel_format(axis="y", useOffset=False)
        ax.set_xlabel("relative cost (samples / one base training run)")
        ax.set_ylabel(f"KLOM {stat.upper()} (lower is better)")
        ax.grid(alpha=0.3)
    if (table["diverged"] > 0).any():
        handles.append(Line2D([], [], marker="o", ls="", markerfacecolor="none", markeredgecolor="red",
                              label="models diverged"))
    handles.append(Line2D([], [], color="grey", lw=2, alpha=0.35, label="frontier (best at this cost or less)"))
    fig.legend(handles=handles, loc="outside right upper", fontsize="small", title="method, grid point")
    fig.suptitle(f"Forget set {forget_set}: KLOM {stat.upper()} against relative cost, every grid point and snapshot")
    return fig


def group_bars_figure(summary: pd.DataFrame, stat: str = "p95") -> Figure:
    """Per forget set, the forget / retain / val ``stat`` of each method's best run as grouped bars,
    with confidence intervals as error bars when the summary has ``<stat>_low`` / ``<stat>_high``."""
    best = best_runs(summary, stat)
    forget_sets = forget_set_order(best["forget_set"])
    ncols = min(3, len(forget_sets))
    nrows = -(-len(forget_sets) // ncols)
    n_methods = best["method"].nunique()
    fig = Figure(figsize=(max(5.0, 1.1 * n_methods + 1.5) * ncols, 4.5 * nrows), layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    width = 0.27
    for ax, fs in zip(axes, forget_sets):
        rows = best[best["forget_set"] == fs]
        x = np.arange(len(rows))
        for k, group in enumerate(GROUPS):
            column = f"{group}_{stat}"
            ax.bar(x + (k - 1) * width, rows[column].to_numpy(float), width, color=GROUP_COLOURS[group],
                   yerr=_ci_err(rows, column), capsize=2, error_kw={"lw": 0.8})
        ax.set_xticks(x, rows["method"], rotation=30, ha="right")
        ax.set_title(f"Forget set {fs}")
        ax.set_ylabel(f"KLOM {stat.upper()} of the best run")
        ax.grid(axis="y", alpha=0.3)
    for ax in axes[len(forget_sets):]:
        ax.set_visible(False)
    ci = " (bars: bootstrap CI)" if ci_columns(normalise(summary), stat) else ""
    fig.legend(handles=[Patch(color=GROUP_COLOURS[g], label=g) for g in GROUPS], loc="outside right upper")
    fig.suptitle(f"KLOM {stat.upper()} per group, best run per method (lowest forget {stat.upper()}){ci}")
    return fig


def klom_epochs_figure(curves: Sequence[Mapping], masks: Mapping[str, np.ndarray], forget_set: str,
                       q: float = 95) -> Figure:
    """Per-point KLOM over the snapshot epochs of each method's best run, per group.

    ``curves``: one mapping per method with ``method``, ``run``, ``epochs [S]`` and ``klom [S, P]``.
    Line = the ``q``-th percentile over the group's points, band = median to that percentile. Methods
    with a single snapshot (do_nothing, oracle) are dotted horizontal references.
    """
    colours = method_colours([c["method"] for c in curves])
    fig = Figure(figsize=(15, 4.8), layout="constrained")
    axes = fig.subplots(1, len(GROUPS), sharex=True)
    all_epochs = np.concatenate([np.asarray(c["epochs"]) for c in curves]) if curves else np.zeros(1)
    for group, ax in zip(GROUPS, axes):
        mask = np.asarray(masks[group], bool)
        for c in sorted(curves, key=lambda c: method_order([x["method"] for x in curves]).index(c["method"])):
            scores = np.asarray(c["klom"], float)[:, mask]
            epochs = np.asarray(c["epochs"])
            colour = colours[c["method"]]
            label = f"{c['method']} ({c['run']})" if c["run"] != "default" else c["method"]
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
        ax.set_title(f"{group} points")
        ax.set_xlabel("snapshot epoch")
        ax.set_ylabel(f"KLOM (line: P{q:g}, band: median to P{q:g})")
        ax.set_xlim(min(0, all_epochs.min()) - 0.2, max(1, all_epochs.max()) + 0.2)
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right upper", fontsize="small", title="method (best run)")
    fig.suptitle(f"Forget set {forget_set}: KLOM over snapshot epochs, best run per method")
    return fig


def worst_points(klom_row: np.ndarray, mask: np.ndarray, k: int = 3) -> np.ndarray:
    """Indices of the ``k`` points of ``mask`` with the highest KLOM (ties: lower index first)."""
    idx = np.flatnonzero(np.asarray(mask, bool))
    values = np.asarray(klom_row, float)[idx]
    order = np.lexsort((idx, -np.nan_to_num(values, nan=np.inf)))
    return idx[order[:k]]


def margins_figure(points: Sequence[int], oracle: np.ndarray, panels: Sequence[Mapping], forget_set: str,
                   n_train: int, clip: Sequence[float] | None = None) -> Figure:
    """Margin histograms of unlearned vs oracle models on a few points.

    ``oracle``: scored oracle margins ``[N, P]``. ``panels``: one mapping per method with ``method``,
    ``run``, ``epoch``, ``margins [M, P]`` (that snapshot) and ``klom [P]``. Rows = points, columns =
    methods; non-finite margins (diverged models) are left out and counted in the panel. ``clip``:
    margins are clipped to it first, as KLOM does (``klom.clip``).
    """
    if clip is not None:
        oracle = np.clip(oracle, *clip)
        panels = [{**p, "margins": np.clip(p["margins"], *clip)} for p in panels]
    colours = method_colours([p["method"] for p in panels])
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
                ax.set_title(f"{panel['method']}{run}", fontsize="small")
            if c == 0:
                ax.set_ylabel(f"{where}\nmodels")
            if r == nrows - 1:
                ax.set_xlabel("margin")
    handles = [Patch(color="0.6", alpha=0.6, label="oracle (scored)"),
               Line2D([], [], color="black", lw=1.8, label="unlearned (method colour)")]
    fig.legend(handles=handles, loc="outside lower center", ncols=2, fontsize="small")
    title_margins(fig, forget_set, "do_nothing")
    return fig


def title_margins(fig: Figure, forget_set: str, reference: str) -> None:
    title = (f"Forget set {forget_set}: margins of unlearned vs oracle models on the forget points "
             f"{reference} forgets worst")
    fig.suptitle(textwrap.fill(title, max(40, int(fig.get_figwidth() * 11))))


# job functions -----------------------------------------------------------------------------------------


def save_figure(fig: Figure, path: str | os.PathLike) -> None:
    """Write a figure as PNG atomically (the temp file has no .png suffix, so the format is explicit)."""
    from .storage import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI)


def _load_summary(path: str) -> pd.DataFrame:
    from .storage import load_table

    return normalise(load_table(path))


def _best(summary: pd.DataFrame, forget_set: str, stat: str) -> pd.DataFrame:
    best = best_runs(summary, stat)
    return best[best["forget_set"] == str(forget_set)]


def _masks(forget_set_path: str, n_train: int, n_val: int) -> dict[str, np.ndarray]:
    from .metrics.groups import group_masks
    from .storage import load_npy

    return group_masks(load_npy(forget_set_path), n_train, n_val)


def plot_tradeoff(summary_csv: str, forget_set: str, out: str, stat: str = "p95") -> None:
    save_figure(tradeoff_figure(_load_summary(summary_csv), forget_set, stat), out)


def plot_group_bars(summary_csv: str, out: str, stat: str = "p95") -> None:
    save_figure(group_bars_figure(_load_summary(summary_csv), stat), out)


def _index(paths: Sequence[str], keys: Sequence[Mapping]) -> dict[tuple[str, str], list[str]]:
    """(method, run) -> paths, from parallel lists of paths and ``{method, run}`` keys."""
    if len(paths) != len(keys):
        raise ValueError(f"{len(paths)} paths but {len(keys)} keys")
    index: dict[tuple[str, str], list[str]] = {}
    for path, key in zip(paths, keys):
        index.setdefault((str(key["method"]), str(key["run"])), []).append(path)
    return index


def plot_klom_epochs(summary_csv: str, forget_set: str, scores: Sequence[str], keys: Sequence[Mapping],
                     forget_set_path: str, n_train: int, n_val: int, out: str, stat: str = "p95") -> None:
    """KLOM over snapshot epochs of each method's best run (``scores``: klom.npz files, ``keys`` alike)."""
    from .storage import load_arrays

    index = _index(scores, keys)
    curves = []
    for _, row in _best(_load_summary(summary_csv), forget_set, stat).iterrows():
        data = load_arrays(index[(row["method"], row["run"])][0], ("klom", "epochs"))
        curves.append({"method": row["method"], "run": row["run"], **data})
    q = float(stat[1:]) if stat[1:].replace(".", "").isdigit() else 95.0
    save_figure(klom_epochs_figure(curves, _masks(forget_set_path, n_train, n_val), forget_set, q), out)


def plot_margins(summary_csv: str, forget_set: str, scores: Sequence[str], score_keys: Sequence[Mapping],
                 unlearned: Sequence[str], unlearned_keys: Sequence[Mapping], oracles: Sequence[str],
                 forget_set_path: str, n_train: int, n_val: int, out: str, n_points: int = 3,
                 reference: str = "do_nothing", stat: str = "p95", clip: Sequence[float] | None = None) -> None:
    """Histograms of unlearned (each method's best run, at its best snapshot) vs scored oracle margins on
    the ``n_points`` forget points with the highest KLOM under ``reference`` (else the first method)."""
    from .jobs import MARGINS_REQUIRED, UNLEARNED_REQUIRED
    from .storage import load_arrays

    best = _best(_load_summary(summary_csv), forget_set, stat)
    score_index, shard_index = _index(scores, score_keys), _index(unlearned, unlearned_keys)
    oracle = np.concatenate([load_arrays(p, MARGINS_REQUIRED)["margins"] for p in oracles], axis=0)
    panels = []
    for _, row in best.iterrows():
        key = (row["method"], row["run"])
        parts = [load_arrays(p, UNLEARNED_REQUIRED) for p in shard_index[key]]
        s = int(np.flatnonzero(parts[0]["epochs"] == row["epoch"])[0])
        klom = load_arrays(score_index[key][0], ("klom", "epochs"))
        k = int(np.flatnonzero(klom["epochs"] == row["epoch"])[0])
        panels.append({"method": row["method"], "run": row["run"], "epoch": int(row["epoch"]),
                       "margins": np.concatenate([p["margins"][s] for p in parts], axis=0),
                       "klom": klom["klom"][k]})
    masks = _masks(forget_set_path, n_train, n_val)
    ref = next((p for p in panels if p["method"] == reference), panels[0] if panels else None)
    points = worst_points(ref["klom"], masks["forget"], n_points) if ref is not None else np.zeros(0, int)
    fig = margins_figure([int(p) for p in points], oracle, panels, forget_set, n_train, clip)
    if ref is not None and ref["method"] != reference:
        title_margins(fig, forget_set, ref["method"])
    save_figure(fig, out)
