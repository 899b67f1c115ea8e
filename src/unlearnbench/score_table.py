"""The table of ``unlearnbench score``: one row per group from the scoring core's result, rendered as text for
the terminal, or written as CSV, JSON or Parquet."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .scoring import Scores

SCORE_COLUMNS = ("group", "n_points", "n_models_unlearned", "n_models_oracle", "p95", "p95_low", "p95_high", "p99",
                 "mean", "std", "accuracy", "oracle_accuracy", "epsilon_mean", "epsilon_max", "forget_score",
                 "final_score", "direction")


def score_table(scored: Scores, n_unlearned: int, n_oracle: int, direction: str, with_correct: set[str]) -> list[dict]:
    """One row per group in :data:`SCORE_COLUMNS` order. The ε columns describe the forget points: they are on
    the forget row (NaN on the others); accuracy columns are there only for the correctness flags given."""
    eps = {k: v for k, v in (scored.epsilon or {}).items() if k != "n_forget"}
    rows = []
    for row in scored.rows:
        full = {"p95_low": float("nan"), "p95_high": float("nan"), **row, "n_models_unlearned": n_unlearned,
                "n_models_oracle": n_oracle, "direction": direction}
        full |= eps if row["group"] == "forget" else dict.fromkeys(eps, float("nan"))
        for who, column in (("unlearned", "accuracy"), ("oracle", "oracle_accuracy")):
            if who not in with_correct:
                del full[column]
        rows.append({c: full[c] for c in SCORE_COLUMNS if c in full})
    return rows


SHOWN_COLUMNS = ("group", "n_points", "p95", "p95_low", "p95_high", "p99", "mean", "accuracy", "oracle_accuracy")


def format_value(value) -> str:
    if isinstance(value, float):
        return "-" if value != value else f"{value:.4f}"  # NaN: not computed
    return str(value)


def render_table(rows: list[dict], columns: Sequence[str]) -> str:
    """``columns`` of ``rows`` as a fixed-width table (text left-aligned, numbers right-aligned); NaN shows as ``-``."""
    cells = [[format_value(r[c]) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    align = [str.ljust if isinstance(rows[0][c], str) else str.rjust for c in columns]
    lines = ["  ".join(a(c, w) for a, c, w in zip(align, columns, widths))]
    lines += ["  ".join(a(v, w) for a, v, w in zip(align, row, widths)) for row in cells]
    return "\n".join(lines)


def write_table(path: Path, rows: list[dict]) -> None:
    """The table as CSV, JSON (a list of records, NaN as null) or Parquet, by suffix, written atomically."""
    import json
    import math

    from unlearnbench.storage import atomic_path, save_table

    if path.suffix == ".json":
        records = [{k: None if isinstance(v, float) and math.isnan(v) else v for k, v in r.items()} for r in rows]
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(records, indent=2) + "\n")
        return
    import pandas as pd

    save_table(path, pd.DataFrame(rows))
