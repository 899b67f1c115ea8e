"""One job of each torch kind of the default digits run, at two git revisions, back to back.

    python benchmarks/job_kinds.py --baseline 9866cf3 [--candidate HEAD] [--rounds 2]

Each job is what one Snakemake job of the reference config (``benchmarks/reference_config.yaml``) runs:
a fresh Python process calling the stage function with the library of that revision (``train_base`` of 100
base models, ``compute_margins`` of them, ``unlearn`` of gradient descent and of SCRUB on a 10-point forget
set, 25 models per batch, 1 thread): ``unlearnbench.stages``, or ``unlearnbench.jobs`` in a revision from
before the stage package (``OLD_JOBS``). The wall time
covers the whole process (interpreter, imports, set-up, work, writing): the fixed cost of a job is part
of what a user waits for. Rounds alternate the order of the revisions; the table gives the minimum per
job kind and the ratio candidate / baseline. Lighter than ``default_run.py`` (a minute or two of work
per revision), so it can run on a shared machine, though the ratios are only as steady as the machine.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

REPO = Path(__file__).resolve().parents[1]
T = TypeVar("T")
SEEDS = "[int(s) for s in np.random.default_rng(0).integers(0, 2**62, 100)]"
RECIPE = {"epochs": 30, "batch_size": 32, "lr": 0.2, "peak_epoch": 6, "momentum": 0.9, "weight_decay": 5e-4,
          "optimizer": "sgd", "schedule": "triangle", "label_smoothing": 0.0}

JOBS = {
    "train_base": "from unlearnbench.stages.training import train_base; "
                  f"train_base('splits.npz', 'base.safetensors', 'digits_cnn', {RECIPE!r}, (0, 100), {SEEDS}, "
                  "device='cpu', models_per_batch=25, compile=False)",
    "compute_margins": "from unlearnbench.stages.margins import compute_margins; "
                       "compute_margins('base.safetensors', 'splits.npz', 'margins.npz', device='cpu', "
                       "keep_logits=False, tta='none')",
    "unlearn gradient_descent": "from unlearnbench.stages.unlearning import unlearn; "
                                "unlearn('gd.npz', 'gradient_descent', {'lr': 0.05, 'batch_size': 32}, [1, 3, 5], "
                                f"{SEEDS}, {{}}, 'cpu', 25, False, weights='base.safetensors', splits='splits.npz', "
                                "forget_set='forget.npy', identity={'method': 'gradient_descent', 'run': 'default'})",
    "unlearn scrub": "from unlearnbench.stages.unlearning import unlearn; "
                     "unlearn('scrub.npz', 'scrub', {'lr': 0.05, 'ascent_epochs': 2, 'forget_batch_size': 32, "
                     f"'batch_size': 32}}, [3, 5], {SEEDS}, {{}}, 'cpu', 25, False, weights='base.safetensors', "
                     "splits='splits.npz', forget_set='forget.npy', identity={'method': 'scrub', 'run': 'default'})",
}
PREPARE = ("from unlearnbench.stages.data import prepare_dataset; "
           "prepare_dataset('splits.npz', 'digits', None, False, False, None, None, 300, 1497); "
           "np.save('forget.npy', np.sort(np.random.RandomState(0).choice(300, 10, replace=False)))")
OLD_JOBS = {
    "train_base": f"jobs.train_shard('splits.npz', 'base.safetensors', 'digits_cnn', {RECIPE!r}, (0, 100), {SEEDS}, "
                  "models_per_batch=25, device='cpu')",
    "compute_margins": "jobs.compute_margins('base.safetensors', 'splits.npz', 'margins.npz', device='cpu')",
    "unlearn gradient_descent": "jobs.unlearn_shard('gradient_descent', {'lr': 0.05, 'batch_size': 32}, [1, 3, 5], "
                                f"'gd.npz', weights='base.safetensors', splits='splits.npz', forget_set='forget.npy', "
                                f"seeds={SEEDS}, models_per_batch=25, device='cpu')",
    "unlearn scrub": "jobs.unlearn_shard('scrub', {'lr': 0.05, 'ascent_epochs': 2, 'forget_batch_size': 32, "
                     "'batch_size': 32}, [3, 5], 'scrub.npz', weights='base.safetensors', splits='splits.npz', "
                     f"forget_set='forget.npy', seeds={SEEDS}, models_per_batch=25, device='cpu')",
}
OLD_PREPARE = ("jobs.prepare_dataset('digits', 'splits.npz', (300, 1497)); "
               "np.save('forget.npy', np.sort(np.random.RandomState(0).choice(300, 10, replace=False)))")


def code_for(src: Path, job: str | None) -> str:
    """What runs ``job`` (None: the preparation) in the revision whose library is ``src``."""
    if (src / "unlearnbench" / "stages").is_dir():
        return PREPARE if job is None else JOBS[job]
    return OLD_PREPARE if job is None else OLD_JOBS[job]  # a revision from before the stage package


def run(src: Path, workdir: Path, code: str) -> float:
    imports = "import numpy as np\n" + ("from unlearnbench import jobs\n" if code.startswith("jobs.") else "")
    script = f"{imports}{code}\n"
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", script], cwd=workdir, check=True, capture_output=True,
                   env={"PYTHONPATH": str(src), "PATH": "/usr/bin:/bin", "HOME": str(workdir)})
    return time.perf_counter() - start


def alternating(rounds: int, sides: tuple[str, str], run_one: Callable[[str, str], T]) -> dict[str, dict[str, list[T]]]:
    """``run_one(side, job)`` for every job of :data:`JOBS` on both sides, ``rounds`` times; the sides' order
    alternates per round, the jobs run in pipeline order (each side consumes its own outputs). Returns each
    side's results per job, in round order."""
    results: dict[str, dict[str, list[T]]] = {side: {job: [] for job in JOBS} for side in sides}
    for r in range(rounds):
        for job in JOBS:
            for side in sides if r % 2 == 0 else sides[::-1]:
                results[side][job].append(run_one(side, job))
    return results


def checkout(revision: str, dest: Path) -> Path:
    subprocess.run(["git", "clone", "--quiet", "--no-checkout", str(REPO), str(dest)], check=True)
    subprocess.run(["git", "checkout", "--quiet", revision], cwd=dest, check=True)
    return dest / "src"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", required=True)
    parser.add_argument("--candidate", default="HEAD")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="job_kinds."))
    try:
        sources = {name: checkout(rev, root / name) for name, rev in (("baseline", args.baseline),
                                                                      ("candidate", args.candidate))}
        work = {name: root / f"work-{name}" for name in sources}
        for name, workdir in work.items():
            workdir.mkdir()
            run(sources[name], workdir, code_for(sources[name], None))
        times = alternating(args.rounds, ("baseline", "candidate"),
                            lambda name, job: run(sources[name], work[name], code_for(sources[name], job)))
        best = {name: {job: min(seconds) for job, seconds in jobs.items()} for name, jobs in times.items()}
        print(f"wall seconds per job (min of {args.rounds} rounds), 100 digits nets, 25 per batch, 1 thread")
        print("| job | baseline | candidate | ratio |")
        print("|---|---|---|---|")
        for job in JOBS:
            b, c = best["baseline"][job], best["candidate"][job]
            print(f"| {job} | {b:.1f} | {c:.1f} | {c / b:.2f} |")
        total_b, total_c = sum(best["baseline"].values()), sum(best["candidate"].values())
        print(f"| all four | {total_b:.1f} | {total_c:.1f} | {total_c / total_b:.2f} |")
        return best
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
