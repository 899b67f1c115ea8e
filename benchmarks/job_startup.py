"""Fixed start-up cost of a torch job, old versus new, measured in the same run on the same machine.

    python benchmarks/job_startup.py [--rounds 5]

Each round starts two fresh Python processes, in alternating order, that do what every training or
unlearning job does before its real work: ``import torch``, job set-up (threads, deterministic mode), the
first optimiser step on a stack of digits nets, and the first eval-mode margins (which sizes its chunks
from the architecture's widest activation). "old" is the code before issue 17 (reproduced inline here:
``torch.use_deterministic_algorithms``, ``torch.optim.SGD``, a shape-only forward on the "meta" device);
"new" is the library's (``device.torch_setup``, ``unlearnbench.optim``, a forward of the stack itself).
Each stage is timed inside the process; the table shows the median per stage over the rounds, and the
ratio new / old of their sum.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
import torch
t1 = time.perf_counter()
from unlearnbench.margins import stack_margins
from unlearnbench.stack import ModelStack
mode = sys.argv[1]
if mode == "old":
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True, warn_only=True)
else:
    from unlearnbench.device import torch_setup
    torch_setup(1, "cpu")
t2 = time.perf_counter()
stack = ModelStack.initialise("digits_cnn", 10, 1, list(range(25)), range(25))
x, y = torch.randn(25, 32, 1, 8, 8), torch.randint(0, 10, (25, 32))
for v in stack.params.values():
    v.requires_grad_(True)
t3 = time.perf_counter()
if mode == "old":
    opt = torch.optim.SGD(list(stack.params.values()), lr=0.1, momentum=0.9, weight_decay=5e-4)
else:
    from unlearnbench.loop import Optimiser
    opt = Optimiser("sgd", momentum=0.9, weight_decay=5e-4).build(stack.params)
loss = torch.nn.functional.cross_entropy(stack.forward(x, train=True).flatten(0, 1), y.flatten())
opt.zero_grad()
loss.backward()
opt.step() if mode == "old" else opt.step(0.1)
t4 = time.perf_counter()
for v in stack.params.values():
    v.requires_grad_(False)
if mode == "old":  # the pre-issue-17 chunk sizing: a shape-only forward on the meta device
    from unlearnbench.models import build_model
    with torch.device("meta"):
        model = build_model("digits_cnn", 10, 1).eval()
    with torch.no_grad():
        model(torch.empty((1, 1, 8, 8), device="meta"))
stack_margins(stack, torch.randn(64, 1, 8, 8), torch.randint(0, 10, (64,)))
t5 = time.perf_counter()
print(json.dumps({"import torch": t1 - t0, "job set-up": t2 - t1, "first optimiser step": t4 - t3,
                  "first margins": t5 - t4, "dynamo imported": "torch._dynamo" in sys.modules}))
"""

STAGES = ("import torch", "job set-up", "first optimiser step", "first margins")


def run(mode: str) -> dict:
    proc = subprocess.run([sys.executable, "-c", CHILD, mode], capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    results: dict[str, list[dict]] = {"old": [], "new": []}
    for r in range(args.rounds):
        for mode in (("old", "new") if r % 2 == 0 else ("new", "old")):
            results[mode].append(run(mode))
    medians = {mode: {s: statistics.median(run[s] for run in runs) for s in STAGES} for mode, runs in results.items()}
    print(f"| stage (median of {args.rounds} fresh processes each, seconds) | old | new |")
    print("|---|---|---|")
    for s in STAGES:
        print(f"| {s} | {medians['old'][s]:.2f} | {medians['new'][s]:.2f} |")
    totals = {mode: sum(m.values()) for mode, m in medians.items()}
    print(f"| total | {totals['old']:.2f} | {totals['new']:.2f} |")
    print(f"| torch._dynamo imported | {results['old'][0]['dynamo imported']} | {results['new'][0]['dynamo imported']} |")
    print(f"\nratio new / old = {totals['new'] / totals['old']:.2f} "
          f"(start-up {totals['old'] - totals['new']:.2f} s shorter per torch job)")
    return {"medians": medians, "ratio": totals["new"] / totals["old"]}


if __name__ == "__main__":
    main()
