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


def torch_setup(threads: int, device_preference: str) -> str:
    import torch

    from .device import claim_device

    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    device = claim_device(device_preference)
    log.info("device %s, %d CPU thread(s), torch %s", device, threads, torch.__version__)
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
    weights = load_arrays(datamodels, ("weights",))["weights"][:, :n_train] if datamodels else None
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
) -> None:
    """Train models ``model_range`` of a family on the train split (minus ``forget_set`` for oracles).

    Pool models (``pool_seed`` given) train on their own seeded random half of the train split; the
    masks are stored with the weights (and later with the margins).
    """
    import torch

    from .data import load_splits
    from .forget_sets import retain_points
    from .stack import ModelStack
    from .training import Recipe, train_stack

    dev = torch_setup(threads, device)
    data = load_splits(splits)
    points = np.arange(data.n_train) if forget_set is None else retain_points(load_npy(forget_set), data.n_train)
    stack = ModelStack.initialise(model, data.num_classes, data.x_train.shape[1], seeds, range(*model_range), dev)
    if pool_seed is not None:
        from .metrics.ulira import pool_mask

        masks = np.stack([pool_mask(data.n_train, m, pool_seed) for m in range(*model_range)])
        stack.extras["train_mask"] = masks
        points = np.stack([np.flatnonzero(row) for row in masks])  # [M, n_train // 2]
    start = time.perf_counter()
    train_stack(stack, data.images(dev), torch.from_numpy(data.labels()).to(dev), points, seeds,
                Recipe.from_config(recipe), models_per_batch, amp=dev.startswith("cuda"))
    log.info("trained %d models on %d points in %.1f s", stack.n_models, points.shape[-1], time.perf_counter() - start)
    stack.save(out, {"train_points": points.shape[-1]})


def compute_margins(weights: str, splits: str, out: str, threads: int = 1, device: str = "auto",
                    keep_logits: bool = False) -> None:
    """Margins of every model of a shard on every train point, then every validation point (float32).

    Arrays stored with the weights (pool models' ``train_mask``) are carried over; ``keep_logits`` also
    stores the logits ``[M, P, C]`` (datamodel matching regresses logits).
    """
    import torch

    from .data import load_splits
    from .margins import margins_from_logits
    from .stack import ModelStack

    dev = torch_setup(threads, device)
    data = load_splits(splits)
    stack = ModelStack.load(weights, dev)
    inputs, labels = data.images(dev), torch.from_numpy(data.labels()).to(dev)
    logits = stack.logits(inputs)  # [M, P, C]: small next to the images
    margins = margins_from_logits(logits, labels).cpu().numpy()
    extra = {"logits": logits.cpu().numpy()} if keep_logits else {}
    n = data.n_train
    log.info("train accuracy %.4f, val accuracy %.4f (mean over %d models)",
             (margins[:, :n] > 0).mean(), (margins[:, n:] > 0).mean(), stack.n_models)
    save_arrays(out, margins=margins, model_index=stack.model_index, **stack.extras, **extra)


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

        dev = torch_setup(threads, device)
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
) -> None:
    """Per-point KLOM of unlearned vs scored oracles at each snapshot, per-group statistics with
    bootstrap intervals over model draws, and the NeurIPS'23 challenge ε of the forget points.

    ``cost_unit`` is the samples of one base-model training run (train size x epochs): relative cost =
    samples processed by forward+backward passes / ``cost_unit``.
    """
    import pandas as pd

    from .metrics import epsilon as eps_metric
    from .metrics.bootstrap import klom_percentile_ci
    from .metrics.groups import group_masks, group_stats
    from .metrics.klom import klom as klom_fn
    from .metrics.klom import saturation

    bootstrap = bootstrap or {"n_resamples": 0}
    parts = [load_arrays(p, UNLEARNED_REQUIRED) for p in unlearned]
    margins = np.concatenate([p["margins"] for p in parts], axis=1)  # [S, M, P]
    samples = np.concatenate([p["samples"] for p in parts], axis=1)
    diverged = np.concatenate([p["diverged"] for p in parts], axis=1)
    epochs = parts[0]["epochs"]
    oracle = np.concatenate([load_arrays(p, MARGINS_REQUIRED)["margins"] for p in oracles], axis=0)
    forget = load_npy(forget_set)
    masks = group_masks(forget, n_train, n_val)
    options = dict(bins=klom["bins"], eps=klom["eps"], clip=tuple(klom["clip"]), direction=klom["direction"],
                   inclusive_last_bin=klom["inclusive_last_bin"])
    scores = np.stack([klom_fn(margins[s], oracle, **options) for s in range(len(epochs))])
    rows, eps_rows = [], []
    for s, epoch in enumerate(epochs):
        for group, mask in masks.items():
            row = {"epoch": int(epoch), "group": group, **group_stats(scores[s, mask], klom["percentiles"])}
            if bootstrap["n_resamples"] and not diverged[s].any():
                # rough indication of model-draw noise, centred on the estimate (see metrics.bootstrap)
                low, high = klom_percentile_ci(
                    margins[s], oracle, mask, 95, bootstrap["n_resamples"], bootstrap["alpha"], seed=int(epoch),
                    bias_correct=True, **options)
                # re-centring can step outside KLOM's range [0, saturation]
                row["p95_low"], row["p95_high"] = max(low, 0.0), min(high, saturation(klom["eps"]))
            rows.append(row | {
                "n_models": margins.shape[1],
                "n_oracles": oracle.shape[0],
                "relative_cost": float(samples[s].mean()) / cost_unit,
                "diverged": int(diverged[s].sum()),
                "direction": klom["direction"],
            })
        if epsilon is not None:
            eps_rows.append({"epoch": int(epoch), **_epsilon_scores(margins[s], oracle, forget, masks, epsilon,
                                                                    eps_metric)})
    save_arrays(out_scores, klom=scores, epochs=epochs, direction=np.str_(klom["direction"]))
    save_table(out_stats, pd.DataFrame(rows))
    save_table(out_epsilon, pd.DataFrame(eps_rows, columns=["epoch", "n_forget", "epsilon_mean", "epsilon_max",
                                                            "forget_score", "final_score"]))


def _epsilon_scores(unlearned, oracle, forget, masks, options, eps_metric) -> dict:
    """The challenge's per-forget-point ε, its bucketed forget score and the final score (accuracy ratios
    on retain and validation points, unlearned over retrained, from the same margins)."""
    finite = np.isfinite(unlearned).all(axis=1)
    eps = eps_metric.epsilon_per_point(unlearned[:, forget], oracle[:, forget], options["delta"], options["cap"])
    score = eps_metric.forget_score(eps, n_models=len(unlearned))
    acc = {(who, g): (m[:, masks[g]] > 0).mean(axis=1) for who, m in (("u", unlearned), ("o", oracle))
           for g in ("retain", "val")}
    if not finite.all():
        final = 0.0  # a diverged run scores nothing
    elif acc["o", "retain"].mean() > 0 and acc["o", "val"].mean() > 0:
        final = eps_metric.final_score(score, acc["u", "retain"], acc["o", "retain"], acc["u", "val"],
                                       acc["o", "val"])
    else:
        final = float("nan")  # the ratios are undefined when the retrained models are never right
    return {"n_forget": len(forget), "epsilon_mean": float(eps.mean()), "epsilon_max": float(eps.max()),
            "forget_score": score, "final_score": final}


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
