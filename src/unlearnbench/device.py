"""Pick the compute device for a job.

Snakemake's ``resources: gpu=1`` only limits *how many* GPU jobs run at once; it does not say *which*
GPU. Each job therefore claims a free device itself: one lock file per visible device index
(``CUDA_VISIBLE_DEVICES`` set by Slurm is honoured because torch only sees those devices). The lock is
held for the life of the process, and the job falls back to the CPU when no GPU is free or present.
"""

from __future__ import annotations

import fcntl
import logging
import os
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

_held_locks: list = []  # keep lock files open (and locked) until the process exits


def _lock_dir() -> Path:
    path = Path(os.environ.get("UNLEARNBENCH_GPU_LOCK_DIR", Path(tempfile.gettempdir()) / "unlearnbench-gpu-locks"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def claim_device(preference: str = "auto") -> str:
    """Return ``"cpu"`` or ``"cuda:<i>"`` for a device this process may use exclusively.

    ``preference`` is ``"cpu"``, ``"cuda"`` (fail if none is free) or ``"auto"`` (a free GPU, else CPU).
    """
    if preference == "cpu":
        return "cpu"
    import torch

    n_gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "")
    for index in range(n_gpus):
        # Name the lock by the physical id where Slurm or the user narrowed the view.
        physical = visible.split(",")[index] if visible else str(index)
        handle = open(_lock_dir() / f"gpu{physical}.lock", "w")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            continue
        _held_locks.append(handle)
        device = f"cuda:{index}"
        log.info("using %s (physical GPU %s, CUDA_VISIBLE_DEVICES=%r)", device, physical, visible)
        return device
    if preference == "cuda":
        raise RuntimeError(f"no free GPU among {n_gpus} visible (CUDA_VISIBLE_DEVICES={visible!r})")
    log.info("using cpu (%d GPU(s) visible, none free or none present)", n_gpus)
    return "cpu"
