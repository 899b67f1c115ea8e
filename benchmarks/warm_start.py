"""A job's wall clock, started fresh versus forked from the warm process, in the same run on the same machine.

    python benchmarks/warm_start.py [--rounds 5]

Each round runs one small torch job twice, in alternating order, as a Snakemake script job would: a fresh
Python process that runs it itself ("fresh": imports torch, numpy, ... then works), and a fresh Python
process that hands it to a warm process started once beforehand (``unlearnbench.warm``, "warm": the client
connects, the warm process forks, the fork works). The job is the start of every training or unlearning
job of the digits default: job set-up, one optimiser step on a stack of 25 digits nets, margins of 64 points.
The clock is the parent's, around the whole process, as Snakemake's benchmark files see a job. The table
gives the median per mode over the rounds and the ratio warm / fresh.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def job(threads: int) -> None:
    """The benchmarked work (run by name from the fork, or imported by the fresh process)."""
    import torch

    from unlearnbench.loop import Optimiser
    from unlearnbench.margins import stack_margins
    from unlearnbench.stack import ModelStack
    from unlearnbench.device import torch_setup

    torch_setup(threads, "cpu")
    stack = ModelStack.initialise("digits_cnn", 10, 1, list(range(25)), range(25))
    x, y = torch.randn(25, 32, 1, 8, 8), torch.randint(0, 10, (25, 32))
    for v in stack.params.values():
        v.requires_grad_(True)
    optimiser = Optimiser("sgd", momentum=0.9, weight_decay=5e-4).build(stack.params)
    loss = torch.nn.functional.cross_entropy(stack.forward(x, train=True).flatten(0, 1), y.flatten())
    loss.backward()
    optimiser.step(0.1)
    for v in stack.params.values():
        v.requires_grad_(False)
    stack_margins(stack, torch.randn(64, 1, 8, 8), torch.randint(0, 10, (64,)))


FRESH = "import warm_start; warm_start.job(1)"
WARM = "import sys; from unlearnbench import warm; sys.exit(warm.run('warm_start:job', {'threads': 1}, None))"


def timed(code: str, env: dict) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], env=env, check=True)
    return time.perf_counter() - start


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    from unlearnbench import warm

    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE), *sys.path]))
    os.environ["PYTHONPATH"] = env["PYTHONPATH"]  # the warm process imports this file as `warm_start`
    process, path = warm.start(allowed_prefix="warm_start:")
    try:
        env[warm.ENV] = path
        times: dict[str, list[float]] = {"fresh": [], "warm": []}
        for r in range(args.rounds):
            order = ("fresh", "warm") if r % 2 == 0 else ("warm", "fresh")
            for mode in order:
                times[mode].append(timed(FRESH if mode == "fresh" else WARM, env))
    finally:
        warm.stop(process, path)
    medians = {mode: statistics.median(values) for mode, values in times.items()}
    ratio = medians["warm"] / medians["fresh"]
    print(f"{'mode':<6} {'median s':>9}   all rounds")
    for mode, values in times.items():
        print(f"{mode:<6} {medians[mode]:>9.3f}   " + " ".join(f"{v:.3f}" for v in values))
    print(f"ratio warm / fresh: {ratio:.3f}")
    return {"medians": medians, "ratio": ratio}


if __name__ == "__main__":
    main()
