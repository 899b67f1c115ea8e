"""One function per workflow stage: plain arguments in, artefacts out.

The scripts in ``workflow/scripts`` only unpack ``snakemake.*`` and call these, so every stage can be
run and tested without Snakemake. torch is imported inside the functions that need it: scoring and
summarising jobs stay fast to start.
"""

from __future__ import annotations

import logging
import time

import numpy as np

from .storage import load_arrays, load_npy, save_arrays, save_npy, save_table

log = logging.getLogger(__name__)

MARGINS_REQUIRED = ("margins", "model_index")
UNLEARNED_REQUIRED = ("margins", "epochs", "samples", "diverged", "model_index")


def _torch_setup(threads: int, device_preference: str) -> str:
    import torch

    from .device import claim_device

    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    device = claim_device(device_preference)
    log.info("device %s, %d CPU thread(s), torch %s", device, threads, torch.__version__)
    return device


def prepare_dataset(name: str, out: str, root: str = "data", download: bool = False,
                    verify_checksums: bool = True) -> None:
    from .data import load_dataset, save_splits

    splits = load_dataset(name, root=root, download=download, verify_checksums=verify_checksums)
    log.info("%s: %d train / %d val points, input shape %s", name, splits.n_train, splits.n_val, splits.x_train.shape[1:])
    save_splits(out, splits)


def make_forget_set(entry: dict, seed: int, n_train: int, out: str, splits: str | None = None) -> None:
    from .data import load_splits
    from .forget_sets import make_forget_set as build

    labels = load_splits(splits).y_train if splits else None
    indices = build({**entry, "seed": seed}, n_train, labels)
    log.info("forget set %s (%s): %d points", entry["id"], entry["kind"], len(indices))
    save_npy(out, indices)


def train_shard(
    splits: str,
    out: str,
    model: str,
    recipe: dict,
    model_range: tuple[int, int],
    seeds: list[int],
    forget_set: str | None = None,
    threads: int = 1,
    device: str = "auto",
    models_per_batch: int | None = None,
) -> None:
    """Train models ``model_range`` of a family on the train split (minus ``forget_set`` for oracles)."""
    import torch

    from .data import load_splits
    from .forget_sets import retain_points
    from .stack import ModelStack
    from .training import Recipe, train_stack

    dev = _torch_setup(threads, device)
    data = load_splits(splits)
    points = np.arange(data.n_train) if forget_set is None else retain_points(load_npy(forget_set), data.n_train)
    stack = ModelStack.initialise(model, data.num_classes, data.x_train.shape[1], seeds, range(*model_range), dev)
    start = time.perf_counter()
    train_stack(stack, data.inputs(dev), torch.from_numpy(data.labels()).to(dev), points, seeds,
                Recipe.from_config(recipe), models_per_batch, amp=dev.startswith("cuda"))
    log.info("trained %d models on %d points in %.1f s", stack.n_models, len(points), time.perf_counter() - start)
    stack.save(out, {"train_points": len(points)})


def compute_margins(weights: str, splits: str, out: str, threads: int = 1, device: str = "auto") -> None:
    """Margins of every model of a shard on every train point, then every validation point (float32)."""
    import torch

    from .data import load_splits
    from .margins import stack_margins
    from .stack import ModelStack

    dev = _torch_setup(threads, device)
    data = load_splits(splits)
    stack = ModelStack.load(weights, dev)
    margins = stack_margins(stack, data.inputs(dev), torch.from_numpy(data.labels()).to(dev))
    n = data.n_train
    log.info("train accuracy %.4f, val accuracy %.4f (mean over %d models)",
             (margins[:, :n] > 0).mean(), (margins[:, n:] > 0).mean(), stack.n_models)
    save_arrays(out, margins=margins, model_index=stack.model_index)


def unlearn_shard(
    method: str,
    hyperparameters: dict,
    snapshot_epochs: list[int],
    out: str,
    plugins: dict | None = None,
    weights: str | None = None,
    splits: str | None = None,
    forget_set: str | None = None,
    seeds: list[int] | None = None,
    margins_inputs: dict[str, str] | None = None,
    matching_oracles: list[str] | None = None,
    threads: int = 1,
    device: str = "auto",
    models_per_batch: int | None = None,
) -> None:
    from .methods import load_build, lookup
    from .unlearning import margins_method, unlearn_stack

    entry = lookup(method, plugins)
    build = load_build(entry)
    if entry.kind == "margins":
        inputs = {name: load_arrays(path, MARGINS_REQUIRED) for name, path in (margins_inputs or {}).items()}
        result = margins_method(build, hyperparameters, inputs)
    else:
        from .data import load_splits
        from .stack import ModelStack

        dev = _torch_setup(threads, device)
        oracles = ModelStack.concat([ModelStack.load(p, dev) for p in matching_oracles]) if matching_oracles else None
        start = time.perf_counter()
        result = unlearn_stack(build, hyperparameters, snapshot_epochs, ModelStack.load(weights, dev),
                               load_splits(splits), load_npy(forget_set), seeds, oracles, models_per_batch, dev)
        log.info("%s %s: %d models, %d snapshots in %.1f s", method, hyperparameters, len(result["model_index"]),
                 len(result["epochs"]), time.perf_counter() - start)
    save_arrays(out, **result)


def score_klom(
    unlearned: list[str],
    oracles: list[str],
    forget_set: str,
    n_train: int,
    n_val: int,
    klom: dict,
    cost_unit: int,
    out_scores: str,
    out_stats: str,
) -> None:
    """Per-point KLOM of unlearned vs scored oracles at each snapshot, and per-group statistics.

    ``cost_unit`` is the samples of one base-model training run (train size x epochs): relative cost =
    samples processed by forward+backward passes / ``cost_unit``.
    """
    import pandas as pd

    from .metrics.groups import group_masks, group_stats
    from .metrics.klom import klom as klom_fn

    parts = [load_arrays(p, UNLEARNED_REQUIRED) for p in unlearned]
    margins = np.concatenate([p["margins"] for p in parts], axis=1)  # [S, M, P]
    samples = np.concatenate([p["samples"] for p in parts], axis=1)
    diverged = np.concatenate([p["diverged"] for p in parts], axis=1)
    epochs = parts[0]["epochs"]
    oracle = np.concatenate([load_arrays(p, MARGINS_REQUIRED)["margins"] for p in oracles], axis=0)
    masks = group_masks(load_npy(forget_set), n_train, n_val)
    options = dict(bins=klom["bins"], eps=klom["eps"], clip=tuple(klom["clip"]), direction=klom["direction"],
                   inclusive_last_bin=klom["inclusive_last_bin"])
    scores = np.stack([klom_fn(margins[s], oracle, **options) for s in range(len(epochs))])
    rows = []
    for s, epoch in enumerate(epochs):
        for group, mask in masks.items():
            rows.append({
                "epoch": int(epoch),
                "group": group,
                **group_stats(scores[s, mask], klom["percentiles"]),
                "n_models": margins.shape[1],
                "n_oracles": oracle.shape[0],
                "relative_cost": float(samples[s].mean()) / cost_unit,
                "diverged": int(diverged[s].sum()),
                "direction": klom["direction"],
            })
    save_arrays(out_scores, klom=scores, epochs=epochs, direction=np.str_(klom["direction"]))
    save_table(out_stats, pd.DataFrame(rows))


def summarize(stats: list[str], keys: list[dict], out_csv: str, out_parquet: str) -> object:
    """Stack per-run statistics (each with identifying ``keys``) into the summary table."""
    import pandas as pd

    from .storage import load_table

    frames = [load_table(path).assign(**key) for path, key in zip(stats, keys)]
    table = pd.concat(frames, ignore_index=True)
    first = ["dataset", "model", "forget_set", "method", "run", "epoch", "group", "n_points", "n_models"]
    table = table[first + [c for c in table.columns if c not in first]]
    table = table.sort_values(["dataset", "forget_set", "method", "run", "epoch", "group"], kind="stable")
    save_table(out_csv, table)
    save_table(out_parquet, table)
    return table
