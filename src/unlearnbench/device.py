"""Which device a job runs on: what its ``gpu`` resource declares, and nothing else.

Three decisions, in the order they are taken:

1. **At parse time** (:func:`gpus_per_job`, no torch): ``resources.gpu: auto`` becomes 0 or 1 GPU per
   torch job, once, in the main snakemake process: 1 when ``--resources gpu=N`` gives N > 0 (the user
   says there are GPUs: a workstation's ``snakemake --cores 8 --resources gpu=4``, or the slurm
   profile's budget) or, without that, when this host shows an NVIDIA GPU (:func:`visible_gpus`); 0
   otherwise. ``resources.device: cpu`` makes it 0 and ``cuda`` makes it 1. The answer is handed to
   the jobs' own snakemake processes (group jobs, cluster jobs) through the environment, so that a
   compute node does not decide differently from the host that scheduled the job.
2. **Per job** (:func:`device_request`): a job whose ``gpu`` resource is 0 runs on the CPU; one that
   declares a GPU asks for ``cuda`` (``cuda/<k>`` with ``resources.jobs_per_gpu: k``), unless
   ``resources.device: cpu`` forces the CPU (for test clusters whose GPUs are fake).
3. **In the job** (:func:`claim_device`): Snakemake's ``gpu`` resource counts GPU jobs but does not say
   *which* GPU, so a ``cuda`` job takes a free slot itself: one lock file per (GPU, slot), k slots per
   GPU, held for the life of the process; when all are taken it waits for one. It never falls back
   to the CPU: with no GPU visible it stops with a message saying so. Where Slurm has handed the job
   its GPUs (``SLURM_STEP_GPUS`` / ``SLURM_JOB_GPUS``) there is no locking when it sees one GPU, and
   the locks are private to the allocation when it sees several (Slurm renumbers devices per job:
   "GPU 0" of two jobs is not the same GPU).

Lock files live in a folder of the user's own (``$XDG_RUNTIME_DIR/unlearnbench-gpu-locks``, else
``<tmp>/unlearnbench-gpu-locks-<uid>``; ``UNLEARNBENCH_GPU_LOCK_DIR`` overrides), so users of one host
do not trip over each other's files.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

log = logging.getLogger(__name__)

NVIDIA_GPUS = Path("/proc/driver/nvidia/gpus")  # one folder per GPU the driver knows
NVIDIA_SMI_TIMEOUT_S = 10
GPUS_PER_JOB_ENV = "UNLEARNBENCH_GPUS_PER_JOB"  # the main process's answer to `gpu: auto`, for its jobs
LOCK_DIR_ENV = "UNLEARNBENCH_GPU_LOCK_DIR"
POLL_S = 1.0  # how often a job waiting for a GPU slot tries again
WAIT_LOG_S = 600  # how often it says it is still waiting

_held_locks: list = []  # keep lock files open (and locked) until the process exits


class NoGPUError(RuntimeError):
    """A job declares a GPU but none is usable."""


def _visible_ids(value: str) -> list[str]:
    """Entries of CUDA_VISIBLE_DEVICES up to the first invalid one (CUDA ignores the rest)."""
    ids = []
    for entry in value.split(","):
        entry = entry.strip()
        if not (entry.isdigit() or entry.startswith(("GPU-", "MIG-"))):
            break
        ids.append(entry)
    return ids


def visible_gpus() -> int:
    """NVIDIA GPUs this process may use, counted without torch: the driver's list
    (``/proc/driver/nvidia/gpus``, else ``nvidia-smi -L`` with a timeout), narrowed by
    ``CUDA_VISIBLE_DEVICES``."""
    if NVIDIA_GPUS.is_dir():
        present = sum(1 for _ in NVIDIA_GPUS.iterdir())
    elif shutil.which("nvidia-smi"):
        try:
            listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True,
                                     timeout=NVIDIA_SMI_TIMEOUT_S).stdout
        except (OSError, subprocess.SubprocessError):
            listing = ""
        present = sum(line.startswith("GPU ") for line in listing.splitlines())
    else:
        present = 0
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    return present if visible is None else min(present, len(_visible_ids(visible)))


def gpus_per_job(gpu: int | str, device: str = "auto", budget: int | None = None, main_process: bool = True) -> int:
    """``resources.gpu`` as the number of GPUs each torch job declares (see the module docstring).

    ``budget`` is ``--resources gpu=N`` (None when not given). In the main process the answer is
    also put into the environment, which the jobs' own snakemake processes inherit and reuse.
    """
    if gpu != "auto":
        n = int(gpu)
    elif not main_process and os.environ.get(GPUS_PER_JOB_ENV, "").isdigit():
        n = int(os.environ[GPUS_PER_JOB_ENV])
    elif device in ("cpu", "cuda"):
        n = int(device == "cuda")
    elif budget is not None:
        n = int(budget > 0)
    else:
        visible = visible_gpus()
        n = int(visible > 0)
        if n and main_process:
            print(f"resources.gpu: auto -> 1 GPU per torch job ({visible} NVIDIA GPU(s) visible); add "
                  f"--resources gpu={visible}x<resources.jobs_per_gpu> so that snakemake starts no more GPU jobs "
                  "than there are GPU slots (the others would wait for one)", file=sys.stderr)
    if main_process:
        os.environ[GPUS_PER_JOB_ENV] = str(n)
    return n


def device_request(gpus: int, device: str = "auto", jobs_per_gpu: int = 1) -> str:
    """What a job asks :func:`claim_device` for, given the GPUs its ``gpu`` resource declares."""
    if device == "cpu" or not gpus:
        return "cpu"
    return "cuda" if jobs_per_gpu == 1 else f"cuda/{jobs_per_gpu}"


def _owned_folder(path: Path, check_owner: bool) -> Path:
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        if check_owner and path.stat().st_uid != os.getuid():
            raise PermissionError(f"{path} belongs to another user")
    except OSError as err:
        raise NoGPUError(
            f"cannot keep the GPU locks in {path} ({err}); set {LOCK_DIR_ENV} to a folder you can write") from err
    return path


def lock_dir() -> Path:
    """The user's own folder of GPU lock files (see the module docstring)."""
    override = os.environ.get(LOCK_DIR_ENV)
    if override:
        return _owned_folder(Path(override), check_owner=False)
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isdir(runtime) and os.access(runtime, os.W_OK):
        return _owned_folder(Path(runtime) / "unlearnbench-gpu-locks", check_owner=True)
    return _owned_folder(Path(tempfile.gettempdir()) / f"unlearnbench-gpu-locks-{os.getuid()}", check_owner=True)


def scheduler_gpus() -> str | None:
    """The GPUs Slurm gave this job or step (its own, isolated from other jobs), or None."""
    return os.environ.get("SLURM_STEP_GPUS") or os.environ.get("SLURM_JOB_GPUS") or None


def _try_lock(path: Path):
    try:
        handle = open(path, "w")
    except OSError as err:
        raise NoGPUError(f"cannot open the GPU lock {path} ({err}); set {LOCK_DIR_ENV} to a folder you can write") \
            from err
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    except OSError as err:
        handle.close()
        raise NoGPUError(f"cannot lock {path} ({err}); set {LOCK_DIR_ENV} to a local folder") from err
    return handle


def claim_device(preference: str = "auto") -> str:
    """Return ``"cpu"`` or ``"cuda:<i>"`` for this process.

    ``preference``: ``"cpu"``; ``"cuda"`` or ``"cuda/<k>"`` (the workflow's GPU jobs: a GPU is required;
    a free one of k slots per GPU, waited for when all are taken; :class:`NoGPUError` when torch sees
    none); ``"auto"`` (library use outside the workflow: a free GPU if there is one, else the CPU).
    """
    if preference == "cpu":
        return "cpu"
    kind, _, share = preference.partition("/")
    if kind not in ("auto", "cuda") or (share and not share.isdigit()) or share == "0":
        raise ValueError(f"device preference {preference!r}: expected cpu, auto, cuda or cuda/<jobs per GPU>")
    slots = int(share or 1)
    import torch

    n_gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if n_gpus == 0:
        if kind == "cuda":
            raise NoGPUError(
                f"this job declares a GPU (resources: gpu=1) but torch sees none (CUDA_VISIBLE_DEVICES={visible!r}, "
                f"torch {torch.__version__}, CUDA {torch.version.cuda}): run it where a GPU is visible, or set "
                "resources.gpu: 0 in the config for a CPU run")
        log.info("using cpu (no GPU visible)")
        return "cpu"
    isolated = scheduler_gpus()
    if isolated and n_gpus == 1:
        log.info("using cuda:0 (Slurm's GPU %s for this job: no lock needed)", isolated)
        return "cuda:0"
    folder = lock_dir()
    if isolated:  # device numbers are per allocation: keep the locks of different allocations apart
        folder = _owned_folder(folder / f"slurm-{os.environ.get('SLURM_JOB_ID', 'job')}", check_owner=False)
    ids = _visible_ids(visible) if visible is not None else []
    names = [re.sub(r"[^A-Za-z0-9_.-]", "_", ids[i]) if i < len(ids) else str(i) for i in range(n_gpus)]
    waiting_since = last_log = None
    while True:
        # slot-major order spreads jobs over the GPUs before doubling up on one
        for slot in range(slots):
            for index, name in enumerate(names):
                handle = _try_lock(folder / f"gpu{name}-slot{slot}.lock")
                if handle is None:
                    continue
                _held_locks.append(handle)
                log.info("using cuda:%d (GPU %s, slot %d of %d; CUDA_VISIBLE_DEVICES=%r)", index, name, slot + 1,
                         slots, visible)
                return f"cuda:{index}"
        if kind == "auto":
            log.info("using cpu (%d GPU(s) visible, none free)", n_gpus)
            return "cpu"
        now = time.monotonic()
        if last_log is None or now - last_log >= WAIT_LOG_S:
            waiting_since = waiting_since or now
            log.info("all %d GPU slot(s) taken (locks in %s); waiting for one (%.0f s so far)", n_gpus * slots,
                     folder, now - waiting_since)
            last_log = now
        time.sleep(POLL_S)


def torch_setup(threads: int, device_preference: str, compile: bool = False) -> str:
    """Threads, device, deterministic kernels and malloc thresholds for a torch job; ``compile`` opts the
    training forward into ``torch.compile`` (:data:`unlearnbench.stack.ENGINE`).

    Freed memory stays with the job for its next tensors (:func:`unlearnbench.memory.keep_freed_memory`):
    no number changes, page faults do.

    Deterministic mode is switched on with ``torch._C._set_deterministic_algorithms``, the switch
    ``torch.use_deterministic_algorithms`` sets, because the public function also imports
    ``torch._inductor`` (and with it ``torch._dynamo``) to set inductor's own flag: 1.5-2 s of start-up
    in every job (``benchmarks/job_startup.py``). Inductor's flag matters only to compiled code, so a job
    that compiles takes the public function. On the CPU the mode changes nothing the loop runs (its
    kernels are deterministic for a given thread count; tests/test_optim.py checks two runs give the same
    bytes); it stays on for GPUs, where it matters, and for plug-ins' ops. Its debugging aid is off: filling
    every new tensor with NaN (``torch.utils.deterministic.fill_uninitialized_memory``) only makes a read of
    memory that no kernel wrote reproducible, no code of this project makes one (a plug-in that does has a
    bug the fill would only make repeatable), and the fill is a pass over every output of every op (``benchmarks/uninitialized_fill.py``; the same bytes either way, tests/test_device.py).
    """
    import torch

    from .loop import configure
    from .memory import keep_freed_memory

    keep_freed_memory()
    torch.set_num_threads(threads)
    device = claim_device(device_preference)
    if device.startswith("cuda"):
        # deterministic cuBLAS needs a fixed workspace, read when the first handle is made (after this)
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    if compile:
        torch.use_deterministic_algorithms(True, warn_only=True)
    else:
        torch._C._set_deterministic_algorithms(True, warn_only=True)
    torch.utils.deterministic.fill_uninitialized_memory = False
    configure(compile=compile)
    log.info("device %s, %d CPU thread(s), torch %s%s", device, threads, torch.__version__,
             ", torch.compile on" if compile else "")
    return device
