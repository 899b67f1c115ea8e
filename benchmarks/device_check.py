"""One command that says what a GPU does with this project's paper-scale model: ResNet-9 with the published
CIFAR-10 recipe (``config/cifar10.yaml``'s ``train`` section, read from that file), measured in one run.

    benchmarks/device_check.sh                 # on a GPU machine: a few minutes (sized for <= 8 on one H100/H200)
    benchmarks/device_check.sh --smoke         # tiny sizes on the CPU: the check CI runs so this cannot rot

Sections, each printed as a table when it is done:

1. **Training throughput** - stacks of 1 (one model at a time), 5, 10 and 25 models trained together
   (``train_stack``, ``models_per_batch`` = the stack, bf16 autocast on a GPU: what a training job does),
   on synthetic CIFAR-shaped data (random images; speed does not depend on pixel values). ``models/hour``
   is full-recipe models (``epochs`` x 50,000 images of config/cifar10.yaml) per hour, extrapolated linearly
   from one measured epoch (10,240 images), after a warm-up of two steps at the same stack size.
2. **k processes per GPU** - k = 1, 2, 4 worker processes (each a stack of 5), started together
   behind a barrier after their warm-up, each taking its own slot of ``claim_device("cuda/<k>")`` (the
   lock of ``resources.jobs_per_gpu: k``); models/hour over the wall time from the first start to the last
   end, and its ratio to one process.
3. **Margin pass** - eval-mode margins (``stack_margins``, the automatic chunk size) of a stack of 25
   models on 10,000 images: model-images per second.
4. **The DAG** - a small CIFAR-10 run through ``snakemake --cores 8 --resources gpu=1`` (``gpu=k`` with
   ``--dag-jobs-per-gpu k``): generated images written in the real CIFAR-10 on-disk format
   (``cifar-10-batches-py``, pickled dicts of uint8 rows; 10,000 train, 2,000 test), N = 8 models per
   family, the recipe shortened to 2 epochs, one forget set, ``do_nothing`` / ``oracle`` /
   ``gradient_ascent``; wall time and jobs run.

TFLOP/s counts the convolutions and matrix products of ResNet-9 as ``torch.utils.flop_counter`` counts them
(2 FLOPs per multiply-add; forward + backward per trained image, forward per margin image), measured once on
the CPU; the progress evaluations and optimiser steps of a training run are not counted, so the figure is
a lower bound of the arithmetic done. The fraction of peak divides by the device's dense BF16 tensor-core
peak (training runs in bf16 autocast) from NVIDIA's data sheets, :data:`PEAK_BF16_TFLOPS`; ``--peak-tflops``
overrides it (a CPU has no entry: no fraction is printed).

The sizes are :data:`FULL`'s (``--smoke``: :data:`SMOKE`'s). Ratios compare rows of the same run on the same
device. Each GPU section runs with its own GPU-lock folder (``UNLEARNBENCH_GPU_LOCK_DIR``), so this process's
slot never blocks the workers or the DAG's jobs.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
CIFAR10_TRAIN = 50_000  # images per epoch of the published recipe
WORKFLOW_FILES = ("Snakefile", "workflow", "config", "profiles", "envs")

# Dense BF16 tensor-core peaks (TFLOP/s), half the "with sparsity" figures of NVIDIA's data sheets:
# H100 (SXM 1,979, PCIe 1,513, NVL 1,671 with sparsity; "NVIDIA H100 Tensor Core GPU" datasheet),
# H200 (SXM 1,979, NVL 1,671 with sparsity; "NVIDIA H200 Tensor Core GPU" datasheet),
# A100 (312 dense; "NVIDIA A100 Tensor Core GPU" datasheet). First match of the device name wins.
PEAK_BF16_TFLOPS = (
    ("H200 NVL", 835.5),
    ("H200", 989.5),
    ("H100 NVL", 835.5),
    ("H100 PCIe", 756.5),
    ("H100", 989.5),  # the SXM part ("NVIDIA H100 80GB HBM3")
    ("A100", 312.0),
)

FULL = dict(stacks=[1, 5, 10, 25], images=10_240, batch_size=None, procs=[1, 2, 4], proc_models=5,
            margin_models=25, margin_images=10_000, dag_images_per_batch=2_000, dag_models=8, dag_epochs=2,
            dag_forget=100, dag_cores=8, dag_gpus=1)
SMOKE = dict(stacks=[1, 2], images=16, batch_size=8, procs=[2], proc_models=2, margin_models=2,
             margin_images=64, dag_images_per_batch=8, dag_models=2, dag_epochs=1, dag_forget=4, dag_cores=2,
             dag_gpus=0)


def published_recipe():
    """The ``train`` section of config/cifar10.yaml as a :class:`Recipe` (one source of the recipe)."""
    from unlearnbench.training import Recipe

    with open(REPO / "config" / "cifar10.yaml") as fh:
        return Recipe.from_config(yaml.safe_load(fh)["train"])


def measured_recipe(recipe, batch_size=None):
    """One epoch of the recipe (the schedule's peak kept at the same fraction of it)."""
    return replace(recipe, epochs=1, peak_epoch=recipe.peak_epoch / recipe.epochs,
                   batch_size=batch_size or recipe.batch_size)


def flops_per_image() -> tuple[float, float]:
    """(forward + backward, forward) FLOPs of one ResNet-9 image, counted by torch's flop counter."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from unlearnbench.models import build_model

    model = build_model("resnet9", 10, 3)
    x = torch.randn(2, 3, 32, 32)
    with FlopCounterMode(display=False) as train:
        model(x).sum().backward()
    with torch.no_grad(), FlopCounterMode(display=False) as forward:
        model(x)
    return train.get_total_flops() / 2, forward.get_total_flops() / 2


def peak_tflops(device: str, override: float | None) -> tuple[float | None, str]:
    if override:
        return override, "given with --peak-tflops"
    if not device.startswith("cuda"):
        return None, "no peak figure for a CPU"
    import torch

    name = torch.cuda.get_device_name(torch.device(device))
    for key, value in PEAK_BF16_TFLOPS:
        if key in name:
            return value, f"{name}: dense BF16 tensor-core peak, NVIDIA data sheet (PEAK_BF16_TFLOPS)"
    return None, f"{name}: not in PEAK_BF16_TFLOPS (give --peak-tflops)"


def synthetic(n: int, device: str):
    import torch

    gen = torch.Generator().manual_seed(0)
    return (torch.randn(n, 3, 32, 32, generator=gen).to(device),
            torch.randint(0, 10, (n,), generator=gen).to(device))


def train_once(x, y, n_images: int, recipe, n_models: int, device: str) -> float:
    """Seconds of one epoch of ``n_models`` trained as one stack on the first ``n_images`` (set-up excluded)."""
    from train_throughput import time_training  # benchmarks/train_throughput.py: stack set-up + timed train_stack

    from unlearnbench.training import mixed_precision

    return time_training("resnet9", 10, 3, x, y, np.arange(n_images), recipe, n_models, n_models, device,
                         mixed_precision(device))


def train_seconds(x, y, recipe, n_models: int, device: str) -> float:
    """:func:`train_once` on all of ``y``, after a two-step warm-up at the same stack size."""
    train_once(x, y, 2 * recipe.batch_size, recipe, n_models, device)
    return train_once(x, y, len(y), recipe, n_models, device)


class Figures:
    """Turns measured model-images per second into the printed figures."""

    def __init__(self, recipe, train_flops, forward_flops, peak):
        self.images_per_model = recipe.epochs * CIFAR10_TRAIN
        self.train_flops, self.forward_flops, self.peak = train_flops, forward_flops, peak

    def models_per_hour(self, images_per_s: float) -> float:
        return images_per_s * 3600 / self.images_per_model

    def tflops(self, images_per_s: float, train: bool = True) -> float:
        return images_per_s * (self.train_flops if train else self.forward_flops) / 1e12

    def of_peak(self, images_per_s: float, train: bool = True) -> str:
        return "n/a" if self.peak is None else f"{100 * self.tflops(images_per_s, train) / self.peak:.1f} %"


def number(value: float) -> str:
    """Thousands separated above 100, three significant digits below (a CPU's models/hour is well under 1)."""
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def table(header, rows):
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(str(c) for c in row) + " |")
    print(flush=True)


def train_section(sizes, recipe, figures, device, x, y):
    import torch

    rows, base = [], None
    for m in sizes["stacks"]:
        try:
            seconds = train_seconds(x, y, recipe, m, device)
        except torch.cuda.OutOfMemoryError:
            rows.append((m, "out of memory", "", "", "", "", ""))
            torch.cuda.empty_cache()
            continue
        rate = m * len(y) / seconds
        mph = figures.models_per_hour(rate)
        base = mph if m == 1 else base
        rows.append((m, f"{seconds:.2f}", f"{rate:,.0f}", number(mph), f"{mph / base:.2f}" if base else "",
                     f"{figures.tflops(rate):.2f}", figures.of_peak(rate)))
    print(f"## 1. Training: stacks of M ResNet-9s, one epoch of {len(y):,} images each, batch {recipe.batch_size}")
    table(("M", "seconds", "images/s", "models/hour", "ratio to M=1", "TFLOP/s", "of peak"), rows)


def worker(args) -> None:
    """One of k concurrent processes: set up, warm up, wait for the start signal, train, report."""
    from unlearnbench.device import torch_setup

    device = torch_setup(args.threads, args.worker)
    recipe = measured_recipe(published_recipe(), args.batch_size)
    x, y = synthetic(args.images, device)
    train_once(x, y, 2 * recipe.batch_size, recipe, args.proc_models, device)
    print(json.dumps({"ready": device}), flush=True)
    sys.stdin.readline()  # the barrier: every worker is warm before any starts the clock
    seconds = train_once(x, y, len(y), recipe, args.proc_models, device)
    end = time.time()
    print(json.dumps({"start": end - seconds, "end": end}), flush=True)


def _report(proc, procs, k) -> dict:
    """The next JSON line of a worker; stops every worker and exits when one died instead."""
    line = proc.stdout.readline()
    if not line:
        for p in procs:
            p.kill()
        sys.exit(f"a worker of the {k}-process measurement failed (exit {proc.wait()}; its error is above)")
    return json.loads(line)


def processes_section(sizes, args, figures, device, workdir: Path):
    rows, base = [], None
    preference = "cpu" if device == "cpu" else "cuda/{k}"
    for k in sizes["procs"]:
        env = {**os.environ, "UNLEARNBENCH_GPU_LOCK_DIR": str(workdir / f"locks-{k}-processes")}
        cmd = [sys.executable, __file__, "--worker", preference.format(k=k), "--threads", str(args.threads),
               "--images", str(sizes["images"]), "--proc-models", str(sizes["proc_models"])]
        if sizes["batch_size"]:
            cmd += ["--batch-size", str(sizes["batch_size"])]
        procs = [subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
                 for _ in range(k)]
        devices = [_report(p, procs, k)["ready"] for p in procs]
        for p in procs:
            p.stdin.write("go\n")
            p.stdin.flush()
        spans = [_report(p, procs, k) for p in procs]
        for p in procs:
            p.stdin.close()
            p.wait()
        wall = max(s["end"] for s in spans) - min(s["start"] for s in spans)
        rate = k * sizes["proc_models"] * sizes["images"] / wall
        mph = figures.models_per_hour(rate)
        base = base or mph
        rows.append((k, ", ".join(sorted(set(devices))), f"{wall:.2f}", f"{rate:,.0f}", number(mph),
                     f"{mph / base:.2f}", f"{figures.tflops(rate):.2f}", figures.of_peak(rate)))
    print(f"## 2. k processes per device, each a stack of {sizes['proc_models']} ResNet-9s "
          f"(one epoch of {sizes['images']:,} images), started together after their warm-up")
    table(("k", "devices", "wall s", "images/s", "models/hour", f"ratio to k={sizes['procs'][0]}", "TFLOP/s",
           "of peak"), rows)


def margins_section(sizes, figures, device, repeats):
    from eval_batch import best_time  # benchmarks/eval_batch.py: fastest of `repeats` stack_margins calls

    from unlearnbench.stack import ModelStack

    m, n = sizes["margin_models"], sizes["margin_images"]
    x, y = synthetic(n, device)
    stack = ModelStack.initialise("resnet9", 10, 3, range(m), range(m), device)
    best_time(stack, x[:64], y[:64], None, 1)  # warm-up: kernels, thread pools
    seconds, _ = best_time(stack, x, y, None, repeats)
    rate = m * n / seconds
    print(f"## 3. Margin pass: {m} ResNet-9s x {n:,} images, eval mode, automatic chunk "
          f"({stack.eval_batch_size(x)} images per call)")
    table(("seconds", "model-images/s", "TFLOP/s (forward)", "of peak"),
          [(f"{seconds:.3f}", f"{rate:,.0f}", f"{figures.tflops(rate, train=False):.2f}",
            figures.of_peak(rate, train=False))])


def write_cifar10(root: Path, per_batch: int, seed: int = 0) -> None:
    """Random images in the official ``cifar-10-batches-py`` layout: five train batches and a test batch of
    ``per_batch`` uint8 rows each, pickled dicts as the release has them (read back by the loader)."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        entry = {"batch_label": name, "data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
                 "labels": rng.integers(0, 10, per_batch).tolist(),
                 "filenames": [f"{name}_{i}.png" for i in range(per_batch)]}
        with open(folder / name, "wb") as fh:
            pickle.dump(entry, fh, protocol=4)
    with open(folder / "batches.meta", "wb") as fh:
        pickle.dump({"label_names": [f"class{i}" for i in range(10)]}, fh, protocol=4)


def dag_config(sizes, recipe, threads: int, smoke: bool, jobs_per_gpu: int = 1) -> dict:
    n = sizes["dag_models"]
    epochs = sizes["dag_epochs"]
    train = {**{k: v for k, v in recipe.__dict__.items() if k != "augment"}, "epochs": epochs,
             "peak_epoch": recipe.peak_epoch * epochs / recipe.epochs}
    if sizes["batch_size"]:
        train["batch_size"] = sizes["batch_size"]
    return {
        "dataset": "cifar10",
        "data": {"root": "data", "verify_checksums": False, "n_train": 5 * sizes["dag_images_per_batch"],
                 "n_val": sizes["dag_images_per_batch"]},
        "model": "resnet9",
        "seed": 0,
        "train": train,
        "n_models": n,
        "n_holdout_oracles": n,
        "models_per_job": n,
        "forget_sets": [{"id": 1, "kind": "random", "size": sizes["dag_forget"]}],
        "methods": {"do_nothing": None, "oracle": None,
                    "gradient_ascent": {"lr": [1.0e-4], "batch_size": sizes["batch_size"] or 64, "epochs": [1]}},
        "resources": {"gpu": 0 if smoke else 1, "device": "cpu" if smoke else "auto", "threads": threads,
                      "models_per_batch": n, "jobs_per_gpu": jobs_per_gpu},
    }


def dag_section(sizes, recipe, args, workdir: Path) -> None:
    flow = workdir / "workflow-copy"
    flow.mkdir()
    for name in WORKFLOW_FILES:
        (shutil.copytree if (REPO / name).is_dir() else shutil.copy2)(REPO / name, flow / name)
    write_cifar10(flow / "data", sizes["dag_images_per_batch"])
    config = dag_config(sizes, recipe, args.threads, args.smoke, args.dag_jobs_per_gpu)
    (flow / "device_check.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    cmd = [sys.executable, "-m", "snakemake", "--cores", str(sizes["dag_cores"]), "--resources",
           f"gpu={sizes['dag_gpus'] * args.dag_jobs_per_gpu}", "--configfile", "device_check.yaml"]
    env = {**os.environ, "UNLEARNBENCH_GPU_LOCK_DIR": str(workdir / "locks-dag")}
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=flow, capture_output=True, text=True, env=env, timeout=args.dag_timeout)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        print(proc.stdout[-3000:], proc.stderr[-6000:], sep="\n")
        sys.exit(f"the DAG failed (exit {proc.returncode}); its files are in {flow}")
    jobs = (proc.stdout + proc.stderr).count("Finished jobid")
    summary = flow / "results" / "klom_summary.csv"
    print(f"## 4. The DAG: `snakemake {' '.join(cmd[3:])}` in {flow}")
    print(f"{5 * sizes['dag_images_per_batch']:,} generated train images in the CIFAR-10 format, "
          f"N = {sizes['dag_models']}, {sizes['dag_epochs']} epoch(s), forget set of {sizes['dag_forget']}")
    rows = len(summary.read_text().splitlines()) - 1 if summary.exists() else "missing"
    table(("wall s", "jobs run", "klom_summary.csv rows"), [(f"{wall:.1f}", jobs, rows)])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU (seconds of work; CI runs it)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads per process (default 1; 2 with a GPU)")
    parser.add_argument("--repeats", type=int, default=1, help="margin pass: the fastest of this many")
    parser.add_argument("--peak-tflops", type=float, default=None, help="the device's peak, if not in the table")
    parser.add_argument("--workdir", default=None, help="keep the DAG and locks here (default: a temp folder)")
    parser.add_argument("--dag-jobs-per-gpu", type=int, default=1,
                        help="resources.jobs_per_gpu of the DAG (and --resources gpu=<it>)")
    parser.add_argument("--dag-timeout", type=int, default=600, help="seconds before the DAG is stopped")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)  # internal: section 2's processes
    parser.add_argument("--images", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--batch-size", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--proc-models", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        args.threads = args.threads or 1
        return worker(args)

    import torch

    began = time.perf_counter()
    sizes = SMOKE if args.smoke else FULL
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="device-check-")).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    os.environ["UNLEARNBENCH_GPU_LOCK_DIR"] = str(workdir / "locks-main")
    from unlearnbench.device import torch_setup

    gpu = torch.cuda.is_available() and not args.smoke
    args.threads = args.threads or (2 if gpu else 1)
    device = torch_setup(args.threads, "cuda" if gpu else "cpu")
    recipe = published_recipe()
    measured = measured_recipe(recipe, sizes["batch_size"])
    train_flops, forward_flops = flops_per_image()
    peak, peak_source = peak_tflops(device, args.peak_tflops)
    figures = Figures(recipe, train_flops, forward_flops, peak)
    print(f"# device check{' (--smoke: tiny sizes, CPU)' if args.smoke else ''}: {device}"
          f"{' ' + torch.cuda.get_device_name(torch.device(device)) if gpu else ''}, torch {torch.__version__}, "
          f"{args.threads} CPU thread(s) per process")
    print(f"recipe: config/cifar10.yaml train ({recipe.epochs} epochs, batch {recipe.batch_size}, lr {recipe.lr}); "
          f"models/hour = full-recipe models ({recipe.epochs} x {CIFAR10_TRAIN:,} images) per hour")
    print(f"ResNet-9: {train_flops / 1e9:.3f} GFLOP per trained image (forward + backward), "
          f"{forward_flops / 1e9:.3f} per margin image (torch.utils.flop_counter)")
    print(f"peak: {'n/a' if peak is None else f'{peak:g} TFLOP/s'} ({peak_source})\n", flush=True)

    x, y = synthetic(sizes["images"], device)
    train_section(sizes, measured, figures, device, x, y)
    del x, y
    if gpu:
        torch.cuda.empty_cache()
    processes_section(sizes, args, figures, device, workdir)
    margins_section(sizes, figures, device, args.repeats)
    if gpu:
        torch.cuda.empty_cache()
    dag_section(sizes, recipe, args, workdir)
    print(f"total: {time.perf_counter() - began:.0f} s" + (f"; files kept in {workdir}" if args.workdir else ""))
    if not args.workdir:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
