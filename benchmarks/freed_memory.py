"""One job of each torch kind with freed memory kept for reuse (``unlearnbench.memory``) and without.

    python benchmarks/freed_memory.py [--rounds 3]

The jobs are those of ``benchmarks/job_kinds.py`` (``train_base`` of 100 digits nets, ``compute_margins``,
``unlearn`` of gradient descent and of SCRUB; 25 models per batch, 1 thread), each in a fresh Python
process with this checkout's library; "without" replaces ``keep_freed_memory`` by a no-op in that process,
so glibc's default thresholds apply. Rounds alternate the order; the table gives the minimum wall time per
job, the ratio kept / default and the peak resident memory of each, and compares the outputs of the two
byte for byte (memory placement is no arithmetic, so they must be equal). The wall time includes the interpreter and ``import torch``
(about 2 s on a 2-core machine), which the warm start of a local run (``unlearnbench.warm``) spares its
jobs: the ratio of the work alone is lower still.
"""

from __future__ import annotations

import argparse
import filecmp
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from job_kinds import JOBS, PREPARE, alternating  # noqa: E402

SRC = Path(__file__).resolve().parents[1] / "src"
DEFAULT = "import unlearnbench.memory as memory\nmemory.keep_freed_memory = lambda: False\n"
OUTPUTS = {"train_base": "base.safetensors", "compute_margins": "margins.npz", "unlearn gradient_descent": "gd.npz",
           "unlearn scrub": "scrub.npz"}


def run(workdir: Path, code: str) -> tuple[float, float]:
    """Wall seconds and peak resident memory (MiB) of one job's process."""
    start = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-c", f"import numpy as np\n{code}\n"], cwd=workdir,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin", "HOME": str(workdir),
                                    "OMP_NUM_THREADS": "1"})
    _, status, usage = os.wait4(process.pid, 0)  # Popen.wait does not return the child's resource usage
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status):
        sys.exit(f"job failed ({os.waitstatus_to_exitcode(status)}): {code}")
    return seconds, usage.ru_maxrss / 1024  # Linux reports KiB


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="freed_memory."))
    prefix = {"kept": "", "default": DEFAULT}
    try:
        work = {name: root / name for name in prefix}
        for workdir in work.values():
            workdir.mkdir()
            run(workdir, PREPARE)
        runs = alternating(args.rounds, ("default", "kept"), lambda name, job: run(work[name], prefix[name] + JOBS[job]))
        best = {name: {job: min(s for s, _ in r) for job, r in jobs.items()} for name, jobs in runs.items()}
        peak = {name: {job: max(m for _, m in r) for job, r in jobs.items()} for name, jobs in runs.items()}
        print(f"wall seconds per job (min of {args.rounds} rounds), 100 digits nets, 25 per batch, 1 thread; "
              "peak resident MiB (max over rounds)")
        print("| job | glibc default | freed memory kept | ratio | peak MiB default / kept | outputs |")
        print("|---|---|---|---|---|---|")
        for job in JOBS:
            d, k = best["default"][job], best["kept"][job]
            same = filecmp.cmp(work["default"] / OUTPUTS[job], work["kept"] / OUTPUTS[job], shallow=False)
            print(f"| {job} | {d:.2f} | {k:.2f} | {k / d:.3f} | {peak['default'][job]:.0f} / "
                  f"{peak['kept'][job]:.0f} | {'identical' if same else 'DIFFERENT'} |")
        total_d, total_k = sum(best["default"].values()), sum(best["kept"].values())
        print(f"| all four | {total_d:.2f} | {total_k:.2f} | {total_k / total_d:.3f} | | |")
        return best
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
