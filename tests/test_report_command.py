"""`unlearnbench report`: the HTML report only of an up-to-date run, and never a half-written one."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from conftest import TINY_CONFIG
from unlearnbench import layout, report_command
from unlearnbench.report_command import ReportError, build_report

# Stands in for `python -m snakemake`: a dry run says whatever PENDING holds; --report writes half a report and
# dies by SIGKILL (as a killed or out-of-disk snakemake --report would), or writes a whole one.
FAKE_SNAKEMAKE = r"""
import os, signal, sys
from unlearnbench import layout
args = sys.argv[1:]
if "--dry-run" in args:
    print(os.environ["FAKE_DRY_RUN"])
    sys.exit(0)
path = args[args.index("--report") + 1]
with open(path, "w") as fh:
    fh.write("<html>new report, first half")
    fh.flush()
    if os.environ.get("FAKE_KILL"):
        os.kill(os.getpid(), signal.SIGKILL)
    fh.write(" and second half</html>")
"""


@pytest.fixture
def fake_snakemake(monkeypatch):
    monkeypatch.setattr(report_command, "snakemake_command", lambda args: [sys.executable, "-c", FAKE_SNAKEMAKE, *args])
    monkeypatch.setenv("FAKE_DRY_RUN", "Nothing to be done (all requested files are present and up to date).")
    return monkeypatch


def test_a_report_killed_mid_write_leaves_the_previous_one_intact(tmp_path, fake_snakemake):
    out = tmp_path / "results" / "report.html"
    out.parent.mkdir()
    out.write_text("<html>previous good report</html>")
    fake_snakemake.setenv("FAKE_KILL", "1")
    with pytest.raises(ReportError, match="unchanged"):
        build_report(out)
    assert out.read_text() == "<html>previous good report</html>"
    assert sorted(p.name for p in out.parent.iterdir()) == ["report.html"]  # no temp file left behind

    fake_snakemake.delenv("FAKE_KILL")
    build_report(out)
    assert out.read_text() == "<html>new report, first half and second half</html>"


def test_pending_jobs_refuse_the_report_unless_allowed(tmp_path, fake_snakemake, capsys):
    fake_snakemake.setenv("FAKE_DRY_RUN", "Job stats:\njob      count\n-----  -----\nscore_klom   3\ntotal    3\n\nmore")
    out = tmp_path / "report.html"
    with pytest.raises(ReportError, match="jobs are pending") as err:
        build_report(out)
    assert "score_klom   3" in str(err.value) and "more" not in str(err.value)
    assert not out.exists()
    build_report(out, allow_stale=True)
    assert out.exists() and "WARNING: jobs are pending" in capsys.readouterr().err


def run_cli(workdir, *args):
    return subprocess.run([sys.executable, "-m", "unlearnbench", "report", *args], cwd=workdir, capture_output=True,
                          text=True, timeout=600)


@pytest.mark.workflow
def test_the_report_command_through_snakemake(tiny_run, tmp_path):
    work = tmp_path / "run"
    shutil.copytree(tiny_run, work, symlinks=True)  # keeps mtimes and .snakemake: nothing to do in the copy
    proc = run_cli(work, "--configfile", TINY_CONFIG)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = work / layout.REPORT_HTML
    good = report.read_bytes()
    assert len(good) > 10_000 and b"klom_summary" in good

    # a changed config leaves jobs pending: refused with exit 2, the good report stays
    proc = run_cli(work, "--configfile", TINY_CONFIG, "--config", "klom={bins: 6}")
    assert proc.returncode == 2 and "jobs are pending" in proc.stderr and "score_klom" in proc.stderr
    assert report.read_bytes() == good
