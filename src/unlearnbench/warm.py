"""Warm start for local runs: import torch once, run each job in a fork of that process.

A digits job does seconds of work, and a fresh Python pays about two more to import torch (and
numpy, pandas, scipy) before it starts: a third of the default run's job time. A local run therefore
starts one *warm process* (``start``, from the Snakefile's ``onstart``) that imports those libraries
and waits on a Unix socket. A job's script (``unlearnbench.stages.call``) sends it the job — the stage
function's dotted name and its keyword arguments as JSON — and the warm process forks: the fork runs
exactly what the script would have run (same function, same arguments, same log file, the job's
working directory and environment), and its exit status becomes the script's. Results are the same
bytes either way (tests/test_warm.py); only start-up time differs.

What it does not change, and why:
- Nothing is unpickled: requests are JSON, and only functions under ``unlearnbench.stages`` may be
  named (``ALLOWED_PREFIX``). The socket lives in a fresh 0700 directory and the server checks the
  peer's uid (SO_PEERCRED).
- Only the libraries in ``PRELOAD`` are imported ahead; the project's own modules are imported by each
  fork, so an edit made during a run reaches later jobs as it would without the warm process.
- The warm process never runs torch code itself: a fork taken before any OpenMP or CUDA
  initialisation is safe (each fork sets its own thread count and device, as a fresh job does).
- Thread counts: Snakemake gives a job's process ``OMP_NUM_THREADS``, ``OPENBLAS_NUM_THREADS``, … = its
  ``threads``, which BLAS and OpenMP read once, when loaded. The warm process loads them with one thread
  (``_ONE_THREAD``) and each fork sets the job's count (threadpoolctl): a BLAS reduction split over another
  number of threads sums in another order, and would change results in the last bits.
- A job killed by Snakemake (Ctrl-C, a failed sibling with no --keep-going) closes its socket; the
  fork's supervisor then kills the fork, so no orphan writes outputs after Snakemake gave up on them.
- The server exits when the Snakemake process that started it is gone.
- Local runs only: not under a cluster executor (a job there runs on its own node and allocation)
  nor with ``--sdm conda``/apptainer (jobs there run in another environment). Off with
  ``resources.warm_start: false``. While it is on, a job's ``benchmark:`` file still times the job's
  wall clock, but its CPU and memory columns describe the small client process, not the fork: turn it
  off to profile memory.
"""

from __future__ import annotations

import glob
import importlib
import json
import os
import select
import signal
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import time
import traceback
from typing import Any

ENV = "UNLEARNBENCH_WARM"  # the socket's path, in the environment of the jobs of a local run
ALLOWED_PREFIX = "unlearnbench.stages."
PRELOAD = ("numpy", "pandas", "scipy.stats", "safetensors.torch", "torch", "torch.nn.functional")
_READY = b"ready\n"
# what Snakemake sets for a job of one thread (snakemake/shell.py): the warm process loads its libraries so
_ONE_THREAD = {name: "1" for name in ("OMP_NUM_THREADS", "GOTO_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                      "MKL_NUM_THREADS", "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")}
_SOCKET_NAME = "jobs.sock"
POLL_S = 0.05  # how often a supervisor looks for its job's exit where the kernel cannot tell it (no pidfd)
_DIRECTORY_PREFIX = "unlearnbench-warm-"


# -- the Snakefile's side ------------------------------------------------------------------------


def wanted(enabled: bool, local_exec: bool, exec_mode: str, deployment: set[str]) -> bool:
    """Whether this Snakemake process should start a warm process: a plain local run with the option on."""
    return bool(enabled and local_exec and exec_mode == "default" and not deployment)


def start(preload: tuple[str, ...] = PRELOAD, allowed_prefix: str = ALLOWED_PREFIX,
          timeout: float = 120.0) -> tuple[subprocess.Popen, str]:
    """Start the warm process; returns it and its socket path once it accepts jobs."""
    sweep_stale_directories()
    directory = tempfile.mkdtemp(prefix=_DIRECTORY_PREFIX)  # 0700: only this user connects
    path = os.path.join(directory, _SOCKET_NAME)
    settings = json.dumps({"path": path, "parent": os.getpid(), "preload": list(preload),
                           "allowed_prefix": allowed_prefix})
    process = subprocess.Popen([sys.executable, "-m", "unlearnbench.warm", settings], stdout=subprocess.PIPE,
                               env={**os.environ, **_ONE_THREAD})
    ready = process.stdout.readline() if _wait_readable(process.stdout, timeout) else b""
    if ready != _READY:
        process.kill()
        raise RuntimeError(f"the warm process did not start (exit status {process.poll()})")
    return process, path


def sweep_stale_directories(root: str | None = None, min_age_s: float = 60.0) -> list[str]:
    """Remove this user's socket directories of warm processes that are gone; return them.

    A warm process removes its directory as it leaves, but one killed with SIGKILL (the OOM killer, a killed
    process group) cannot. A directory stays while its socket accepts connections (a live run's: the probe is
    an empty job, which the warm process drops), and while it is younger than ``min_age_s`` (a warm process
    that has not bound its socket yet).
    """
    removed = []
    for directory in glob.glob(os.path.join(root or tempfile.gettempdir(), _DIRECTORY_PREFIX + "*")):
        try:
            info = os.lstat(directory)
        except OSError:
            continue
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or time.time() - info.st_mtime < min_age_s:
            continue
        path = os.path.join(directory, _SOCKET_NAME)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            try:
                probe.connect(path)
            except (ConnectionRefusedError, FileNotFoundError):  # nobody listens there, or no socket at all
                _remove(path)
                if not os.path.exists(directory):
                    removed.append(directory)
            except OSError:
                pass  # not ours to judge (e.g. a permission problem): leave it
    return removed


def stop(process: subprocess.Popen, path: str) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
    _remove(path)  # the server removes them as it leaves; a killed one cannot


def _wait_readable(stream, timeout: float) -> bool:
    return bool(select.select([stream], [], [], timeout)[0])


# -- the job's side ------------------------------------------------------------------------------


def run(target: str, kwargs: dict[str, Any], log: str | None) -> int | None:
    """Run ``target(**kwargs)`` in a fork of the warm process; its exit status, or None when there is no
    warm process to ask (then the caller runs the job itself)."""
    path = os.environ.get(ENV)
    if not path:
        return None
    request = {"target": target, "kwargs": kwargs, "log": log, "cwd": os.getcwd(), "env": dict(os.environ)}
    data = json.dumps(request).encode()  # before connecting: a value JSON cannot carry fails here, in the job
    try:
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.connect(path)
    except OSError:
        return None  # the warm process is gone (or never reachable from here): run in this process
    with conn:
        conn.sendall(data + b"\n")  # one line; the connection stays open: closing it cancels the job
        reply = b"".join(iter(lambda: conn.recv(65536), b""))
    if not reply:
        raise RuntimeError("the warm process closed the job's connection without a result")
    return int(json.loads(reply)["status"])


# -- the warm process ----------------------------------------------------------------------------


def serve(path: str, parent: int, preload: list[str], allowed_prefix: str) -> None:
    """Import ``preload``, then fork a supervisor per job until ``parent`` exits."""
    server = os.getpid()
    for module in preload:
        importlib.import_module(module)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # supervisors are reaped by the kernel
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(64)
    sys.stdout.buffer.write(_READY)
    sys.stdout.flush()
    try:
        while os.getppid() == parent:
            if not select.select([listener], [], [], 1.0)[0]:
                continue
            conn, _ = listener.accept()
            if not _same_user(conn):
                conn.close()
                continue
            if os.fork() == 0:
                listener.close()
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                try:
                    _supervise(conn, allowed_prefix)
                finally:
                    os._exit(0)
            conn.close()
    finally:
        if os.getpid() == server:  # not in a fork leaving through an exception
            _remove(path)


def _remove(path: str) -> None:
    """The socket and its private directory."""
    for remove, leftover in ((os.unlink, path), (os.rmdir, os.path.dirname(path))):
        try:
            remove(leftover)
        except OSError:
            pass


def _same_user(conn: socket.socket) -> bool:
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return uid == os.getuid()


def _supervise(conn: socket.socket, allowed_prefix: str) -> None:
    """Read one job, run it in a fork, send back its exit status; kill it if the job's script goes away."""
    request = json.loads(_read_line(conn))
    worker = os.fork()
    if worker == 0:
        conn.close()
        os._exit(_work(request, allowed_prefix))
    status = _wait(worker, conn)
    if status is not None:
        conn.sendall(json.dumps({"status": status}).encode())
        conn.close()


def _wait(worker: int, conn: socket.socket, poll_s: float = POLL_S) -> int | None:
    """The exit code of ``worker`` once it exits; None if the job's script went away first (then the worker is
    killed). Wakes on the worker's exit itself where the kernel offers a pidfd (Linux 5.3), else polls."""
    exited = _exit_notice(worker)
    try:
        while True:
            done, status = os.waitpid(worker, os.WNOHANG)
            if done:
                return os.waitstatus_to_exitcode(status)
            ready = select.select([conn] if exited is None else [conn, exited], [], [], poll_s)[0]
            if conn in ready:  # readable after our request was read: the script is gone
                os.kill(worker, signal.SIGKILL)
                os.waitpid(worker, 0)
                return None
    finally:
        if exited is not None:
            os.close(exited)


def _exit_notice(pid: int) -> int | None:
    """A file descriptor that becomes readable when child ``pid`` exits, or None where there is none."""
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None


def _read_line(conn: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\n"):
        chunk = conn.recv(65536)
        if not chunk:
            raise ConnectionError("the job's script closed its connection before sending the whole job")
        data += chunk
    return data


def _limit_threads(threads: str | None) -> None:
    """The job's BLAS/OpenMP thread count, as a fresh process would have read it from its environment."""
    if threads:
        from threadpoolctl import threadpool_limits

        threadpool_limits(int(threads))


def _work(request: dict, allowed_prefix: str) -> int:
    """In the fork: become the job (directory, environment, log), run the stage function."""
    try:
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        _limit_threads(os.environ.get("OMP_NUM_THREADS"))
        if request["log"]:
            from unlearnbench import logs

            logs.to_file(request["log"])
        target = request["target"]
        if not target.startswith(allowed_prefix):
            raise ValueError(f"the warm process runs stage functions only, not {target!r}")
        module, _, name = target.partition(":")
        function = getattr(importlib.import_module(module), name)
        function(**request["kwargs"])
    except BaseException:  # noqa: BLE001 - a job's failure of any kind is its exit status, as in a script
        traceback.print_exc()
        sys.stderr.flush()
        return 1
    sys.stderr.flush()
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    serve(**json.loads(sys.argv[1]))
