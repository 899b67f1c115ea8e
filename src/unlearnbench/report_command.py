"""``unlearnbench report``: the HTML report, only of an up-to-date run, and never half-written.

``snakemake --report results/report.html`` writes straight to its destination: killed mid-write it leaves a
truncated (or 0-byte) file in place of a good report, and with jobs still pending it builds a report of stale or
missing results and exits 0. This command

1. runs ``snakemake --dry-run`` with the same config and refuses (exit 2) when any job is pending
   (``--allow-stale`` builds it anyway, with a warning);
2. has Snakemake write the report into a temporary folder outside the results tree;
3. copies it next to the destination and renames it over the destination (``storage.atomic_path``), so the
   previous report stays intact until the new one is complete.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from .storage import atomic_path

UP_TO_DATE = "Nothing to be done"  # what `snakemake --dry-run` prints when every target is current


class ReportError(Exception):
    """The report was not built; the message says why."""


def snakemake_command(args: Sequence[str]) -> list[str]:
    return [sys.executable, "-m", "snakemake", *args]


def config_args(configfile: Sequence[str] = (), config: Sequence[str] = ()) -> list[str]:
    """The Snakemake options that decide which run the report is of."""
    args = ["--configfile", *configfile] if configfile else []
    return args + (["--config", *config] if config else [])


def pending_jobs(options: Sequence[str], cwd: str | None = None) -> str | None:
    """None when the run is up to date; else Snakemake's dry-run output (its job list)."""
    proc = subprocess.run(snakemake_command(["--dry-run", *options]), cwd=cwd, capture_output=True, text=True)
    text = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise ReportError(f"snakemake --dry-run failed (exit {proc.returncode}):\n{text[-3000:]}")
    return None if UP_TO_DATE in text else text


def job_table(dry_run_output: str) -> str:
    """The 'Job stats' table of a dry run's output (rule and count per line, ending with the total)."""
    lines = dry_run_output.split("Job stats:", 1)[-1].strip().splitlines()
    end = next((i for i, line in enumerate(lines) if line.startswith("total")), len(lines) - 1)
    return "\n".join(lines[: end + 1])


def build_report(out: str | Path, options: Sequence[str] = (), allow_stale: bool = False,
                 cwd: str | None = None) -> None:
    """Write the report of the run ``options`` describe to ``out`` atomically (see the module docstring)."""
    pending = pending_jobs(options, cwd)
    if pending is not None:
        jobs = job_table(pending)
        if not allow_stale:
            raise ReportError(
                "jobs are pending, so the report would show stale or missing results; run snakemake first "
                f"(or pass --allow-stale). snakemake --dry-run plans:\n{jobs}"
            )
        print(f"WARNING: jobs are pending; this report shows stale or missing results:\n{jobs}",
              file=sys.stderr)
    out = Path(cwd or ".", out)
    with tempfile.TemporaryDirectory(prefix="unlearnbench-report-") as scratch:
        draft = Path(scratch) / out.name
        proc = subprocess.run(snakemake_command(["--report", str(draft), *options]), cwd=cwd, capture_output=True,
                              text=True)
        if proc.returncode != 0 or not draft.is_file() or draft.stat().st_size == 0:
            raise ReportError(f"snakemake --report failed (exit {proc.returncode}); {out} is unchanged:\n"
                              f"{(proc.stdout + proc.stderr)[-3000:]}")
        with atomic_path(out) as tmp:
            shutil.copyfile(draft, tmp)
