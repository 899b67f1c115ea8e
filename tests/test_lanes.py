"""The fast test lane (README: ``pytest -m "not workflow and not system"``) leaves out every test that runs
snakemake through a fixture or installs system packages, and keeps the library tests."""

from __future__ import annotations

import subprocess
import sys

from conftest import REPO

FILES = ["tests/test_report.py", "tests/test_slurm.py"]


def collected(*args: str) -> set[str]:
    proc = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *args,
                           *FILES], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return {line.split("[")[0] for line in proc.stdout.splitlines() if "::" in line}


def test_the_fast_lane_leaves_out_snakemake_fixtures_chromium_and_slurm():
    everything = collected()
    fast = collected("-m", "not workflow and not system")
    left_out = everything - fast
    assert "tests/test_report.py::test_training_jobs_log_their_progress" in left_out  # tiny_run, no marker of its own
    assert "tests/test_report.py::test_html_report_is_self_contained_and_renders_in_a_browser" in left_out  # apt-get
    slurm = {t for t in everything if t.startswith("tests/test_slurm.py")}
    assert slurm and slurm <= left_out  # root, apt-get and daemons
    assert "tests/test_report.py::test_summary_markdown_shows_the_rule_both_samples_and_the_optimism" in fast
