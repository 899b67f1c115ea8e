"""Eval-mode margins of a model stack: the automatic chunk size (``ModelStack.eval_batch_size``) versus a
fixed 2,048 inputs per forward call (the earlier default, still the GPU default), same run, same device.

    python benchmarks/eval_batch.py                  # about a minute on a CPU
    python benchmarks/eval_batch.py --skip-resnet9   # digits only

On CPU every layer's output for all M stacked models is materialised at once; with 2,048 inputs per
call these tensors are far larger than the caches, so inference is memory-bound. The automatic size
keeps one activation of the whole stack near ``CPU_EVAL_FLOATS``. Nets: the digits CNN on all 1,797
digits (margin order: train then validation) and ResNet-9 on random CIFAR-shaped images (speed does not
depend on pixel values or weights, so freshly initialised models are used). The script also prints the
largest margin difference between the two chunkings (chunking changes no arithmetic per point).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from unlearnbench.margins import stack_margins
from unlearnbench.stack import ModelStack

FIXED = 2048


def best_time(stack, x, y, batch_size, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        margins = stack_margins(stack, x, y, batch_size=batch_size)
        times.append(time.perf_counter() - start)
    return min(times), margins


def measure(name, arch, num_classes, in_channels, x, y, model_counts, repeats):
    rows = []
    for n_models in model_counts:
        stack = ModelStack.initialise(arch, num_classes, in_channels, range(n_models), range(n_models))
        stack_margins(stack, x[:64], y[:64])  # warm-up: thread pools and kernel selection
        auto = stack.eval_batch_size(x)
        fixed_s, fixed_m = best_time(stack, x, y, FIXED, repeats)
        auto_s, auto_m = best_time(stack, x, y, None, repeats)
        rows.append((name, n_models, len(x), auto, fixed_s, auto_s, fixed_s / auto_s,
                     float(np.max(np.abs(fixed_m - auto_m)))))
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (the workflow's default is 1)")
    parser.add_argument("--repeats", type=int, default=3, help="take the fastest of this many runs")
    parser.add_argument("--digits-models", type=int, nargs="+", default=[1, 5, 25, 100])
    parser.add_argument("--resnet9-models", type=int, nargs="+", default=[1, 5])
    parser.add_argument("--resnet9-images", type=int, default=512)
    parser.add_argument("--skip-resnet9", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    from unlearnbench.data import load_dataset

    digits = load_dataset("digits")
    rows = measure("digits_cnn", "digits_cnn", 10, 1, digits.inputs(), torch.from_numpy(digits.labels()),
                   args.digits_models, args.repeats)
    if not args.skip_resnet9:
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(args.resnet9_images, 3, 32, 32, generator=gen)
        y = torch.randint(0, 10, (args.resnet9_images,), generator=gen)
        rows += measure("resnet9", "resnet9", 10, 3, x, y, args.resnet9_models, args.repeats)

    print(f"CPU, torch {torch.__version__}, {torch.get_num_threads()} thread(s); fastest of {args.repeats} runs")
    header = ("net", "models", "inputs", "auto chunk", f"chunk {FIXED} s", "auto s", "ratio", "max |diff|")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for net, m, n, chunk, fixed_s, auto_s, ratio, diff in rows:
        print(f"| {net} | {m} | {n} | {chunk} | {fixed_s:.3f} | {auto_s:.3f} | {ratio:.2f} | {diff:.1e} |")
    print(f"\nratio = time with {FIXED} inputs per call / time with the automatic chunk (same run).")
    return rows


if __name__ == "__main__":
    main()
