"""The headline tables of a sweep: each method's reported run per forget set, as Markdown and as HTML.

Input is the summary table (``results/klom_summary.csv``: one row per forget set, method, run, sample,
snapshot epoch and group; see :func:`unlearnbench.selection.annotate`). Each method's run was chosen on the
selection sample by ``selection_rule`` and is reported on the report sample (:mod:`unlearnbench.selection`);
the headline shows the reported values and, beside them, the rule's value where the run was chosen, so the
optimism of choosing and reporting on one sample is visible. A table without a ``sample`` column (from an
older version, or made elsewhere) is read as chosen and reported on one sample, and says so.

Optional columns are used when present: bootstrap confidence bounds ``<stat>_low`` / ``<stat>_high``,
``accuracy`` / ``oracle_accuracy``, ``pool_cost``, ``forget_set_description``. Optional extra tables
(U-LiRA, epsilon) are rendered generically, whatever their columns. Every user-supplied string (ids, run
ids with plug-in hyperparameters, descriptions) is escaped for Markdown and HTML.

No torch, no matplotlib: importable by the fast report jobs and by tests.
"""

from __future__ import annotations

import html
import math
import os
import re
from collections.abc import Mapping

import numpy as np
import pandas as pd

from .layout import KLOM_SUMMARY
from .methods import ROLES, role_of as registered_role
from .selection import GROUPS, RULES, rule_value, select, wide

RUN_KEYS: list[str] = ["forget_set", "method", "run", "epoch"]
ROLE_ORDER: tuple[str, ...] = ROLES
DEFAULT_RULE = "average_95"


def normalise(summary: pd.DataFrame) -> pd.DataFrame:
    """Key columns as plain strings (a table built in code may hold integer forget set ids)."""
    summary = summary.copy()
    for col in ("forget_set", "method", "run", "group", "sample", "role", "forget_set_description"):
        if col in summary:
            summary[col] = summary[col].astype(str)
    return summary


def roles(summary: pd.DataFrame) -> dict[str, str]:
    """Method -> role, from the ``role`` column or, without one, from the method registry."""
    if "role" in summary:
        return dict(zip(summary["method"], summary["role"]))
    return {m: registered_role(m) for m in summary["method"]}


def method_order(methods, role_of: Mapping[str, str] | None = None) -> list[str]:
    """Upper bound, noise floor, retrain baseline first (by role), then the others alphabetically."""
    methods = list(dict.fromkeys(str(m) for m in methods))
    role_of = role_of or {m: registered_role(m) for m in methods}
    rank_of = {r: i for i, r in enumerate(ROLE_ORDER)}
    return sorted(methods, key=lambda m: (rank_of.get(role_of.get(m, "unlearning"), len(ROLE_ORDER)), m))


def forget_set_order(forget_sets) -> list[str]:
    """Numeric ids in numeric order (``01`` and ``1`` next to each other, by their text), then the others
    alphabetically."""
    ids = list(dict.fromkeys(str(f) for f in forget_sets))
    return sorted(ids, key=lambda f: (0, int(f), f) if f.isdigit() else (1, 0, f))


def ci_columns(summary: pd.DataFrame, stat: str = "p95") -> tuple[str, str] | None:
    """``(low, high)`` confidence-bound columns of ``stat`` when the summary has both."""
    low, high = f"{stat}_low", f"{stat}_high"
    return (low, high) if low in summary.columns and high in summary.columns else None


def selection_rule(summary: pd.DataFrame) -> str:
    rules = summary["selection_rule"].unique() if "selection_rule" in summary else []
    return str(rules[0]) if len(rules) else DEFAULT_RULE


def same_sample(summary: pd.DataFrame) -> bool:
    """Whether the table chose and reported on one sample (no ``sample`` column: older or foreign tables)."""
    return "sample" not in summary


def with_protocol(summary: pd.DataFrame) -> pd.DataFrame:
    """The summary with the protocol's columns. A table without them is read as chosen and reported on one
    sample: every row is a candidate (``sample`` selection), the best by ``average_95`` is also the report."""
    summary = normalise(summary)
    if not same_sample(summary):
        return summary
    rule = selection_rule(summary)
    keys = RUN_KEYS
    values = wide(summary, keys)
    values["selection_value"] = rule_value(values["forget_p95"], values["retain_p95"], values["val_p95"], rule)
    values["average_95"] = rule_value(values["forget_p95"], values["retain_p95"], values["val_p95"], "average_95")
    chosen = set()
    counts = {}
    for (fs, m), group in values.groupby(["forget_set", "method"], sort=False):
        best = select(group, rule)  # as the select_run checkpoint chooses (unlearnbench.selection)
        chosen.add((fs, m, best["run"], best["epoch"]))
        counts[(fs, m)] = best["n_candidates"]
    candidates = summary.merge(values[keys + ["selection_value", "average_95"]], on=keys, how="left")
    candidates = candidates.assign(selection_rule=rule, sample="selection")
    candidates["selected"] = [(f, m, r, int(e)) in chosen for f, m, r, e in zip(
        candidates["forget_set"], candidates["method"], candidates["run"], candidates["epoch"])]
    candidates["n_candidates"] = [counts[(f, m)] for f, m in zip(candidates["forget_set"], candidates["method"])]
    report = candidates[candidates["selected"]].assign(sample="report")
    return pd.concat([candidates, report], ignore_index=True)


def reported_runs(summary: pd.DataFrame, stat: str = "p95") -> pd.DataFrame:
    """One row per reported run (report sample) and forget set, headline methods first, then retrain's budgets.

    Columns: ``forget_set``, ``method``, ``run``, ``epoch``, ``<group>_<stat>`` (and CI bounds,
    ``<group>_accuracy``), ``relative_cost``, ``pool_cost``, ``diverged``, ``role``, ``selected``,
    ``n_candidates``, ``n_models``, ``reported_on`` (the rule's value on the report sample), ``selected_on`` (its
    value on the selection sample, where the run was chosen; NaN when nothing was chosen), ``optimism`` =
    ``reported_on - selected_on``, ``forget_set_description``.
    """
    legacy = same_sample(summary)
    summary = with_protocol(summary)
    role_of = roles(summary)
    report = summary[summary["sample"] == "report"]
    table = wide(report, RUN_KEYS, stat)
    per_run = ["selection_value", "selected", "n_candidates", "n_models", "pool_cost", "forget_set_description"]
    per_run = [c for c in per_run if c in report]
    table = table.merge(report.groupby(RUN_KEYS, sort=False)[per_run].first().reset_index(), on=RUN_KEYS)
    table = table.rename(columns={"selection_value": "reported_on"})
    chosen_on = summary[(summary["sample"] == "selection") & summary["selected"]]
    chosen_on = chosen_on.groupby(RUN_KEYS, sort=False)["selection_value"].first().rename("selected_on")
    table = table.join(chosen_on, on=RUN_KEYS)
    if legacy:  # chosen where reported: the optimism is not measured
        table["selected_on"] = np.nan
    table["optimism"] = table["reported_on"] - table["selected_on"]
    table["role"] = table["method"].map(lambda m: role_of.get(m, "unlearning"))
    fs_rank = {f: i for i, f in enumerate(forget_set_order(table["forget_set"]))}
    m_rank = {m: i for i, m in enumerate(method_order(table["method"], role_of))}
    table = table.assign(_f=table["forget_set"].map(fs_rank), _m=table["method"].map(m_rank))
    table = table.sort_values(["_f", "_m", "relative_cost", "run", "epoch"], kind="stable")
    return table.drop(columns=["_f", "_m"]).reset_index(drop=True)


def headline_runs(summary: pd.DataFrame, stat: str = "p95") -> pd.DataFrame:
    """The reported run of every method that had one chosen (the retrain baseline's curve left out)."""
    table = reported_runs(summary, stat)
    return table[table["role"] != "retrain"].reset_index(drop=True)


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


# Markdown: ASCII punctuation that can start emphasis, links, code, tables, strikethrough or headings (the HTML
# characters < > & become entities instead).
_MD_SPECIAL = set("\\`*_{}[]()#+!|~")


def md_text(value) -> str:
    """A string shown as literal text in Markdown: Markdown punctuation backslash-escaped, HTML entities for
    ``& < >`` (no raw HTML), newlines folded. For descriptions, headers and other free text."""
    text = " ".join(str(value).split("\n"))
    text = "".join("\\" + c if c in _MD_SPECIAL else c for c in text)
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def md_code(value) -> str:
    """A string as a Markdown code span: shown literally (no emphasis, no strikethrough of ``lr~0.1_b~2``); the
    fence outgrows any backticks inside; ``|`` escaped for tables."""
    text = " ".join(str(value).split("\n"))
    if not text:
        return ""
    ticks, run = 0, 0  # the fence is longer than any run of backticks inside
    for c in text:
        run = run + 1 if c == "`" else 0
        ticks = max(ticks, run)
    fence = "`" * (ticks + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text.replace('|', chr(92) + '|')}{pad}{fence}"


_PLAIN_ID = re.compile(r"[\w.~+=,:/@%-]*")


def md_id(value) -> str:
    """An identifier (method, run id with plug-in hyperparameter values): a code span when it holds only
    identifier characters, else escaped text (:func:`md_text`), so no raw HTML reaches the file at all."""
    text = str(value)
    return md_code(text) if _PLAIN_ID.fullmatch(text) else md_text(text)


def _with_ci(row, column: str) -> str:
    text = fmt(row[column])
    low, high = row.get(f"{column}_low"), row.get(f"{column}_high")
    if text and low is not None and high is not None and not (pd.isna(low) or pd.isna(high)):
        text += f" [{fmt(low)}, {fmt(high)}]"
    return text


def _groups(row, column: str) -> str:
    """``forget / retain / val`` values of ``<group>_<column>``."""
    values = [row.get(f"{g}_{column}") for g in GROUPS]
    return "" if all(v is None or pd.isna(v) for v in values) else " / ".join(fmt(v) for v in values)


def headline(rows: pd.DataFrame, stat: str = "p95", rule: str = DEFAULT_RULE) -> pd.DataFrame:
    """Reported runs (:func:`reported_runs`) as display cells, one row per forget set and run: values, then
    the rule's value where the run was chosen and where it is reported."""
    label = stat.upper()
    accuracy = any(f"{g}_accuracy" in rows for g in GROUPS)
    oracle_accuracy = any(f"{g}_oracle_accuracy" in rows for g in GROUPS)
    pool = "pool_cost" in rows and (rows["pool_cost"].fillna(0) > 0).any()
    out = []
    for _, row in rows.iterrows():
        cells = {
            "forget set": row["forget_set"],
            "method": row["method"],
            "run": row["run"],
            "epoch": fmt(row["epoch"]),
            f"forget {label}": _with_ci(row, f"forget_{stat}"),
            f"retain {label}": _with_ci(row, f"retain_{stat}"),
            f"val {label}": _with_ci(row, f"val_{stat}"),
        }
        if accuracy:
            cells["accuracy (forget / retain / val)"] = _groups(row, "accuracy")
        if oracle_accuracy:
            cells["oracle accuracy"] = _groups(row, "oracle_accuracy")
        cells["relative cost"] = fmt(row["relative_cost"])
        if pool:
            cells["pool cost"] = fmt(row["pool_cost"]) if row.get("pool_cost", 0) else ""
        cells[f"{rule} where chosen"] = fmt(row.get("selected_on"))
        cells[f"{rule} reported"] = fmt(row.get("reported_on"))
        cells["optimism"] = fmt(row.get("optimism"))
        cells["candidates"] = fmt(row.get("n_candidates"))
        cells["diverged"] = fmt(row["diverged"])
        out.append(cells)
    return pd.DataFrame(out)


CODE_COLUMNS = ("method", "run")  # identifiers, shown as code spans


def markdown_table(frame: pd.DataFrame, trusted: tuple[str, ...] = ()) -> str:
    """A GitHub-flavoured Markdown table (no tabulate needed). Numbers are formatted with :func:`fmt`;
    :data:`CODE_COLUMNS` become code spans; other text is escaped (:func:`md_text`) unless its column is
    ``trusted`` (cells this module formatted, like ``3.000 [2.500, 3.250]``)."""
    def cell(value, column) -> str:
        if column in CODE_COLUMNS:
            return md_id(value)
        if column in trusted or isinstance(value, (int, float, np.number, np.bool_)):
            return fmt(value)
        return md_text(fmt(value))

    header = "| " + " | ".join(md_text(c) for c in frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = ["| " + " | ".join(cell(v, c) for v, c in zip(row, frame.columns)) + " |"
            for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *body])


def headline_extra(table: pd.DataFrame, reported: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """An extra table for the headline: constant ``dataset`` / ``model`` columns dropped and, when it has
    one row per forget set, method, run and epoch (like the epsilon table), only the reported runs' rows
    (of the report sample, when it has a ``sample`` column)."""
    table = normalise(table)
    note = ""
    if set(RUN_KEYS) <= set(table.columns) and len(reported):
        if "sample" in table:
            table = table[table["sample"] == "report"].drop(columns="sample")
        keys = reported[RUN_KEYS].astype({"epoch": "int64"})
        table = keys.merge(table.astype({"epoch": "int64"}), on=RUN_KEYS, how="inner")
        note = "At the reported run of each method (above), on the report sample; every run in the HTML report."
    constant = [c for c in ("dataset", "model") if c in table and table[c].nunique() <= 1]
    return table.drop(columns=constant), note


def forget_set_title(forget_set: str, rows: pd.DataFrame) -> str:
    """``Forget set <id>: <description>`` (the description, when the config gives one)."""
    descriptions = rows["forget_set_description"].dropna().unique() if "forget_set_description" in rows else []
    description = next((str(d) for d in descriptions if str(d)), "")
    return f"Forget set {forget_set}" + (f": {description}" if description else "")


def protocol_text(summary: pd.DataFrame, stat: str = "p95", name=str) -> str:
    """What made the table: the rule, the samples, how to read the optimism column (plain text; ``name``
    formats the rule's name, e.g. :func:`md_code`)."""
    rule = name(selection_rule(summary))
    described = RULES.get(selection_rule(summary), "")
    if same_sample(summary):
        return (f"Each method's run (grid point and snapshot epoch) was chosen by {rule} ({described}) "
                "and reported on the same models and oracles: the reported values are biased low for methods with "
                "many candidates (winner's curse), and the optimism is not measured.")
    samples = summary.groupby("sample")["n_models"].max() if "n_models" in summary else {}
    n_sel, n_rep = samples.get("selection"), samples.get("report")
    sizes = (f" (selection: {fmt(n_sel)} models vs {fmt(n_sel)} selection oracles; report: {fmt(n_rep)} models vs "
             f"the scored oracles)") if n_sel is not None and n_rep is not None else ""
    return (f"Each method's run (grid point and snapshot epoch) was chosen by {rule} ({described}) on "
            f"the selection sample and is reported on the independent report sample{sizes}. '{rule} where chosen' "
            f"is its value on the selection sample, '{rule} reported' on the report sample; 'optimism' is their gap "
            "(how much a table that chose and reported on one sample would have flattered the method). Methods "
            "with a single candidate are reported without a choice. The retrain baseline is reported at every "
            f"budget. Lower {stat.upper()} is better.")


def summary_markdown(
    summary: pd.DataFrame,
    extra_tables: Mapping[str, pd.DataFrame] | None = None,
    stat: str = "p95",
    source: str = KLOM_SUMMARY,
) -> str:
    """``results/summary.md``: per forget set the reported runs, then any extra tables."""
    rule = selection_rule(summary)
    rows = reported_runs(summary, stat)
    label = stat.upper()
    ci = ci_columns(summary, stat)
    lines = [
        f"# unlearnbench: the reported run per method and forget set (chosen by {md_code(rule)})",
        "",
        protocol_text(summary, stat, md_code),
        "",
        f"KLOM {label} per group (forget / retain / validation points). Relative cost = samples through "
        "forward+backward / one base training run (`oracle`: one retraining); pool cost = training the pool that "
        "datamodel methods need, in base training runs, paid once for all forget sets. `do_nothing` is the upper "
        "bound, `oracle` the noise floor (held-out oracles), `retrain` the compute-matched retraining baseline. "
        "Candidates = grid points × snapshots the run was chosen from; diverged = models that diverged at that "
        "snapshot.",
    ]
    if ci:
        lines += ["", f"Brackets: bootstrap confidence interval of the {label} ({md_code(ci[0])}, {md_code(ci[1])})."]
    shown = headline(rows, stat, rule)
    trusted = tuple(c for c in shown.columns if c not in CODE_COLUMNS)  # formatted here
    for forget_set in forget_set_order(rows["forget_set"]):
        part = shown[shown["forget set"] == forget_set].drop(columns=["forget set"])
        title = forget_set_title(forget_set, rows[rows["forget_set"] == forget_set])
        lines += ["", f"## {md_text(title)}", "", markdown_table(part, trusted)]
    for name, table in (extra_tables or {}).items():
        table, note = headline_extra(table, rows)
        lines += ["", f"## {md_text(name)}", "", *([note, ""] if note else []), markdown_table(table)]
    lines += ["", f"Selection rule: {md_code(rule)}. Full table (every run on the selection sample, the reported "
              f"ones on the report sample): {md_code(source)}. Figures: `results/figures/`. HTML report: "
              "`unlearnbench report` (results/report.html).", ""]
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


def reported_runs_html(summary: pd.DataFrame, stat: str = "p95") -> str:
    rule = selection_rule(summary)
    rows = reported_runs(summary, stat)
    shown = headline(rows, stat, rule)
    sections = [(forget_set_title(fs, rows[rows["forget_set"] == fs]),
                 shown[shown["forget set"] == fs].drop(columns=["forget set"]))
                for fs in forget_set_order(rows["forget_set"])]
    return html_page(f"Reported run per method (KLOM {stat.upper()}, chosen by {rule})", sections,
                     protocol_text(summary, stat))


def full_summary_html(summary: pd.DataFrame) -> str:
    summary = normalise(summary)
    rule = selection_rule(summary)
    constant = {c: summary[c].iloc[0] for c in ("dataset", "model", "direction", "selection_rule")
                if c in summary and len(summary) and summary[c].nunique() == 1}
    summary = summary.drop(columns=list(constant))
    role_of = roles(summary)
    sections = []
    for fs in forget_set_order(summary["forget_set"]):
        part = summary[summary["forget_set"] == fs].drop(columns=["forget_set"])
        title = forget_set_title(fs, part)
        part = part.drop(columns=[c for c in ("forget_set_description",) if c in part])
        part = part.assign(_m=part["method"].map({m: i for i, m in enumerate(method_order(part["method"], role_of))}))
        order = ["_m", "run"] + [c for c in ("sample", "epoch") if c in part]
        part = part.sort_values(order, kind="stable").drop(columns=["_m"])
        sections.append((title, part))
    shared = "; ".join(f"{k} {v}" for k, v in constant.items())
    return html_page(f"KLOM summary: every method, grid point, sample, snapshot and group (chosen by {rule})",
                     sections, "One row per method, run (grid point), sample (selection: every run, on the "
                     "selection models and oracles; report: the chosen run, on the report models and the scored "
                     "oracles), snapshot epoch and group (forget / retain / val)." + (f" All rows: {shared}."
                                                                                        if shared else ""))


def table_html(name: str, table: pd.DataFrame) -> str:
    return html_page(name, [("", table)])


def console_summary(summary_csv: str | os.PathLike) -> str:
    """The short table printed when a run succeeds: the reported runs of ``results/summary.md``."""
    from .storage import load_table

    summary = load_table(summary_csv)
    rule = selection_rule(summary)
    rows = headline_runs(summary)
    columns = {"forget_p95": "forget P95", "retain_p95": "retain P95", "val_p95": "val P95",
               "selected_on": f"{rule} chosen", "reported_on": f"{rule} reported", "relative_cost": "cost"}
    table = rows.set_index(["forget_set", "method"])[list(columns)].rename(columns=columns)
    return (f"KLOM P95 of each method's run chosen by {rule} on the selection sample, reported on the report sample "
            f"(lower is better). Full table: {summary_csv}; the retrain baseline's budgets in results/summary.md.\n\n"
            f"{table.round(3).to_string()}")
