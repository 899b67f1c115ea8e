"""Models per hour: training a stack of models batched (one vmapped forward for all of them,
``models_per_batch = M``) versus one model at a time (``models_per_batch = 1``), same run, same device.

    python benchmarks/train_throughput.py                       # CPU-sized defaults (a minute or two)
    python benchmarks/train_throughput.py --resnet9-models 25 --resnet9-images 50000 --resnet9-epochs 1 \
        --digits-models 100 --digits-epochs 30                  # GPU-sized: the real shard sizes

Nets: the digits CNN on scikit-learn's digits (the embedded default's recipe: batch 32, 300 train
points) and ResNet-9 on synthetic CIFAR-shaped data (random images, batch 256; speed does not depend on
the pixel values). Both modes train the same models from the same seeds through ``train_stack``, so
they do identical work; the ratio is batched / one-at-a-time models per hour. On CUDA, bf16 autocast is
on (as the training jobs do) and the clock is synchronised around each measurement.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from unlearnbench.stack import ModelStack
from unlearnbench.training import Recipe, train_stack


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_training(arch, num_classes, in_channels, x, y, points, recipe, n_models, per_batch, device, amp):
    seeds = list(range(1, n_models + 1))
    stack = ModelStack.initialise(arch, num_classes, in_channels, seeds, range(n_models), device)
    _sync(device)
    start = time.perf_counter()
    train_stack(stack, x, y, points, seeds, recipe, models_per_batch=per_batch, amp=amp)
    _sync(device)
    return time.perf_counter() - start


def measure(name, arch, num_classes, in_channels, x, y, recipe, n_models, device, repeats, warmup):
    points = np.arange(len(y))
    amp = device.startswith("cuda")
    if warmup:  # first-call costs (allocator, kernels, thread pools) out of the measurement
        warm = Recipe(**{**recipe.__dict__, "epochs": 1})
        time_training(arch, num_classes, in_channels, x, y, points[: warm.batch_size * 2], warm, 2, 2, device, amp)
    rows = []
    for mode, per_batch in (("batched", n_models), ("one-at-a-time", 1)):
        seconds = min(time_training(arch, num_classes, in_channels, x, y, points, recipe, n_models, per_batch,
                                    device, amp) for _ in range(repeats))
        rows.append({"net": name, "mode": mode, "models": n_models, "per_batch": per_batch, "epochs": recipe.epochs,
                     "images": len(y), "batch": recipe.batch_size, "seconds": seconds,
                     "models_per_hour": n_models * 3600 / seconds})
    rows[0]["ratio"] = rows[0]["models_per_hour"] / rows[1]["models_per_hour"]
    rows[1]["ratio"] = 1.0
    return rows


def print_table(rows, device):
    print(f"\ndevice: {device}, torch {torch.__version__}, {torch.get_num_threads()} CPU thread(s)")
    header = ("net", "mode", "models", "per_batch", "epochs", "images", "batch", "seconds", "models/hour", "ratio")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for r in rows:
        print(f"| {r['net']} | {r['mode']} | {r['models']} | {r['per_batch']} | {r['epochs']} | {r['images']} | "
              f"{r['batch']} | {r['seconds']:.2f} | {r['models_per_hour']:.0f} | {r['ratio']:.2f} |")
    print("\nratio = batched models/hour / one-at-a-time models/hour (same run); models/hour counts "
          "models trained for the listed epochs on the listed images.")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (the workflow's default is 1)")
    parser.add_argument("--repeats", type=int, default=1, help="take the fastest of this many runs per mode")
    parser.add_argument("--digits-models", type=int, default=8)
    parser.add_argument("--digits-epochs", type=int, default=3)
    parser.add_argument("--resnet9-models", type=int, default=4)
    parser.add_argument("--resnet9-epochs", type=int, default=1)
    parser.add_argument("--resnet9-images", type=int, default=512)
    parser.add_argument("--skip-digits", action="store_true")
    parser.add_argument("--skip-resnet9", action="store_true")
    args = parser.parse_args(argv)

    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    torch.set_num_threads(args.threads)
    rows = []
    if not args.skip_digits:
        from unlearnbench.data import load_dataset

        splits = load_dataset("digits")
        x = torch.from_numpy(splits.x_train).float().div(16).sub(0.5).div(0.5).to(device)
        y = torch.from_numpy(splits.y_train).to(device)
        recipe = Recipe(epochs=args.digits_epochs, batch_size=32, lr=0.2, peak_epoch=min(6, args.digits_epochs / 5),
                        momentum=0.9, weight_decay=5e-4)
        rows += measure("digits_cnn", "digits_cnn", 10, 1, x, y, recipe, args.digits_models, device, args.repeats,
                        warmup=True)
        print_table(rows, device)
    if not args.skip_resnet9:
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(args.resnet9_images, 3, 32, 32, generator=gen).to(device)
        y = torch.randint(0, 10, (args.resnet9_images,), generator=gen).to(device)
        recipe = Recipe(epochs=args.resnet9_epochs, batch_size=256, lr=0.4, peak_epoch=5 * args.resnet9_epochs / 24,
                        momentum=0.9, weight_decay=5e-4)
        rows += measure("resnet9", "resnet9", 10, 3, x, y, recipe, args.resnet9_models, device, args.repeats,
                        warmup=device.startswith("cuda"))
        print_table(rows, device)
    return rows


if __name__ == "__main__":
    main()
