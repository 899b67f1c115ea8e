"""Shared fixtures: a copy of the workflow in a temp folder, and a runner for snakemake in it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
WORKFLOW_FILES = ("Snakefile", "workflow", "config", ".test", "profiles", "envs")
TINY_CONFIG = ".test/config/config.yaml"


def copy_workflow(dest: Path) -> Path:
    """The workflow without results: what a user gets from a clean clone."""
    for name in WORKFLOW_FILES:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
        elif src.exists():
            shutil.copy2(src, dest / name)
    return dest


def snakemake(workdir: Path, *args: str, check: bool = True, timeout: int = 600,
              env: dict | None = None) -> subprocess.CompletedProcess:
    """Run snakemake in ``workdir``; on failure show its output and the job logs."""
    cmd = [sys.executable, "-m", "snakemake", "--cores", "2", *args]
    proc = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})
    if check and proc.returncode != 0:
        logs = "\n".join(f"--- {p}\n{p.read_text()[-2000:]}" for p in sorted((workdir / "logs").rglob("*.log")))
        pytest.fail(f"snakemake {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n"
                    f"{proc.stderr[-5000:]}\n{logs[-6000:]}")
    return proc


def planned_jobs(proc: subprocess.CompletedProcess) -> dict[str, int]:
    """Rule -> job count from the 'Job stats' table of a (dry) run; empty when nothing is to be done."""
    text = proc.stdout + proc.stderr
    counts: dict[str, int] = {}
    if "Job stats:" not in text:
        return counts
    table = text.split("Job stats:", 1)[1].splitlines()
    for line in table[3:]:
        parts = line.split()
        if len(parts) != 2 or parts[0] == "total":
            break
        counts[parts[0]] = int(parts[1])
    return counts


SNAKEMAKE_FIXTURES = {"tiny_run", "workflow_copy"}


def pytest_collection_modifyitems(items):
    """A test that runs the workflow through one of the snakemake fixtures is a workflow test, marked or not:
    the fast lane (``-m "not workflow and not system"``) must not start a snakemake run by a fixture."""
    for item in items:
        if SNAKEMAKE_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.workflow)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """The tiny config run end to end once; tests read its results (and must not modify them)."""
    workdir = copy_workflow(tmp_path_factory.mktemp("tiny"))
    proc = snakemake(workdir, "--configfile", TINY_CONFIG, timeout=1800)  # a shared, busy machine can be slow
    (workdir / "tiny_run.out").write_text(proc.stdout + proc.stderr)  # what the user saw (the onsuccess summary)
    return workdir


@pytest.fixture
def workflow_copy(tmp_path) -> Path:
    return copy_workflow(tmp_path)


os.environ.setdefault("PYTHONHASHSEED", "0")
