"""The headline tables of a sweep: best run per method and forget set, as Markdown and as HTML.

Input is the summary table (``results/klom_summary.csv``: one row per forget set, method, run, snapshot
epoch and group). Optional columns are used when present: bootstrap confidence bounds ``<stat>_low`` /
``<stat>_high`` (e.g. ``p95_low``, ``p95_high``). Optional extra tables (U-LiRA, epsilon) are rendered
generically, whatever their columns.

No torch, no matplotlib: importable by the fast report jobs and by tests.
"""

from __future__ import annotations

import html
import math
import os
from collections.abc import Mapping

import numpy as np
import pandas as pd

GROUPS: tuple[str, ...] = ("forget", "retain", "val")
RUN_KEYS: list[str] = ["forget_set", "method", "run", "epoch"]
# reference methods first (upper bound, noise floor), the others alphabetically
REFERENCE_METHODS: tuple[str, ...] = ("do_nothing", "oracle")


def normalise(summary: pd.DataFrame) -> pd.DataFrame:
    """Forget set ids and run ids as plain strings (CSV turns id ``1`` into an integer)."""
    summary = summary.copy()
    for col in ("forget_set", "method", "run", "group"):
        if col in summary:
            summary[col] = summary[col].astype(str)
    return summary


def method_order(methods) -> list[str]:
    methods = list(dict.fromkeys(str(m) for m in methods))
    return [m for m in REFERENCE_METHODS if m in methods] + sorted(m for m in methods if m not in REFERENCE_METHODS)


def forget_set_order(forget_sets) -> list[str]:
    """Numeric ids in numeric order, then the others alphabetically."""
    ids = list(dict.fromkeys(str(f) for f in forget_sets))
    return sorted(ids, key=lambda f: (0, int(f), "") if f.isdigit() else (1, 0, f))


def ci_columns(summary: pd.DataFrame, stat: str = "p95") -> tuple[str, str] | None:
    """``(low, high)`` confidence-bound columns of ``stat`` when the summary has both."""
    low, high = f"{stat}_low", f"{stat}_high"
    return (low, high) if low in summary.columns and high in summary.columns else None


def wide(summary: pd.DataFrame, stat: str = "p95") -> pd.DataFrame:
    """One row per forget set, method, run and snapshot epoch; columns ``<group>_<stat>`` (and their
    confidence bounds ``<group>_<stat>_low/_high`` when present), ``relative_cost``, ``diverged``."""
    summary = normalise(summary)
    values = [stat] + list(ci_columns(summary, stat) or ())
    table = summary.groupby(RUN_KEYS + ["group"], sort=False)[values].first().unstack("group")
    out = pd.DataFrame(index=table.index)
    for group in GROUPS:
        for value in values:
            out[f"{group}_{value}"] = table[(value, group)] if (value, group) in table.columns else np.nan
    extra = summary.groupby(RUN_KEYS)[["relative_cost", "diverged"]].max()
    out = out.join(extra).reset_index()
    out["diverged"] = out["diverged"].fillna(0).astype(int)
    return out


def best_runs(summary: pd.DataFrame, stat: str = "p95") -> pd.DataFrame:
    """Per forget set and method, the run and snapshot epoch with the lowest forget ``stat``.

    A snapshot in which models diverged ranks after every one without (its KLOM is saturated anyway;
    this only settles ties among saturated values). Ties go to the cheaper run, then the earlier epoch,
    then the run id (deterministic). ``n_candidates`` counts the (run, epoch) pairs the best was chosen
    from.
    """
    table = wide(summary, stat)
    key = f"forget_{stat}"
    table = table.assign(_diverged=table["diverged"] > 0)
    table = table.sort_values(["_diverged", key, "relative_cost", "epoch", "run"], kind="stable", na_position="last")
    table = table.drop(columns="_diverged")
    best = table.groupby(["forget_set", "method"], sort=False).head(1).copy()
    counts = table.groupby(["forget_set", "method"]).size().rename("n_candidates")
    best = best.join(counts, on=["forget_set", "method"])
    fs_rank = {f: i for i, f in enumerate(forget_set_order(best["forget_set"]))}
    m_rank = {m: i for i, m in enumerate(method_order(best["method"]))}
    best = best.assign(_f=best["forget_set"].map(fs_rank), _m=best["method"].map(m_rank))
    return best.sort_values(["_f", "_m"]).drop(columns=["_f", "_m"]).reset_index(drop=True)


# formatting ------------------------------------------------------------------------------------------


def fmt(value, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        if value != 0 and (abs(value) >= 1e5 or abs(value) < 10 ** -digits):
            return f"{value:.{digits}g}"
        return f"{value:.{digits}f}"
    return str(value)


def _with_ci(row, column: str) -> str:
    text = fmt(row[column])
    low, high = row.get(f"{column}_low"), row.get(f"{column}_high")
    if text and low is not None and high is not None and not (pd.isna(low) or pd.isna(high)):
        text += f" [{fmt(low)}, {fmt(high)}]"
    return text


def headline(best: pd.DataFrame, stat: str = "p95") -> pd.DataFrame:
    """The best-run table as display strings, one row per forget set and method."""
    label = stat.upper()
    rows = []
    for _, row in best.iterrows():
        rows.append({
            "forget set": row["forget_set"],
            "method": row["method"],
            f"forget {label}": _with_ci(row, f"forget_{stat}"),
            f"retain {label}": _with_ci(row, f"retain_{stat}"),
            f"val {label}": _with_ci(row, f"val_{stat}"),
            "relative cost": fmt(row["relative_cost"]),
            "run": row["run"],
            "epoch": fmt(row["epoch"]),
            "diverged": fmt(row["diverged"]),
            "candidates": fmt(row["n_candidates"]),
        })
    return pd.DataFrame(rows)


def markdown_table(frame: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table (no tabulate needed); numbers formatted with :func:`fmt`."""
    def cell(value) -> str:
        return fmt(value).replace("|", "\\|").replace("\n", " ")

    header = "| " + " | ".join(cell(c) for c in frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *body])


def headline_extra(table: pd.DataFrame, best: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """An extra table for the headline: constant ``dataset`` / ``model`` columns dropped and, when it has
    one row per forget set, method, run and epoch (like the epsilon table), only the best runs' rows."""
    table = normalise(table)
    note = ""
    if set(RUN_KEYS) <= set(table.columns) and len(best):
        keys = best[RUN_KEYS].astype({"epoch": "int64"})
        table = keys.merge(table.astype({"epoch": "int64"}), on=RUN_KEYS, how="inner")
        note = "At the best run of each method (above); every run in the HTML report."
    constant = [c for c in ("dataset", "model") if c in table and table[c].nunique() <= 1]
    return table.drop(columns=constant), note


def summary_markdown(
    summary: pd.DataFrame,
    extra_tables: Mapping[str, pd.DataFrame] | None = None,
    stat: str = "p95",
    source: str = "results/klom_summary.csv",
) -> str:
    """``results/summary.md``: the best run per method and forget set, then any extra tables."""
    best = best_runs(summary, stat)
    shown = headline(best, stat)
    label = stat.upper()
    ci = ci_columns(summary, stat)
    lines = [
        "# unlearnbench: best run per method and forget set",
        "",
        f"KLOM {label} (lower is better) of each method's best grid point and snapshot epoch: the one with the "
        f"lowest forget {label} at any snapshot. Its retain and validation {label} and its relative cost "
        "(samples through forward+backward / one base training run) are shown alongside. `do_nothing` is the "
        "upper bound (no unlearning), `oracle` the noise floor (held-out oracles). `candidates` = grid points x "
        "snapshots the best was chosen from; `diverged` = models that diverged at that snapshot.",
    ]
    if ci:
        lines += ["", f"Brackets: bootstrap confidence interval of the {label} (`{ci[0]}`, `{ci[1]}`)."]
    for forget_set in forget_set_order(best["forget_set"]):
        part = shown[shown["forget set"] == forget_set].drop(columns=["forget set"])
        lines += ["", f"## Forget set {forget_set}", "", markdown_table(part)]
    for name, table in (extra_tables or {}).items():
        table, note = headline_extra(table, best)
        lines += ["", f"## {name}", "", *([note, ""] if note else []), markdown_table(table)]
    lines += ["", f"Full table: `{source}`. Figures: `results/figures/`. "
              "HTML report: `unlearnbench report` (results/report.html).", ""]
    return "\n".join(lines)


_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 1em; color: #222; }
h1 { font-size: 1.2em; } h2 { font-size: 1.05em; margin-top: 1.5em; }
p { max-width: 60em; }
table { border-collapse: collapse; font-size: 0.85em; margin-bottom: 1em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; white-space: nowrap; }
th { background: #f0f0f0; position: sticky; top: 0; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr:nth-child(even) td { background: #fafafa; }
"""


def _is_number(text: str) -> bool:
    try:
        float(text.split(" [")[0])
    except ValueError:
        return False
    return True


def _table(frame: pd.DataFrame) -> str:
    """An HTML table: text left, numbers right-aligned (numbers formatted with :func:`fmt`)."""
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    rows = []
    for row in frame.itertuples(index=False):
        cells = []
        for value in row:
            text = fmt(value, 4)
            cls = ' class="num"' if text and _is_number(text) else ""
            cells.append(f"<td{cls}>{html.escape(text)}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def html_page(title: str, sections: list[tuple[str, pd.DataFrame]], intro: str = "") -> str:
    """A self-contained HTML page (inline CSS, no scripts) with one table per section."""
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    if intro:
        parts.append(f"<p>{html.escape(intro)}</p>")
    for heading, frame in sections:
        if heading:
            parts.append(f"<h2>{html.escape(heading)}</h2>")
        parts.append(_table(frame))
    parts.append("</body></html>")
    return "\n".join(parts)


def best_runs_html(summary: pd.DataFrame, stat: str = "p95") -> str:
    best = best_runs(summary, stat)
    shown = headline(best, stat)
    sections = [(f"Forget set {fs}", shown[shown["forget set"] == fs].drop(columns=["forget set"]))
                for fs in forget_set_order(best["forget_set"])]
    label = stat.upper()
    intro = (f"KLOM {label}, lower is better. Per method, the grid point and snapshot epoch with the lowest forget "
             f"{label}; its retain/val {label} and relative cost alongside.")
    return html_page(f"Best run per method (KLOM {label})", sections, intro)


def full_summary_html(summary: pd.DataFrame) -> str:
    summary = normalise(summary)
    constant = {c: summary[c].iloc[0] for c in ("dataset", "model", "direction")
                if c in summary and len(summary) and summary[c].nunique() == 1}
    summary = summary.drop(columns=list(constant))
    sections = []
    for fs in forget_set_order(summary["forget_set"]):
        part = summary[summary["forget_set"] == fs].drop(columns=["forget_set"])
        part = part.assign(_m=part["method"].map({m: i for i, m in enumerate(method_order(part["method"]))}))
        part = part.sort_values(["_m", "run", "epoch"], kind="stable").drop(columns=["_m"])
        sections.append((f"Forget set {fs}", part))
    shared = "; ".join(f"{k} {v}" for k, v in constant.items())
    return html_page("KLOM summary: every method, grid point, snapshot and group", sections,
                     "One row per method, run (grid point), snapshot epoch and group (forget / retain / val)."
                     + (f" All rows: {shared}." if shared else ""))


def table_html(name: str, table: pd.DataFrame) -> str:
    return html_page(name, [("", table)])


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write a text file atomically."""
    from .storage import atomic_path

    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)


def write_tables(
    summary_csv: str,
    out_markdown: str,
    out_best_html: str,
    out_full_html: str,
    extra_tables: Mapping[str, str] | None = None,
    stat: str = "p95",
) -> None:
    """Job function of ``report_tables``: summary.md and the HTML tables of the report."""
    from .storage import load_table

    summary = load_table(summary_csv)
    extras = {name: load_table(path) for name, path in (extra_tables or {}).items()}
    write_text(out_markdown, summary_markdown(summary, extras, stat, source=summary_csv))
    write_text(out_best_html, best_runs_html(summary, stat))
    write_text(out_full_html, full_summary_html(summary))


def write_table_html(name: str, table_csv: str, out_html: str) -> None:
    """Job function of ``report_extra_table``: one optional table (U-LiRA, epsilon) as HTML."""
    from .storage import load_table

    write_text(out_html, table_html(name, load_table(table_csv)))


def console_summary(summary_csv: str | os.PathLike) -> str:
    """The short table printed when a run succeeds: the same best runs as ``results/summary.md``."""
    best = best_runs(normalise(pd.read_csv(summary_csv)))
    table = best.set_index(["forget_set", "method"])[["forget_p95", "retain_p95", "val_p95", "relative_cost"]]
    return (f"KLOM P95 of each method's best grid point and snapshot (lowest forget P95; lower is better)."
            f" Full table: {summary_csv}\n\n{table.round(3).to_string()}")
