"""Stages of the pool of random-half models: datamodels, their forget effects and fit quality, and U-LiRA.

One pool serves three uses (spec §6-§7): datamodels attribute each point's margin (and logits) to the
pool's inclusion masks (``unlearnbench.datamodels``; or an imported attribution matrix replaces them);
U-LiRA unlearns random requests from pool models and attacks the result; the masks travel with the
pool's margins (``train_mask``).
"""

from __future__ import annotations

import logging

import numpy as np

from .storage import load_arrays, save_arrays, save_table

log = logging.getLogger(__name__)


def load_pool(paths: list[str], keep_logits: bool = False) -> dict[str, np.ndarray]:
    """Concatenate pool margin shards: ``margins [M, P]``, ``train_mask [M, n_train]`` (+ ``logits``)."""
    keys = ("margins", "train_mask", "model_index") + (("logits",) if keep_logits else ())
    parts = [load_arrays(p, keys) for p in paths]
    return {k: np.concatenate([p[k] for p in parts]) for k in keys}


def fit_datamodels(pool_margins: list[str], estimator: str, l2: float, n_train: int, out_fit: str) -> None:
    """The train×train datamodel matrix ``weights [n_train, n_train]`` (float32) of the pool, for the
    ``attribution_pc`` forget sets: rows = train points whose inclusion varies, columns = train targets."""
    from .datamodels import PoolAttribution

    pool = load_pool(pool_margins)
    fitted = PoolAttribution(pool["train_mask"], pool["margins"], estimator, l2)
    log.info("datamodels: %s (asked for %s), l2 %g, %d pool models, %d train points",
             fitted.estimator, estimator, l2, fitted.n_models, n_train)
    save_arrays(out_fit, weights=fitted.train_matrix(n_train), estimator=np.array(fitted.estimator))


def load_imported(spec: dict, n_train: int, n_points: int, n_classes: int | None = None):
    """The ``datamodels.import`` files as attributions: ``(margins, logits or None)``, memory-mapped."""
    from .datamodels import MatrixAttribution, load_attribution_matrix

    margins = MatrixAttribution(load_attribution_matrix(spec["weights"], n_train, n_points))
    logits = None
    if spec.get("logit_weights"):
        logits = MatrixAttribution(load_attribution_matrix(spec["logit_weights"], n_train, n_points, n_classes))
    return margins, logits


def datamodel_quality(pool_margins: list[str], estimator: str | None, l2: float, holdout_models: int,
                      group_sizes: list[int], seed: int, out: str, imported: dict | None = None,
                      n_train: int | None = None) -> None:
    """``fit_quality.csv``: forget effects of groups of train points, predicted vs observed on held-out pool models.

    The last ``holdout_models`` pool models are held out; the estimator is fitted on the others (or, with
    ``imported``, the imported matrix is judged against the whole pool).  Columns: see
    :func:`unlearnbench.datamodels.effect_calibration` and ``config/README.md``.
    """
    import pandas as pd

    from .datamodels import PoolAttribution, effect_calibration, pearson, resolve_estimator

    pool = load_pool(pool_margins)
    masks, margins = pool["train_mask"], pool["margins"]
    n_train = masks.shape[1] if n_train is None else n_train
    if estimator is not None:  # auto decides on the whole pool, as for the effects the methods use
        estimator = resolve_estimator(estimator, len(masks), n_train)
    if imported:
        fitted = load_imported(imported, n_train, margins.shape[1])[0]
        n_fit, held = 0, slice(None)
        output_corr = None
    else:
        n_fit = len(masks) - holdout_models
        held = slice(n_fit, None)
        fitted = PoolAttribution(masks[:n_fit], margins[:n_fit], estimator, l2)
        output_corr = pearson(fitted.predict(masks[held]), np.asarray(margins[held], dtype=np.float64))
    observed = PoolAttribution(masks[held], margins[held], "diff_means")
    rows = effect_calibration(fitted, observed, group_sizes, seed)
    for row in rows:
        points = slice(n_train, None) if row["points"] == "val" else slice(0, n_train)
        row["output_correlation"] = float(np.nanmean(output_corr[points])) if output_corr is not None else np.nan
    frame = pd.DataFrame(rows)
    frame.insert(0, "n_holdout_models", observed.n_models)
    frame.insert(0, "n_fit_models", n_fit)
    frame.insert(0, "l2", np.nan if imported or fitted.estimator == "diff_means" else l2)
    frame.insert(0, "estimator", fitted.estimator)
    for row in frame[frame.points == "forget"].itertuples():
        log.info("group size %d: scale %.3f, calibration slope %.3f, correlation %.3f (%s)", row.group_size,
                 row.scale, row.calibration_slope, row.correlation, row.estimator)
    save_table(out, frame)


def _labels(splits: str) -> tuple[np.ndarray, int]:
    """Labels of every point in margin order and the train-set size, read without the images (gigabytes)."""
    with np.load(splits, allow_pickle=False) as npz:
        y_train = npz["y_train"]
        return np.concatenate([y_train, npz["y_val"]]).astype(np.int64), len(y_train)


def datamodel_effect(forget_set: str, out: str, estimator: str | None = None, l2: float = 1.0,
                     pool_margins: list[str] | None = None, imported: dict | None = None,
                     splits: str | None = None) -> None:
    """Σ_{i∈F} β_i(x) of margin and logit datamodels, for DM-direct and datamodel matching (one estimator for both).

    From the pool (``pool_margins``, ``estimator``, ``l2``) or from an imported matrix (``imported``).  An import
    without logit weights gives DMM the logit shift that moves each point's margin by exactly the margin effect:
    the effect on its label's logit, zero on the others (the margin z_y − log Σ_{j≠y} exp z_j is linear in z_y).
    """
    from .datamodels import PoolAttribution
    from .storage import load_npy

    forget = load_npy(forget_set)
    if imported:
        labels, n_train = _labels(splits)
        n_classes = int(labels.max()) + 1
        margin_source, logit_source = load_imported(imported, n_train, len(labels), n_classes)
        margin_effect = margin_source.effect(forget)
        if logit_source is not None:
            logit_effect = logit_source.effect(forget)
        else:
            logit_effect = np.zeros((len(labels), n_classes))
            logit_effect[np.arange(len(labels)), labels] = margin_effect
    else:
        pool = load_pool(pool_margins, keep_logits=True)
        margin_effect = PoolAttribution(pool["train_mask"], pool["margins"], estimator, l2).effect(forget)
        logit_effect = PoolAttribution(pool["train_mask"], pool["logits"], estimator, l2).effect(forget)
    log.info("forget effect of %d points: mean %.4f over the forget set, mean |.| %.4f elsewhere", len(forget),
             margin_effect[forget].mean() if len(forget) else 0.0,
             np.abs(np.delete(margin_effect, forget)).mean())
    save_arrays(out, margin_effect=margin_effect.astype(np.float32), logit_effect=logit_effect.astype(np.float32))


def make_ulira_requests(pool_margins: list[str], target_pool: dict, n_requests: int, request_size: int, seed: int,
                        out: str, labels: np.ndarray | None = None) -> None:
    """The target pool (seeded random train points, optionally of given classes) and K requests per model."""
    from .metrics.ulira import make_requests

    masks = load_pool(pool_margins)["train_mask"]
    candidates = np.arange(masks.shape[1])
    if target_pool.get("classes"):
        candidates = candidates[np.isin(labels, target_pool["classes"])]
    rng = np.random.RandomState(seed)
    size = min(int(target_pool["size"]), len(candidates))
    pool = np.sort(rng.choice(candidates, size, replace=False)).astype(np.int64)
    requests = make_requests(masks, pool, n_requests, request_size, seed)
    save_arrays(out, target_pool=pool, requests=requests, train_mask=masks)


def ulira_unlearn(
    method: str,
    hyperparameters: dict,
    snapshot_epochs: list[int],
    weights: str,
    pool_margins: str,
    requests: str,
    splits: str,
    seeds: dict[str, list[int]],
    recipe: dict,
    out: str,
    plugins: dict | None = None,
    threads: int = 1,
    device: str = "auto",
    models_per_batch: int | None = None,
    tta: str = "none",
    compile: bool = False,
) -> None:
    """Every request of every pool model of one shard, unlearned by ``method``.

    Output runs are ordered request-major (all models for request 0, then request 1, ...):
    ``margins [S, R, P]``, ``correct bool [S, R, P]`` (argmax correctness), ``forgotten`` / ``trained``
    ``bool [R, n_train]``. Requests, masks and seeds are keyed by the pool models' global indices.
    ``recipe`` is the pool's training recipe (the ``oracle`` method retrains with it, with mixed precision
    on a GPU as every family); ``tta`` is the pool margins' test-time augmentation, used for every margin
    here too.
    """
    import torch

    from .data import load_splits
    from .jobs import torch_setup
    from .margins import stack_outputs
    from .methods import load_build, lookup
    from .stack import ModelStack
    from .training import Recipe, mixed_precision, train_stack
    from .unlearning import unlearn_stack

    dev = torch_setup(threads, device, compile)
    data = load_splits(splits)
    pool = ModelStack.load(weights, dev)
    pool.tta = tta
    rows = pool.model_index
    masks = pool.extras["train_mask"].astype(bool)
    req = load_arrays(requests, ("requests",))["requests"][rows]  # [m, K, s]
    inputs, labels = data.images(dev), torch.from_numpy(data.labels()).to(dev)
    margins, correct, forgotten, samples, diverged = [], [], [], [], []
    entry = lookup(method, plugins)  # how U-LiRA runs it: methods.Registered.ulira
    stored = load_arrays(pool_margins, ("margins", "correct", "model_index")) if entry.ulira == "pool_margins" else None
    if stored is not None and not np.array_equal(stored["model_index"], rows):
        raise ValueError(f"{pool_margins} holds pool models {stored['model_index'].tolist()}, the weights "
                         f"{rows.tolist()}: the shards do not belong together")
    for k in range(req.shape[1]):
        forget = req[:, k]
        keep = masks.copy()
        keep[np.arange(len(rows))[:, None], forget] = False
        retain = np.stack([np.flatnonzero(row) for row in keep])
        if entry.ulira == "pool_margins":
            result = {"margins": stored["margins"][None], "correct": stored["correct"][None],
                      "samples": np.zeros((1, len(rows)), np.int64), "diverged": np.zeros((1, len(rows)), bool)}
        elif entry.ulira == "retrain":  # a perfect unlearner: retrain on the model's mask minus the request
            oracle_seeds = seeds["oracle"][k]
            stack = ModelStack.initialise(pool.arch, pool.num_classes, pool.in_channels, oracle_seeds, rows, dev)
            stack.tta = tta
            train_stack(stack, inputs, labels, retain, oracle_seeds, Recipe.from_config(recipe), models_per_batch,
                        amp=mixed_precision(dev), label=f"retrain (request {k})")
            oracle_margins, oracle_correct = stack_outputs(stack, inputs, labels)
            result = {"margins": oracle_margins[None], "correct": oracle_correct[None],
                      "samples": np.zeros((1, len(rows)), np.int64), "diverged": ~stack.finite()[None]}
        else:
            build = load_build(entry)
            result = unlearn_stack(build, hyperparameters, snapshot_epochs, pool.copy(), data, forget,
                                   seeds["unlearn"][k], None, models_per_batch, dev, retain=retain)
        margins.append(result["margins"])
        correct.append(result["correct"])
        samples.append(result["samples"])
        diverged.append(result["diverged"])
        hit = np.zeros_like(masks)
        hit[np.arange(len(rows))[:, None], forget] = True
        forgotten.append(hit)
    epochs = [0] if entry.ulira in ("pool_margins", "retrain") else sorted(set(snapshot_epochs))
    save_arrays(
        out,
        margins=np.concatenate(margins, axis=1).astype(np.float32),
        correct=np.concatenate(correct, axis=1),
        forgotten=np.concatenate(forgotten),
        trained=np.tile(masks, (req.shape[1], 1)),
        samples=np.concatenate(samples, axis=1),
        diverged=np.concatenate(diverged, axis=1),
        epochs=np.asarray(epochs, dtype=np.int64),
    )


def score_ulira(unlearned: list[str], requests: str, n_targets: int, seed: int, bootstrap: dict,
                out: str) -> None:
    """U-LiRA accuracy per snapshot: mean and std over target runs, with a bootstrap interval."""
    import pandas as pd

    from .metrics.bootstrap import mean_ci
    from .metrics.ulira import summarize_ulira, ulira_accuracy

    parts = [load_arrays(p, ("margins", "forgotten", "trained", "epochs")) for p in unlearned]
    margins = np.concatenate([p["margins"] for p in parts], axis=1)
    forgotten = np.concatenate([p["forgotten"] for p in parts])
    trained = np.concatenate([p["trained"] for p in parts])
    n_train = trained.shape[1]
    target_pool = load_arrays(requests, ("target_pool",))["target_pool"]
    targets = np.sort(np.random.RandomState(seed).choice(len(forgotten), n_targets, replace=False))
    rows = []
    for s, epoch in enumerate(parts[0]["epochs"]):
        acc = ulira_accuracy(margins[s][:, :n_train], forgotten, trained, targets, target_pool, seed=seed)
        stats = summarize_ulira(acc)
        low, high = mean_ci(acc, bootstrap["n_resamples"], bootstrap["alpha"], seed)
        rows.append({"epoch": int(epoch), "accuracy_mean": stats["mean"], "accuracy_std": stats["std"],
                     "accuracy_low": low, "accuracy_high": high, "n_targets": stats["n_targets"],
                     "n_runs": len(forgotten)})
    save_table(out, pd.DataFrame(rows))


def summarize_ulira(scores: list[str], keys: list[dict], out: str) -> None:
    """One row per method, run and snapshot: U-LiRA accuracy mean, std and interval."""
    from .jobs import stack_tables

    ids = ["dataset", "model", "method", "run", "epoch"]
    save_table(out, stack_tables(scores, keys, ids, ids))
