"""One function per workflow stage: plain arguments in, artefacts out.

The scripts in ``workflow/scripts`` only unpack ``snakemake.*`` and call these, so every stage can be
run and tested without Snakemake. torch is imported inside the functions that need it: scoring and
summarising jobs stay fast to start.
"""

from __future__ import annotations

import logging
import time

import numpy as np

from .storage import ArtefactError, load_arrays, load_npy, save_arrays, save_npy, save_table

log = logging.getLogger(__name__)

MARGINS_REQUIRED = ("margins", "model_index")
UNLEARNED_REQUIRED = ("margins", "epochs", "samples", "diverged", "model_index")


def torch_setup(threads: int, device_preference: str, compile: bool = False) -> str:
    """Threads, device and deterministic kernels for a torch job; ``compile`` opts the training forward
    into ``torch.compile`` (:data:`unlearnbench.stack.ENGINE`).

    Deterministic mode is switched on with ``torch._C._set_deterministic_algorithms``, the switch
    ``torch.use_deterministic_algorithms`` sets, because the public function also imports
    ``torch._inductor`` (and with it ``torch._dynamo``) to set inductor's own flag: 1.5-2 s of start-up
    in every job (``benchmarks/job_startup.py``). Inductor's flag matters only to compiled code, so a job
    that compiles takes the public function. On the CPU the mode changes nothing the loop runs (its
    kernels are deterministic for a given thread count; tests/test_optim.py checks two runs give the same
    bytes); it stays on for GPUs, where it matters, and for plug-ins' ops.
    """
    import os

    import torch

    from .device import claim_device
    from .loop import configure

    torch.set_num_threads(threads)
    device = claim_device(device_preference)
    if device.startswith("cuda"):
        # deterministic cuBLAS needs a fixed workspace, read when the first handle is made (after this)
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    if compile:
        torch.use_deterministic_algorithms(True, warn_only=True)
    else:
        torch._C._set_deterministic_algorithms(True, warn_only=True)
    configure(compile=compile)
    log.info("device %s, %d CPU thread(s), torch %s%s", device, threads, torch.__version__,
             ", torch.compile on" if compile else "")
    return device


def prepare_dataset(name: str, out: str, sizes: tuple[int, int], **options) -> None:
    """The fixed splits of data set ``name`` (options: root, download, verify_checksums, resolution...).

    ``sizes`` are the (train, val) sizes the rest of the DAG assumes (forget sets are drawn from
    ``range(n_train)`` before any image is read): a different data set on disk is an error.
    """
    from .data import load_dataset, save_splits

    splits = load_dataset(name, **options)
    if (splits.n_train, splits.n_val) != tuple(sizes):
        raise ValueError(
            f"{name} under {options.get('root')!r} has {splits.n_train} train / {splits.n_val} val points, the "
            f"workflow expects {sizes[0]} / {sizes[1]}: set data.n_train and data.n_val in the config to match")
    log.info("%s: %d train / %d val points, input shape %s", name, splits.n_train, splits.n_val, splits.x_train.shape[1:])
    save_splits(out, splits)


def make_forget_set(entry: dict, seed: int, n_train: int, out: str, splits: str | None = None,
                    datamodels: str | None = None) -> None:
    from .data import load_splits
    from .forget_sets import make_forget_set as build

    labels = load_splits(splits).y_train if splits else None
    weights = None
    if datamodels:  # the pool's fit (.npz) or an imported matrix (.npy, memory-mapped)
        from .datamodels import train_by_train

        weights = train_by_train(datamodels, n_train)
    indices = build({**entry, "seed": seed}, n_train, labels, weights)
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
    pool_seed: int | None = None,
    threads: int = 1,
    device: str = "auto",
    models_per_batch: int | None = None,
    compile: bool = False,
) -> None:
    """Train models ``model_range`` of a family on the train split (minus ``forget_set`` for oracles).

    Pool models (``pool_seed`` given) train on their own seeded random half of the train split; the
    masks are stored with the weights (and later with the margins).
    """
    import torch

    from .data import load_splits
    from .forget_sets import retain_points
    from .stack import ModelStack
    from .training import Recipe, mixed_precision, train_stack

    dev = torch_setup(threads, device, compile)
    data = load_splits(splits)
    points = np.arange(data.n_train) if forget_set is None else retain_points(load_npy(forget_set), data.n_train)
    stack = ModelStack.initialise(model, data.num_classes, data.x_train.shape[1], seeds, range(*model_range), dev)
    if pool_seed is not None:
        from .metrics.ulira import pool_mask

        masks = np.stack([pool_mask(data.n_train, m, pool_seed) for m in range(*model_range)])
        stack.extras["train_mask"] = masks
        points = np.stack([np.flatnonzero(row) for row in masks])  # [M, n_train // 2]
    start = time.perf_counter()
    val = np.arange(data.n_train, data.n_train + data.n_val)
    train_stack(stack, data.images(dev), torch.from_numpy(data.labels()).to(dev), points, seeds,
                Recipe.from_config(recipe), models_per_batch, amp=mixed_precision(dev),
                eval_points={"train": points, "val": val})
    log.info("trained %d models on %d points in %.1f s", stack.n_models, points.shape[-1], time.perf_counter() - start)
    stack.save(out, {"train_points": points.shape[-1]})


def compute_margins(weights: str, splits: str, out: str, threads: int = 1, device: str = "auto",
                    keep_logits: bool = False, tta: str = "none") -> None:
    """Margins of every model of a shard on every train point, then every validation point (float32), and
    whether each model's argmax is right on each point (``correct``, bool ``[M, P]``).

    Arrays stored with the weights (pool models' ``train_mask``) are carried over; ``keep_logits`` also
    stores the logits ``[M, P, C]`` (datamodel matching regresses logits). ``tta="flip"``: margins (and
    logits) of the mean logits of each image and its mirror image (``ModelStack.tta``).
    """
    import torch

    from .data import load_splits
    from .margins import argmax_correct, margins_from_logits
    from .stack import ModelStack

    dev = torch_setup(threads, device)
    data = load_splits(splits)
    stack = ModelStack.load(weights, dev)
    stack.tta = tta
    inputs, labels = data.images(dev), torch.from_numpy(data.labels()).to(dev)
    logits = stack.logits(inputs)  # [M, P, C]: small next to the images
    margins = margins_from_logits(logits, labels).cpu().numpy()
    correct = argmax_correct(logits, labels).cpu().numpy()
    extra = {"logits": logits.cpu().numpy()} if keep_logits else {}
    n = data.n_train
    log.info("argmax accuracy: train %.4f, val %.4f (mean over %d models)",
             correct[:, :n].mean(), correct[:, n:].mean(), stack.n_models)
    save_arrays(out, margins=margins, correct=correct, model_index=stack.model_index, **stack.extras, **extra)


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
    datamodel_effect: str | None = None,
    matching_oracles: list[str] | None = None,
    threads: int = 1,
    device: str = "auto",
    models_per_batch: int | None = None,
    compile: bool = False,
) -> None:
    from .methods import load_build, lookup
    from .unlearning import margins_method, unlearn_stack

    entry = lookup(method, plugins)
    build = load_build(entry)
    effect = load_arrays(datamodel_effect, ("margin_effect", "logit_effect")) if datamodel_effect else None
    if entry.kind == "margins":
        inputs = {name: load_arrays(path, MARGINS_REQUIRED) for name, path in (margins_inputs or {}).items()}
        if effect is not None:
            inputs["datamodel_effect"] = effect
        result = margins_method(build, hyperparameters, inputs)
    else:
        from .data import load_splits
        from .stack import ModelStack

        dev = torch_setup(threads, device, compile)
        oracles = ModelStack.concat([ModelStack.load(p, dev) for p in matching_oracles]) if matching_oracles else None
        start = time.perf_counter()
        targets = {"forget_logit_effect": effect["logit_effect"]} if effect is not None else None
        models = ModelStack.load(weights, dev)
        if entry.kind == "retrain":  # from scratch: fresh models of the base models' architecture and indices
            models = ModelStack.initialise(models.arch, models.num_classes, models.in_channels, seeds,
                                           models.model_index, dev)
        result = unlearn_stack(build, hyperparameters, snapshot_epochs, models,
                               load_splits(splits), load_npy(forget_set), seeds, oracles, models_per_batch, dev,
                               targets=targets)
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
    out_epsilon: str,
    bootstrap: dict | None = None,
    epsilon: dict | None = None,
    label: str = "",
) -> None:
    """Per-point KLOM of unlearned vs scored oracles at each snapshot, per-group statistics with
    bootstrap intervals over model draws and argmax accuracies, and the NeurIPS'23 challenge ε of the
    forget points (all from :func:`unlearnbench.scoring.score_margins`).

    ``cost_unit`` is the samples of one base-model training run (train size x epochs): relative cost =
    samples processed by forward+backward passes / ``cost_unit``. ``label`` names the run in the log.
    """
    import pandas as pd

    from .scoring import EPSILON_COLUMNS, KlomOptions, score_margins

    bootstrap = bootstrap or {"n_resamples": 0, "alpha": 0.05}
    parts = [load_arrays(p, UNLEARNED_REQUIRED) for p in unlearned]
    margins = np.concatenate([p["margins"] for p in parts], axis=1)  # [S, M, P]
    samples = np.concatenate([p["samples"] for p in parts], axis=1)
    diverged = np.concatenate([p["diverged"] for p in parts], axis=1)
    correct = _stored_correctness(parts, unlearned, axis=1)
    epochs = parts[0]["epochs"]
    oracle_parts = [load_arrays(p, MARGINS_REQUIRED) for p in oracles]
    oracle = np.concatenate([p["margins"] for p in oracle_parts], axis=0)
    oracle_correct = _stored_correctness(oracle_parts, oracles, axis=0)
    forget = load_npy(forget_set)
    if margins.shape[-1] != n_train + n_val or oracle.shape[-1] != n_train + n_val:
        raise ValueError(f"margins cover {margins.shape[-1]} (unlearned) and {oracle.shape[-1]} (oracle) points, "
                         f"the data set has {n_train} train + {n_val} val")
    options = KlomOptions.from_config(klom)
    log.info("scoring %s: %d unlearned models (%d shard(s)) x %d snapshot(s) vs %d oracles (%d shard(s)), "
             "%d points (%d train, %d val), forget set %s of %d points, KLOM %s",
             label or "a run", margins.shape[1], len(parts), len(epochs), oracle.shape[0], len(oracle_parts),
             margins.shape[-1], n_train, n_val, forget_set, len(forget), options.direction)
    scores, rows, eps_rows = [], [], []
    for s, epoch in enumerate(epochs):
        scored = score_margins(
            margins[s], oracle, forget, n_train, klom=options, percentiles=klom["percentiles"],
            bootstrap=bootstrap["n_resamples"], alpha=bootstrap["alpha"], seed=int(epoch), epsilon=epsilon,
            correct_unlearned=None if correct is None else correct[s], correct_oracle=oracle_correct)
        scores.append(scored.klom)
        run_columns = {"n_models": margins.shape[1], "n_oracles": oracle.shape[0],
                       "relative_cost": float(samples[s].mean()) / cost_unit, "diverged": int(diverged[s].sum()),
                       "direction": options.direction}
        rows += [{"epoch": int(epoch), **row, **run_columns} for row in scored.rows]
        if scored.epsilon is not None:
            eps_rows.append({"epoch": int(epoch), **scored.epsilon})
        log.info("epoch %d: %s", epoch, _snapshot_line(scored, int(diverged[s].sum())))
    save_arrays(out_scores, klom=np.stack(scores), epochs=epochs, direction=np.str_(options.direction))
    save_table(out_stats, pd.DataFrame(rows))
    save_table(out_epsilon, pd.DataFrame(eps_rows, columns=["epoch", *EPSILON_COLUMNS]))


def _stored_correctness(parts: list[dict], paths: list[str], axis: int) -> np.ndarray | None:
    """The ``correct`` arrays of artefacts, concatenated like their margins; None (accuracy NaN) when any lacks
    one: margins with no logits behind them (DM-direct's predictions, imported published margins), or an
    artefact written before correctness was stored (the workflow rebuilds those)."""
    missing = [path for part, path in zip(parts, paths) if "correct" not in part]
    if missing:
        log.info("accuracy unknown (NaN): no argmax correctness stored in %s", ", ".join(missing))
        return None
    for part, path in zip(parts, paths):
        correct, margins = part["correct"], part["margins"]
        if correct.dtype != bool or correct.shape != margins.shape:
            raise ArtefactError(path, f"'correct' is {correct.dtype} {correct.shape}, expected bool "
                                      f"{margins.shape} like the margins")
    return np.concatenate([p["correct"] for p in parts], axis=axis)


def _snapshot_line(scored, n_diverged: int) -> str:
    """``forget P95 9.12 acc 1.000 (oracle 0.871) | retain ... | val ...; ε forget score ..., final ...``."""

    def number(value: float, digits: int) -> str:
        return "n/a" if np.isnan(value) else f"{value:.{digits}f}"

    groups = " | ".join(f"{r['group']} P95 {r['p95']:.3f} acc {number(r['accuracy'], 3)} "
                        f"(oracle {number(r['oracle_accuracy'], 3)})" for r in scored.rows)
    if scored.epsilon is not None:
        groups += (f"; ε forget score {scored.epsilon['forget_score']:.3f}, "
                   f"final score {number(scored.epsilon['final_score'], 3)}")
    return groups + (f"; {n_diverged} diverged model(s)" if n_diverged else "")


def stack_tables(paths: list[str], keys: list[dict], first: list[str], order: list[str]):
    """Concatenate per-run tables, each tagged with its identifying ``keys``, in a stable order."""
    import pandas as pd

    from .storage import load_table

    table = pd.concat([load_table(path).assign(**key) for path, key in zip(paths, keys)], ignore_index=True)
    table = table[first + [c for c in table.columns if c not in first]]
    return table.sort_values(order, kind="stable")


def summarize(stats: list[str], epsilon: list[str], keys: list[dict], out_csv: str, out_parquet: str,
              out_epsilon: str, selections: list[str] = (), fixed_selections: list[dict] = (),
              rule: str = "average_95", methods: dict | None = None, descriptions: dict | None = None) -> None:
    """The KLOM summary (CSV and Parquet) and the ε summary, one row per run, sample, snapshot (and group).

    ``keys`` tag each score with its dataset, model, forget set, method, run and ``sample`` (``selection`` or
    ``report``). ``selections`` (JSON of the ``select_run`` checkpoints) and ``fixed_selections`` (methods with
    one candidate) name each method's reported run; ``methods``: per method its ``role`` and ``pool_cost``;
    ``descriptions``: per forget set its description. See :func:`annotate` for the columns added.
    """
    from .selection import read_selection

    ids = ["dataset", "model", "forget_set", "method", "run", "sample", "epoch"]
    keys = [{"sample": "report", **key} for key in keys]  # scores without a sample were reported directly
    table = stack_tables(stats, keys, ids + ["group", "n_points", "n_models"], ids + ["group"])
    chosen = [c for path in selections for c in read_selection(path)] + list(fixed_selections)
    table = annotate(table, chosen, rule, methods or {}, descriptions or {})
    save_table(out_csv, table)
    save_table(out_parquet, table)
    save_table(out_epsilon, stack_tables(epsilon, keys, ids, ids))


def annotate(table, chosen: list[dict], rule: str, methods: dict, descriptions: dict):
    """Columns of the protocol on a stacked score table (one row per run, sample, epoch and group):

    - ``average_95`` (mean of the three groups' P95) and ``selection_value`` (the value of ``rule``, named in
      ``selection_rule``) of the row's run, sample and epoch;
    - ``selected``: the row's run and epoch is its method's reported run (``chosen``: ``{method,
      forget_set, run, epoch}``); ``n_candidates``: runs x snapshots the method had to choose from;
    - ``role`` and ``pool_cost`` of the method (``methods``), ``forget_set_description``;
    - the ``oracle`` role's ``relative_cost`` is one training on the retain set (its models are retrained,
      not unlearned): retain points / train points.
    """
    import numpy as np

    from .selection import RULE_STAT, rule_value, wide

    run = ["forget_set", "method", "run", "sample", "epoch"]
    values = wide(table, run)
    values["average_95"] = rule_value(values[f"forget_{RULE_STAT}"], values[f"retain_{RULE_STAT}"],
                                      values[f"val_{RULE_STAT}"], "average_95")
    values["selection_value"] = rule_value(values[f"forget_{RULE_STAT}"], values[f"retain_{RULE_STAT}"],
                                           values[f"val_{RULE_STAT}"], rule)
    table = table.merge(values[run + ["average_95", "selection_value"]], on=run, how="left")
    table["selection_rule"] = rule
    picks = {(str(c["forget_set"]), str(c["method"])): (str(c["run"]), int(c["epoch"])) for c in chosen}
    key = list(zip(table["forget_set"], table["method"]))
    table["selected"] = [picks.get(k) == (r, int(e)) for k, r, e in zip(key, table["run"], table["epoch"])]
    table = table.join(_candidate_counts(table), on=["forget_set", "method"])
    facts = {m: methods.get(m, {}) for m in table["method"].unique()}
    table["role"] = table["method"].map(lambda m: facts[m].get("role", "unlearning"))
    table["pool_cost"] = table["method"].map(lambda m: float(facts[m].get("pool_cost", 0.0)))
    table["forget_set_description"] = table["forget_set"].map(lambda f: str(descriptions.get(f, "")))
    oracle = table["role"] == "oracle"
    if oracle.any():
        points = table.pivot_table(index=run, columns="group", values="n_points", aggfunc="first")
        share = (points["retain"] / (points["retain"] + points["forget"])).rename("_retrained")
        table = table.join(share, on=run)
        table.loc[oracle, "relative_cost"] = table.loc[oracle, "_retrained"].to_numpy(np.float64)
        table = table.drop(columns="_retrained")
    return table


def _candidate_counts(table):
    """``n_candidates`` per forget set and method: distinct (run, epoch) on its selection sample, or on its
    report sample when it has none (a single candidate, or the retrain curve's budgets)."""
    group = ["forget_set", "method"]
    has_selection = table.groupby(group)["sample"].transform(lambda s: (s == "selection").any())
    pool = table[(table["sample"] == "selection") | ~has_selection]
    return pool.drop_duplicates(group + ["run", "epoch"]).groupby(group).size().rename("n_candidates")
