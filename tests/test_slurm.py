"""The tiny workflow through a real single-node Slurm (munge + slurmctld + slurmd) with fake GPUs.

Needs root and Debian's slurm packages (installed by tests/slurm/single-node-slurm.sh when missing).
Run it with ``python -m pytest -m slurm -s tests/test_slurm.py``; ``-s`` shows the submission count and
the wall time. The cluster is stopped at the end whatever happens.

It runs the literal command a user types in the repository root, ``snakemake --profile slurm`` (plus
the test cluster's CPU count and test-only polling settings), from a copy of the repository.

What it checks:
- snakemake found ./slurm and the workflow profile profiles/default by itself;
- every non-local job went through ``sbatch`` and finished COMPLETED in Slurm (the plugin's per-job
  logs under .snakemake/slurm_logs/ and Slurm's job completion log agree on the job ids);
- the GPU rules asked for a GPU and ran with CUDA_VISIBLE_DEVICES set by Slurm, the others without;
- results/klom_summary.csv is byte-identical to the one of a plain local run (``--cores 2``) of the
  same snapshot of the workflow.
"""

from __future__ import annotations

import difflib
import fcntl
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from unlearnbench import layout

pytestmark = [pytest.mark.slurm, pytest.mark.system]

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "tests" / "slurm" / "single-node-slurm.sh"
# what a user gets from a clean clone, library included: the Snakefile puts its src/ first on
# PYTHONPATH, so both runs use this snapshot even while the checkout changes
WORKFLOW_FILES = ("Snakefile", "workflow", "config", ".test", "profiles", "envs", "src", "slurm", "local")
TINY_CONFIG = ".test/config/config.yaml"
SUMMARY = layout.KLOM_SUMMARY

PARTITION = "debug"  # the cluster's default partition: the profile names none
FAKE_GPUS = 2
# rules that must ask for a GPU when the config says `resources: gpu: 1` (others may, too)
GPU_RULES = {"train_base", "train_oracle", "compute_margins", "unlearn"}
# The whole Slurm run; the plugin ignores SIGTERM, so it gets SIGINT and then SIGKILL 30 s later.
RUN_TIMEOUT = 1500
JOBCOMP_LOG = Path("/var/log/slurm/jobcomp.log")
JOB_ENV_LOG = Path("/var/log/slurm/job-env.log")  # written by the script's TaskProlog
CLUSTER_LOCK = Path("/run/unlearnbench-slurm-test.lock")
CLUSTER_LOCK_WAIT = 3600

SUBMITTED = re.compile(r"submitted with SLURM jobid (\d+) \(log: (\S+?)\)")
# snakemake prints "rule X:" for a job it submits and "localrule X:" for one it runs itself
REMOTE_RULE = re.compile(r"^\s*rule (\w+):", flags=re.M)


def _cluster_env() -> dict[str, str]:
    return {**os.environ, "SLURM_FAKE_GPUS": str(FAKE_GPUS), "SLURM_PARTITION": PARTITION}


def _script(action: str, timeout: int) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(["bash", str(SCRIPT), action], env=_cluster_env(), capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired as err:
        out = (err.stdout or b"").decode(errors="replace") if isinstance(err.stdout, bytes) else (err.stdout or "")
        return subprocess.CompletedProcess(err.cmd, 124, out, f"timed out after {timeout} s")


def _tail(proc: subprocess.CompletedProcess, n: int = 4000) -> str:
    return f"stdout:\n{proc.stdout[-n:]}\nstderr:\n{proc.stderr[-n:]}"


@pytest.fixture(scope="module")
def cluster_lock():
    """One test run at a time owns the machine's single-node cluster: `start` stops daemons it finds
    running, which would pull the cluster from under another run of this test on the same machine."""
    if os.geteuid() != 0:
        pytest.skip("the Slurm test needs root (it installs packages and starts munge/slurmctld/slurmd)")
    with open(CLUSTER_LOCK, "w") as lock:
        deadline = time.monotonic() + CLUSTER_LOCK_WAIT
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    pytest.skip(f"another run of this test held {CLUSTER_LOCK} for {CLUSTER_LOCK_WAIT} s")
                time.sleep(5)
        yield


@pytest.fixture(scope="module")
def slurm_cluster(cluster_lock):
    """A running single-node cluster with FAKE_GPUS fake GPUs; stopped on teardown, always."""
    install = _script("install", timeout=1300)  # the script bounds apt itself (2 x 600 s)
    if install.returncode != 0:
        pytest.skip(f"could not install Debian's slurm packages (exit {install.returncode}):\n{_tail(install, 1500)}")
    start = _script("start", timeout=300)
    try:
        if start.returncode == 3:
            pytest.skip(f"this machine has a Slurm configuration of its own; not touching it:\n{start.stderr[-1000:]}")
        if start.returncode != 0:
            pytest.fail(f"the single-node Slurm did not come up (exit {start.returncode}):\n{_tail(start)}")
        print(f"\n{start.stdout.strip()}")
        yield
    finally:
        if start.returncode != 3:
            stop = _script("stop", timeout=120)
            print(f"\n{stop.stdout.strip()}{stop.stderr.strip()}")


def _copy_workflow(dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for name in WORKFLOW_FILES:
        src = REPO / name
        if src.is_symlink():  # ./slurm -> profiles/slurm, as in a clone
            os.symlink(os.readlink(src), dest / name)
        elif src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        elif src.exists():
            shutil.copy2(src, dest / name)
    return dest


def _snakemake_env(workdir: Path) -> dict[str, str]:
    env = dict(os.environ)
    # the copy's library, installed or not; sbatch --export=ALL hands this environment to the jobs
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(workdir / "src"), env.get("PYTHONPATH")) if p)
    env.setdefault("PYTHONHASHSEED", "0")
    # only Slurm may set it: a value inherited from this shell would mask the check below
    env.pop("CUDA_VISIBLE_DEVICES", None)
    return env


def _node_cpus() -> int:
    cpus = subprocess.run(["sinfo", "-h", "-o", "%c"], capture_output=True, text=True, timeout=30).stdout.split()
    return int(cpus[0]) if cpus else 1


def _snakemake_command() -> list[str]:
    """`snakemake` of the Python running the tests (the console script a user types)."""
    script = Path(sys.executable).with_name("snakemake")
    return [str(script)] if script.exists() else [sys.executable, "-m", "snakemake"]


def _jobcomp_states() -> dict[str, str]:
    """Slurm job id -> final state, from the job completion log (works without slurmdbd)."""
    states = {}
    if JOBCOMP_LOG.exists():
        for line in JOBCOMP_LOG.read_text().splitlines():
            fields = dict(item.split("=", 1) for item in line.split() if "=" in item)
            if "JobId" in fields:
                states[fields["JobId"]] = fields.get("JobState", "")
    return states


def _job_env() -> dict[str, str]:
    """Slurm job id -> CUDA_VISIBLE_DEVICES ("unset" when absent) of its batch step."""
    env = {}
    if JOB_ENV_LOG.exists():
        for line in JOB_ENV_LOG.read_text().splitlines():
            fields = dict(item.split("=", 1) for item in line.split() if "=" in item)
            if fields.get("step") == "batch":
                env[fields["job"]] = fields.get("CUDA_VISIBLE_DEVICES", "unset")
    return env


def _rules_of(slurm_log: Path) -> set[str]:
    """Rules of a submission, from the plugin's log folder: rule_<rule> or group_<group>_<rule>[_<rule>...]."""
    folder = slurm_log.parent.name
    if folder.startswith("rule_"):
        return {folder.removeprefix("rule_")}
    text = slurm_log.read_text(errors="replace") if slurm_log.exists() else ""
    return set(re.findall(r"^\s*(?:localrule|rule) (\w+):", text, flags=re.M)) or {folder}


def _gpu_rules(output: str) -> set[str]:
    """Rules whose jobs asked for gpu=<n>, n > 0, from the job blocks snakemake printed."""
    rules, rule = set(), None
    for line in output.splitlines():
        if match := re.match(r"\s*(?:localrule|rule) (\w+):", line):
            rule = match.group(1)
        elif rule and (match := re.match(r"\s*resources: (.*)", line)):
            if any(int(n) > 0 for n in re.findall(r"\bgpu=(\d+)", match.group(1))):
                rules.add(rule)
            rule = None
    return rules


def _run_locally(workdir: Path) -> float:
    """The plain local run of the tiny config that the Slurm run must reproduce; returns its wall time."""
    cmd = [sys.executable, "-m", "snakemake", "--cores", "2", "--configfile", TINY_CONFIG]
    start = time.monotonic()
    proc = subprocess.run(cmd, cwd=workdir, env=_snakemake_env(workdir), capture_output=True, text=True,
                          timeout=1800)
    if proc.returncode != 0:
        pytest.fail(f"the local run of the tiny config failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n"
                    f"{proc.stderr[-5000:]}")
    return time.monotonic() - start


def test_tiny_workflow_through_slurm(slurm_cluster, tmp_path, record_property):
    workdir = _copy_workflow(tmp_path / "slurm")
    # the local reference run works on a copy of the same snapshot (library in src/ included)
    local_dir = tmp_path / "local"
    shutil.copytree(workdir, local_dir)
    # the tiny config as is, but the GPU rules ask for one GPU each; the fake GPUs run nothing, so the
    # jobs are told to use the CPU (resources.device: cpu) while they hold the GPU Slurm gave them
    (workdir / "gpu.yaml").write_text("resources:\n  gpu: 1\n  device: cpu\n")
    cmd = [
        "timeout", "-s", "INT", "-k", "30", str(RUN_TIMEOUT),
        *_snakemake_command(), "--profile", "slurm",
        "--configfile", TINY_CONFIG, "gpu.yaml",
        # the test node's CPUs cap a submission (the profile's 8 would never be granted)
        "--cores", str(_node_cpus()),
        # test-only plugin settings: poll fast, keep the per-job logs of successful jobs as evidence
        "--slurm-init-seconds-before-status-checks", "2",
        "--slurm-keep-successful-logs",
        "--latency-wait", "10",
    ]
    local_wall = _run_locally(local_dir)
    print(f"\nlocal run: wall time {local_wall:.1f} s")

    start = time.monotonic()
    proc = subprocess.run(cmd, cwd=workdir, env=_snakemake_env(workdir), capture_output=True, text=True,
                          timeout=RUN_TIMEOUT + 120)
    wall = time.monotonic() - start
    output = proc.stdout + proc.stderr
    (tmp_path / "snakemake-slurm.log").write_text(output)

    submissions = [(jobid, Path(log)) for jobid, log in SUBMITTED.findall(output)]
    record_property("slurm_submissions", len(submissions))
    record_property("slurm_wall_s", round(wall, 1))
    print(f"\nSlurm run: {len(submissions)} submissions, wall time {wall:.1f} s (exit {proc.returncode})")
    if proc.returncode != 0:
        logs = "\n".join(f"--- {p}\n{p.read_text(errors='replace')[-1500:]}"
                         for p in sorted((workdir / ".snakemake" / "slurm_logs").rglob("*.log")))
        squeue = subprocess.run(["squeue", "--states=all", "-o", "%i %j %T %r"], capture_output=True, text=True,
                                timeout=30).stdout
        pytest.fail(f"snakemake via Slurm failed (exit {proc.returncode}"
                    f"{', timed out' if proc.returncode in (124, 137) else ''}):\n{output[-6000:]}\n"
                    f"squeue:\n{squeue[-2000:]}\n{logs[-6000:]}")

    # 0. the literal command found the repository's slurm profile and the workflow profile
    assert "Using profiles slurm and workflow specific profile profiles/default" in output

    # 1. every submission is a real Slurm job that completed, with the plugin's log for it
    assert submissions, f"no 'submitted with SLURM jobid' lines in the output:\n{output[-3000:]}"
    states = _jobcomp_states()
    for jobid, log in submissions:
        assert log.is_file(), f"Slurm log of job {jobid} missing: {log}"
        assert states.get(jobid) == "COMPLETED", f"Slurm job {jobid} ({log.parent.name}): {states.get(jobid)!r}"
    # all non-local jobs of the DAG ran inside those submissions
    assert "Nothing to be done" not in output
    ran = {rule for _, log in submissions for rule in _rules_of(log)}
    expected = set(REMOTE_RULE.findall(output)) | GPU_RULES
    assert expected <= ran, f"rules never submitted to Slurm: {sorted(expected - ran)}"

    # 2. GPU rules got a GPU from Slurm (CUDA_VISIBLE_DEVICES in the job), the others did not
    gpu_rules = _gpu_rules(output)
    assert GPU_RULES <= gpu_rules, f"rules that did not ask for a GPU: {sorted(GPU_RULES - gpu_rules)}"
    job_env = _job_env()
    for jobid, log in submissions:
        visible = job_env.get(jobid)
        assert visible is not None, f"no TaskProlog record for Slurm job {jobid} in {JOB_ENV_LOG}"
        if _rules_of(log) & gpu_rules:
            devices = visible.split(",")
            assert visible != "unset" and all(d.isdigit() and int(d) < FAKE_GPUS for d in devices), (
                f"GPU job {jobid} ({log.parent.name}) ran with CUDA_VISIBLE_DEVICES={visible}")
        else:
            assert visible == "unset", f"CPU job {jobid} ({log.parent.name}) got CUDA_VISIBLE_DEVICES={visible}"

    # 3. same numbers as a local run of the same config
    slurm_summary = workdir / SUMMARY
    local_summary = local_dir / SUMMARY
    assert slurm_summary.is_file() and local_summary.is_file()
    if slurm_summary.read_bytes() != local_summary.read_bytes():
        diff = "".join(difflib.unified_diff(local_summary.read_text().splitlines(True),
                                            slurm_summary.read_text().splitlines(True), "local", "slurm", n=0))
        pytest.fail(f"{SUMMARY} differs between the local and the Slurm run:\n{diff[:6000]}")
