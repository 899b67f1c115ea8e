"""The stacked forward three ways, same run, same machine: vmap (the engine before issue 17), the models
folded into the channels of one network, and folded with channels-last layout.

    python benchmarks/stack_forward.py [--models 25] [--arch digits_cnn] [--repeats 5]

Per way: one training step (forward, cross-entropy, backward) on a per-model batch of 32 and one eval
chunk (the margins pass: 117 shared inputs, the CPU chunk size of 25 digits nets). Times are process
CPU time (robust on a busy machine), the minimum over ``--repeats`` rounds of 20 calls; ratios are
against vmap. The first two ways are bit-identical (tests/test_training.py); channels-last differs by
float rounding.
"""

from __future__ import annotations

import argparse
import time

import torch

from unlearnbench.stack import ModelStack

SHAPES = {"digits_cnn": (1, 8), "resnet9": (3, 32), "resnet18": (3, 64)}


def cpu_ms(fn, calls: int = 20) -> float:
    fn()
    start = time.process_time()
    for _ in range(calls):
        fn()
    return (time.process_time() - start) / calls * 1000


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="digits_cnn", choices=sorted(SHAPES))
    parser.add_argument("--models", type=int, default=25)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--eval-batch", type=int, default=117)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    c, side = SHAPES[args.arch]
    m = args.models
    base = ModelStack.initialise(args.arch, 10, c, list(range(m)), range(m))
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(m, args.batch, c, side, side, generator=gen)
    labels = torch.randint(0, 10, (m * args.batch,), generator=gen)
    shared = torch.randn(args.eval_batch, c, side, side, generator=gen)
    ways = {}
    for name in ("vmap", "folded", "folded, channels-last"):
        stack = base.copy()
        if name.endswith("channels-last"):
            stack.to_channels_last()
        for v in stack.params.values():
            v.requires_grad_(True)
        forward = stack.forward_vmap if name == "vmap" else stack.forward

        def step(forward=forward, stack=stack):
            torch.nn.functional.cross_entropy(forward(x, train=True).reshape(-1, 10), labels).backward()
            for v in stack.params.values():
                v.grad = None

        def evaluate(forward=forward):
            with torch.no_grad():
                forward(shared, train=False)

        ways[name] = (step, evaluate)
    best = {name: [float("inf"), float("inf")] for name in ways}
    for _ in range(args.repeats):  # interleaved rounds: load changes hit every way alike
        for name, fns in ways.items():
            for i, fn in enumerate(fns):
                best[name][i] = min(best[name][i], cpu_ms(fn))
    print(f"{args.arch}, {m} models, {args.threads} thread(s), CPU ms (min of {args.repeats} rounds of 20 calls)")
    print("| forward | training step | ratio | eval chunk | ratio |")
    print("|---|---|---|---|---|")
    ref = best["vmap"]
    for name, (train, evaluate) in best.items():
        print(f"| {name} | {train:.2f} | {ref[0] / train:.2f}x | {evaluate:.2f} | {ref[1] / evaluate:.2f}x |")
    return best


if __name__ == "__main__":
    main()
