"""benchmarks/default_run.py's result comparison: KLOM P95 rows are matched per sample."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from default_run import klom_p95_delta  # noqa: E402

ROW = {"forget_set": 1, "method": "gradient_ascent", "run": "lr~0.05", "epoch": 3, "group": "forget"}


def write_summary(root: Path, rows: list[dict]) -> Path:
    (root / "results").mkdir(parents=True)
    pd.DataFrame(rows).to_csv(root / "results/klom_summary.csv", index=False)
    return root


def test_identical_summaries_with_a_selection_sample_compare_equal(tmp_path):
    # the same run and epoch scored on both samples: two rows that differ only in their sample
    rows = [{**ROW, "sample": "selection", "p95": 4.0}, {**ROW, "sample": "report", "p95": 6.5}]
    base, cand = write_summary(tmp_path / "a", rows), write_summary(tmp_path / "b", rows)
    assert klom_p95_delta(base, cand) == "klom_summary p95: 2 rows matched, max |Δ| 0, mean |Δ| 0"


def test_a_summary_from_before_the_selection_sample_is_matched_with_the_report_rows(tmp_path):
    base = write_summary(tmp_path / "a", [{**ROW, "p95": 6.0}])
    cand = write_summary(tmp_path / "b", [{**ROW, "sample": "selection", "p95": 4.0},
                                          {**ROW, "sample": "report", "p95": 6.5}])
    assert klom_p95_delta(base, cand) == "klom_summary p95: 1 rows matched, max |Δ| 0.5, mean |Δ| 0.5"
