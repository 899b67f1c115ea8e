"""The warm process (unlearnbench.warm): a job run in a fork of it is the job run by its script."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import pytest

from unlearnbench import warm

JOBS = '''
import json, logging, os, time

def write(out, value, numbers):
    logging.getLogger("job").info("writing %s", out)
    with open(out, "w") as f:
        json.dump({"value": value, "numbers": numbers, "cwd": os.getcwd(),
                   "env": os.environ.get("JOB_ONLY"), "pid": os.getpid()}, f)

def fail(message):
    raise ValueError(message)

def blas_threads(out):
    from threadpoolctl import threadpool_info
    with open(out, "w") as f:
        json.dump(sorted((i["user_api"], i["num_threads"]) for i in threadpool_info()), f)

def record(out, values):
    with open(out, "w") as f:
        json.dump({"values": values, "pid": os.getpid()}, f)

def slow(pid_file, out):
    with open(pid_file, "w") as f:
        f.write(str(os.getpid()))
    time.sleep(30)
    open(out, "w").close()
'''


@pytest.fixture(params=[("json",)])
def server(request, tmp_path, monkeypatch):
    """A warm process that may run functions of a test module `warmjobs` (and of nothing else)."""
    (tmp_path / "mods").mkdir()
    (tmp_path / "mods" / "warmjobs.py").write_text(textwrap.dedent(JOBS))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path / "mods"), *sys.path]))
    monkeypatch.syspath_prepend(str(tmp_path / "mods"))  # the tests name the module's functions too
    process, path = warm.start(preload=request.param, allowed_prefix="warmjobs:")
    monkeypatch.setenv(warm.ENV, path)
    yield process, path
    warm.stop(process, path)


def test_a_job_runs_in_a_fork_with_the_scripts_directory_environment_and_log(server, tmp_path, monkeypatch):
    workdir = tmp_path / "work"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    monkeypatch.setenv("JOB_ONLY", "set by the job's environment")
    log = tmp_path / "job.log"
    status = warm.run("warmjobs:write", {"out": "out.json", "value": "é", "numbers": [1, 2.5]}, str(log))
    assert status == 0
    written = json.loads((workdir / "out.json").read_text())
    assert written["value"] == "é" and written["numbers"] == [1, 2.5]
    assert written["cwd"] == str(workdir)
    assert written["env"] == "set by the job's environment"
    assert written["pid"] not in (os.getpid(), server[0].pid)
    assert "writing out.json" in log.read_text()


def test_a_failing_job_is_a_nonzero_status_with_its_traceback_in_the_log(server, tmp_path):
    log = tmp_path / "job.log"
    assert warm.run("warmjobs:fail", {"message": "bad input"}, str(log)) == 1
    assert "ValueError: bad input" in log.read_text()


def test_only_allowed_functions_run(server, tmp_path):
    log = tmp_path / "job.log"
    victim = tmp_path / "keep"
    victim.touch()
    assert warm.run("os:remove", {"path": str(victim)}, str(log)) == 1
    assert victim.exists()
    assert "runs stage functions only" in log.read_text()


def test_without_a_warm_process_the_script_runs_the_job_itself(tmp_path, monkeypatch):
    monkeypatch.delenv(warm.ENV, raising=False)
    assert warm.run("warmjobs:write", {}, None) is None
    monkeypatch.setenv(warm.ENV, str(tmp_path / "gone.sock"))
    assert warm.run("warmjobs:write", {}, None) is None


def test_a_killed_script_kills_its_job(server, tmp_path):
    """Snakemake kills a job's script (Ctrl-C, a failed sibling): the fork must not go on and write outputs."""
    pid_file, out = tmp_path / "pid", tmp_path / "out"
    client = subprocess.Popen([sys.executable, "-c", (
        "from unlearnbench import warm; "
        f"warm.run('warmjobs:slow', {{'pid_file': {str(pid_file)!r}, 'out': {str(out)!r}}}, None)")])
    deadline = time.monotonic() + 30
    while not pid_file.exists() or not pid_file.read_text():
        assert time.monotonic() < deadline, "the job never started"
        time.sleep(0.05)
    worker = int(pid_file.read_text())
    client.send_signal(signal.SIGKILL)
    client.wait()
    deadline = time.monotonic() + 10
    while _alive(worker):
        assert time.monotonic() < deadline, "the job outlived its script"
        time.sleep(0.05)
    assert not out.exists()


def test_the_warm_process_exits_with_the_process_that_started_it(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(sys.path))
    starter = subprocess.run([sys.executable, "-c", (
        "from unlearnbench import warm; p, path = warm.start(preload=('json',)); print(path, p.pid)")],
        capture_output=True, text=True, check=True)
    server = int(starter.stdout.split()[-1])
    deadline = time.monotonic() + 10
    path = starter.stdout.split()[-2]
    while _alive(server) or os.path.exists(os.path.dirname(path)):
        assert time.monotonic() < deadline, "the warm process outlived Snakemake, or left its socket"
        time.sleep(0.1)


def test_a_killed_warm_process_leaves_nothing_behind_the_next_start(tmp_path, monkeypatch):
    """SIGKILL leaves the socket's directory in the temp folder; the next start removes it, and nothing that
    belongs to a live warm process or to one still starting."""
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(warm.tempfile, "tempdir", None)  # re-read TMPDIR
    killed, killed_path = warm.start(preload=("json",))
    killed.kill()
    killed.wait()
    stale = os.path.dirname(killed_path)
    assert os.path.exists(killed_path), "SIGKILL should leave the socket behind (or this test tests nothing)"
    an_hour_ago = time.time() - 3600
    os.utime(stale, (an_hour_ago, an_hour_ago))
    live, live_path = warm.start(preload=("json",))
    try:
        assert not os.path.exists(stale) and os.path.exists(live_path)
        young = tmp_path / "unlearnbench-warm-starting"  # a warm process that has not bound its socket yet
        young.mkdir()
        assert warm.sweep_stale_directories(str(tmp_path)) == []  # the live one answers, the young one waits
        assert warm.sweep_stale_directories(str(tmp_path), min_age_s=0) == [str(young)]
        assert os.path.exists(live_path) and live.poll() is None  # probed, and still serving
    finally:
        warm.stop(live, live_path)
    assert not os.path.exists(os.path.dirname(live_path))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (exited, not yet reaped by an init that is slow) counts as gone
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split(") ")[-1].split()[0] != "Z"


@pytest.mark.parametrize(
    "enabled, local_exec, exec_mode, deployment, expected",
    [
        (True, True, "default", set(), True),
        (False, True, "default", set(), False),
        (True, False, "default", set(), False),  # a cluster executor: each job on its own node
        (True, True, "remote", set(), False),  # inside a cluster job
        (True, True, "default", {"conda"}, False),  # jobs in another environment
    ],
)
def test_only_plain_local_runs_start_a_warm_process(enabled, local_exec, exec_mode, deployment, expected):
    assert warm.wanted(enabled, local_exec, exec_mode, deployment) is expected


def test_call_gives_a_job_the_same_arguments_in_the_warm_process_as_in_its_own(server, tmp_path, monkeypatch):
    """stages.call: the fork receives what the script would have passed (plain JSON values: a tuple param
    arrives as a list on both paths)."""
    import importlib

    from test_stages import fake_job
    from unlearnbench.stages import call

    warmjobs = importlib.import_module("warmjobs")
    params = {"values": {"grid": (1, 2), "lr": 0.1, "name": "é", "none": None}}
    results = {}
    for where in ("warm", "here"):
        if where == "here":
            monkeypatch.delenv(warm.ENV)
        out = tmp_path / f"{where}.json"
        call(warmjobs.record, fake_job(tmp_path, output={"out": str(out)}, params=params))
        results[where] = json.loads(out.read_text())
    assert results["warm"]["values"] == results["here"]["values"] == {
        "grid": [1, 2], "lr": 0.1, "name": "é", "none": None}
    assert results["warm"]["pid"] != results["here"]["pid"] == os.getpid()


def test_a_job_failing_in_the_warm_process_fails_its_script(server, tmp_path):
    import importlib

    from test_stages import fake_job
    from unlearnbench.stages import call

    warmjobs = importlib.import_module("warmjobs")
    with pytest.raises(SystemExit) as exit:
        call(warmjobs.fail, fake_job(tmp_path, params={"message": "no such forget set"}))
    assert exit.value.code == 1
    assert "ValueError: no such forget set" in (tmp_path / "job.log").read_text()


def test_stage_modules_import_no_torch():
    """A job's script imports its stage module before handing the job over: the warm start pays only if
    that import is light (torch, pandas, matplotlib are imported inside the stage functions)."""
    code = ("import pkgutil, importlib, sys, unlearnbench.stages as s\n"
            "for m in pkgutil.iter_modules(s.__path__): importlib.import_module('unlearnbench.stages.' + m.name)\n"
            "print(sorted(x for x in ('torch', 'pandas', 'matplotlib', 'scipy') if x in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_param_that_is_not_plain_data_is_an_error_naming_it(tmp_path):
    """A set (or an int-keyed dict) would reach a job differently through JSON: refused on both paths."""
    from test_stages import fake_job
    from unlearnbench.stages import StageArgumentError, job_arguments

    def stage(out, classes):
        pass

    with pytest.raises(StageArgumentError, match="the params 'classes' is not plain data"):
        job_arguments(stage, fake_job(tmp_path, output={"out": "x"}, params={"classes": {3, 5}}))
    with pytest.raises(StageArgumentError, match="'classes'"):
        job_arguments(stage, fake_job(tmp_path, output={"out": "x"}, params={"classes": {3: "three"}}))


@pytest.mark.parametrize("server", [("numpy", "torch")], indirect=True)
@pytest.mark.parametrize("threads", ["1", "2"])
def test_a_job_has_the_blas_and_openmp_threads_a_fresh_process_would_have(server, tmp_path, monkeypatch, threads):
    """Snakemake sets OMP_NUM_THREADS, OPENBLAS_NUM_THREADS, ... to a job's threads; libraries read them when
    loaded. The fork must run with the same counts (a BLAS sum split otherwise comes out different in its last
    bits: seen in the default run's datamodel fit quality, -1.27e-14 vs -1.34e-14)."""
    for name in ("OMP_NUM_THREADS", "GOTO_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                 "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS"):
        monkeypatch.setenv(name, threads)
    assert warm.run("warmjobs:blas_threads", {"out": str(tmp_path / "warm.json")}, None) == 0
    subprocess.run([sys.executable, "-c", "import numpy, torch, warmjobs; "
                    f"warmjobs.blas_threads({str(tmp_path / 'fresh.json')!r})"], check=True)
    fresh = json.loads((tmp_path / "fresh.json").read_text())
    assert fresh and json.loads((tmp_path / "warm.json").read_text()) == fresh


def test_a_supervisor_answers_when_its_job_exits_not_at_its_next_poll():
    """The exit status goes back to the script as the job ends (each poll a job waited for cost every job of
    a run 25 ms on average); with a poll of 30 s only the exit itself can wake the supervisor in time."""
    if warm._exit_notice(os.getpid()) is None:
        pytest.skip("no pidfd on this system: the supervisor polls")
    script, supervisor = socket.socketpair()
    with script, supervisor:
        worker = os.fork()
        if worker == 0:
            time.sleep(0.2)
            os._exit(3)
        start = time.perf_counter()
        assert warm._wait(worker, supervisor, poll_s=30.0) == 3
        assert time.perf_counter() - start < 5.0


def test_a_supervisor_kills_its_job_when_the_script_goes_away():
    script, supervisor = socket.socketpair()
    with supervisor:
        worker = os.fork()
        if worker == 0:
            script.close()  # the script's end stays open only in the script (as in a run)
            time.sleep(60)
            os._exit(0)
        script.close()
        start = time.perf_counter()
        assert warm._wait(worker, supervisor, poll_s=30.0) is None
        assert time.perf_counter() - start < 5.0
    with pytest.raises(ChildProcessError):
        os.waitpid(worker, os.WNOHANG)
