"""Stages of ``workflow/rules/pool.smk``: datamodels, their forget effects and fit quality, and U-LiRA.

One pool serves three uses (spec §6-§7): datamodels attribute each point's margin (and logits) to the
pool's inclusion masks (``unlearnbench.datamodels``; or an imported attribution matrix replaces them);
U-LiRA unlearns random requests from pool models and attacks the result; the masks travel with the
pool's margins (``train_mask``).
"""

from __future__ import annotations

import logging

import numpy as np

log = logging.getLogger(__name__)


def fit_datamodels(pool: list[str], fit: str, estimator: str, l2: float, n_train: int) -> None:
    """The train×train datamodel matrix ``weights [n_train, n_train]`` (float32) of the pool, for the
    ``attribution_pc`` forget sets: rows = train points whose inclusion varies, columns = train targets."""
    from ..datamodels import PoolAttribution
    from ..storage import save_arrays

    arrays = _load_pool(pool)
    fitted = PoolAttribution(arrays["train_mask"], arrays["margins"], estimator, l2)
    log.info("datamodels: %s (asked for %s), l2 %g, %d pool models, %d train points",
             fitted.estimator, estimator, l2, fitted.n_models, n_train)
    save_arrays(fit, weights=fitted.train_matrix(n_train), estimator=np.array(fitted.estimator))


def datamodel_quality(pool: list[str], quality: str, estimator: str | None, l2: float, holdout_models: int,
                      group_sizes: list[int], seed: int, imported: dict | None, n_train: int,
                      weights: str | None = None, logit_weights: str | None = None) -> None:
    """``fit_quality.csv``: forget effects of groups of train points, predicted vs observed on held-out pool models.

    The last ``holdout_models`` pool models are held out; the estimator is fitted on the others (or, with
    ``imported``, the imported matrix is judged against the whole pool; ``weights`` / ``logit_weights``, its
    files, are inputs for the DAG and are read through ``imported``).  Columns: see
    :func:`unlearnbench.datamodels.effect_calibration` and ``config/README.md``.
    """
    from ..datamodels import fit_quality
    from ..storage import save_table

    pool_arrays = _load_pool(pool)
    masks, margins = pool_arrays["train_mask"], pool_arrays["margins"]
    n_train = masks.shape[1] if n_train is None else n_train
    attribution = _load_imported(imported, n_train, margins.shape[1])[0] if imported else None
    frame = fit_quality(masks, margins, estimator, l2, holdout_models, group_sizes, seed, n_train, attribution)
    for row in frame[frame.points == "forget"].itertuples():
        log.info("group size %d: scale %.3f, calibration slope %.3f, correlation %.3f (%s)", row.group_size,
                 row.scale, row.calibration_slope, row.correlation, row.estimator)
    save_table(quality, frame)


def datamodel_effect(forget_set: str, effect: str, estimator: str | None, l2: float, imported: dict | None,
                     pool: list[str] | None = None, splits: str | None = None, weights: str | None = None,
                     logit_weights: str | None = None) -> None:
    """Σ_{i∈F} β_i(x) of margin and logit datamodels, for DM-direct and datamodel matching (one estimator for both).

    From the pool (``pool``: its margin shards, ``estimator``, ``l2``) or from an imported matrix (``imported``;
    ``weights`` / ``logit_weights``, its files, are inputs for the DAG and are read through ``imported``).  An import
    without logit weights gives DMM the logit shift that moves each point's margin by exactly the margin effect:
    the effect on its label's logit, zero on the others (the margin z_y − log Σ_{j≠y} exp z_j is linear in z_y).
    """
    from ..datamodels import PoolAttribution
    from ..storage import load_npy, save_arrays

    forget = load_npy(forget_set)
    if imported:
        labels, n_train = _labels(splits)
        n_classes = int(labels.max()) + 1
        margin_source, logit_source = _load_imported(imported, n_train, len(labels), n_classes)
        margin_effect = margin_source.effect(forget)
        if logit_source is not None:
            logit_effect = logit_source.effect(forget)
        else:
            logit_effect = np.zeros((len(labels), n_classes))
            logit_effect[np.arange(len(labels)), labels] = margin_effect
    else:
        arrays = _load_pool(pool, keep_logits=True)
        margin_effect = PoolAttribution(arrays["train_mask"], arrays["margins"], estimator, l2).effect(forget)
        logit_effect = PoolAttribution(arrays["train_mask"], arrays["logits"], estimator, l2).effect(forget)
    log.info("forget effect of %d points: mean %.4f over the forget set, mean |.| %.4f elsewhere", len(forget),
             margin_effect[forget].mean() if len(forget) else 0.0,
             np.abs(np.delete(margin_effect, forget)).mean())
    save_arrays(effect, margin_effect=margin_effect.astype(np.float32), logit_effect=logit_effect.astype(np.float32))


def make_ulira_requests(pool: list[str], splits: str, requests: str, target_pool: dict, n_requests: int,
                        request_size: int, seed: int) -> None:
    """The target pool (seeded random train points, optionally of given classes) and K requests per model."""
    from ..data import load_splits
    from ..metrics.ulira import make_requests
    from ..storage import save_arrays

    labels = load_splits(splits).y_train
    masks = _load_pool(pool)["train_mask"]
    candidates = np.arange(masks.shape[1])
    if target_pool.get("classes"):
        candidates = candidates[np.isin(labels, target_pool["classes"])]
    rng = np.random.RandomState(seed)
    size = min(int(target_pool["size"]), len(candidates))
    targets = np.sort(rng.choice(candidates, size, replace=False)).astype(np.int64)
    save_arrays(requests, target_pool=targets, requests=make_requests(masks, targets, n_requests, request_size, seed),
                train_mask=masks)


def ulira_unlearn(weights: str, pool_margins: str, requests: str, splits: str, runs: str, method: str,
                  hyperparameters: dict, epochs: list[int], plugins: dict, seeds: dict[str, list], recipe: dict,
                  tta: str, device: str, models_per_batch: int | None, compile: bool, threads: int = 1) -> None:
    """Every request of every pool model of one shard, unlearned by ``method`` as its registry entry's ``ulira``
    says: ``unlearn``, the finetune loop on a copy of the pool models (``seeds["unlearn"]``); otherwise the method's
    own ``build`` (as :func:`~.unlearning.unlearn` runs it) reads, for the margins its ``needs`` name, the pool
    models' own margins (``pool_margins``) or the models retrained on their mask minus the request with the
    pool's ``recipe`` and ``seeds["oracle"]`` (``retrain``). ``tta``: the pool margins' test-time augmentation,
    used for every margin here too. ``runs``: see :func:`_request_major`.
    """
    from ..data import load_splits
    from ..device import torch_setup
    from ..methods import load_build, lookup
    from ..stack import ModelStack
    from ..storage import load_arrays, save_arrays
    from ..unlearning import margins_method, unlearn_stack

    entry = lookup(method, plugins)
    build = load_build(entry)
    dev = torch_setup(threads, device, compile)
    data = load_splits(splits)
    pool = ModelStack.load(weights, dev)
    pool.tta = tta
    masks = pool.extras["train_mask"].astype(bool)
    req = load_arrays(requests, ("requests",))["requests"][pool.model_index]  # [m, K, s]
    stored = _pool_margins(pool_margins, pool.model_index) if entry.ulira == "pool_margins" else None
    results = []
    for k in range(req.shape[1]):
        forget, retain = req[:, k], _retain_points(masks, req[:, k])
        if entry.ulira == "unlearn":
            results.append(unlearn_stack(build, hyperparameters, epochs, pool.copy(), data, forget,
                                         seeds["unlearn"][k], None, models_per_batch, dev, retain=retain))
            continue
        margins = stored if entry.ulira == "pool_margins" else _retrained(
            pool, data, retain, seeds["oracle"][k], recipe, models_per_batch, dev, k)
        results.append(margins_method(build, hyperparameters, {name: margins for name in entry.needs}))
    snapshots = sorted(set(epochs)) if entry.ulira == "unlearn" else [0]
    save_arrays(runs, **_request_major(results, req, masks, snapshots))


def _retain_points(masks: np.ndarray, forget: np.ndarray) -> np.ndarray:
    """Each pool model's train points (its mask) minus its request ``forget [m, s]``: ``[m, n - s]``."""
    keep = masks.copy()
    keep[np.arange(len(masks))[:, None], forget] = False
    return np.stack([np.flatnonzero(row) for row in keep])


def _request_major(results: list[dict], requests: np.ndarray, masks: np.ndarray,
                   snapshots: list[int]) -> dict[str, np.ndarray]:
    """The arrays of a U-LiRA runs file from each request's result, request-major (all models for request 0,
    then request 1, ...): ``margins [S, R, P]``, ``correct bool [S, R, P]`` (argmax correctness), ``forgotten`` /
    ``trained`` ``bool [R, n_train]``, ``samples`` / ``diverged [S, R]``, ``epochs [S]``. Requests, masks and
    seeds are keyed by the pool models' global indices."""
    forgotten = []
    for k in range(requests.shape[1]):
        hit = np.zeros_like(masks)
        hit[np.arange(len(masks))[:, None], requests[:, k]] = True
        forgotten.append(hit)
    return {
        "margins": np.concatenate([r["margins"] for r in results], axis=1).astype(np.float32),
        "correct": np.concatenate([r["correct"] for r in results], axis=1),
        "forgotten": np.concatenate(forgotten),
        "trained": np.tile(masks, (len(results), 1)),
        "samples": np.concatenate([r["samples"] for r in results], axis=1),
        "diverged": np.concatenate([r["diverged"] for r in results], axis=1),
        "epochs": np.asarray(snapshots, dtype=np.int64),
    }


def _pool_margins(path: str, model_index: np.ndarray) -> dict[str, np.ndarray]:
    """The pool models' stored margins (U-LiRA's ``base_margins``), checked to be those of ``model_index``."""
    from ..storage import load_arrays

    stored = load_arrays(path, ("margins", "correct", "model_index"))
    if not np.array_equal(stored["model_index"], model_index):
        raise ValueError(f"{path} holds pool models {stored['model_index'].tolist()}, the weights "
                         f"{model_index.tolist()}: the shards do not belong together")
    return stored


def _retrained(pool, data, retain: np.ndarray, seeds: list[int], recipe: dict, models_per_batch: int | None,
               device: str, request: int) -> dict[str, np.ndarray]:
    """U-LiRA's ``holdout_margins`` for one request: the pool models retrained from scratch on their retain points
    (mask minus request) with the pool's recipe, mixed precision on a GPU as every family."""
    import torch

    from ..margins import stack_outputs
    from ..stack import ModelStack
    from ..training import Recipe, mixed_precision, train_stack

    inputs, labels = data.images(device), torch.from_numpy(data.labels()).to(device)
    stack = ModelStack.initialise(pool.arch, pool.num_classes, pool.in_channels, seeds, pool.model_index, device)
    stack.tta = pool.tta
    train_stack(stack, inputs, labels, retain, seeds, Recipe.from_config(recipe), models_per_batch,
                amp=mixed_precision(device), label=f"retrain (request {request})")
    margins, correct = stack_outputs(stack, inputs, labels)
    return {"margins": margins, "correct": correct, "model_index": pool.model_index}

def score_ulira(runs: list[str], requests: str, scores: str, n_targets: int, seed: int, bootstrap: dict,
                identity: dict) -> None:
    """U-LiRA accuracy per snapshot: mean and std over target runs, with a bootstrap interval; ``identity``
    (:class:`unlearnbench.identity.Identity` fields: data set, model, method, run) is stored with them."""
    import pandas as pd

    from ..identity import Identity, save_table
    from ..metrics.bootstrap import mean_ci
    from ..metrics.ulira import summarize_ulira as summarize_accuracy
    from ..metrics.ulira import ulira_accuracy
    from ..storage import load_arrays

    parts = [load_arrays(p, ("margins", "forgotten", "trained", "epochs")) for p in runs]
    margins = np.concatenate([p["margins"] for p in parts], axis=1)
    forgotten = np.concatenate([p["forgotten"] for p in parts])
    trained = np.concatenate([p["trained"] for p in parts])
    n_train = trained.shape[1]
    target_pool = load_arrays(requests, ("target_pool",))["target_pool"]
    targets = np.sort(np.random.RandomState(seed).choice(len(forgotten), n_targets, replace=False))
    rows = []
    for s, epoch in enumerate(parts[0]["epochs"]):
        acc = ulira_accuracy(margins[s][:, :n_train], forgotten, trained, targets, target_pool, seed=seed)
        stats = summarize_accuracy(acc)
        low, high = mean_ci(acc, bootstrap["n_resamples"], bootstrap["alpha"], seed)
        rows.append({"epoch": int(epoch), "accuracy_mean": stats["mean"], "accuracy_std": stats["std"],
                     "accuracy_low": low, "accuracy_high": high, "n_targets": stats["n_targets"],
                     "n_runs": len(forgotten)})
    save_table(scores, Identity(**identity), pd.DataFrame(rows))


def summarize_ulira(scores: list[str], csv: str) -> None:
    """One row per method, run and snapshot: U-LiRA accuracy mean, std and interval (each score file says
    whose it is: :mod:`unlearnbench.identity`)."""
    from ..identity import load_table
    from ..storage import save_table, stack_tables

    ids = ["dataset", "model", "method", "run", "epoch"]
    save_table(csv, stack_tables([load_table(path)[1] for path in scores], ids, ids))


def _load_pool(paths: list[str], keep_logits: bool = False) -> dict[str, np.ndarray]:
    """Concatenate pool margin shards: ``margins [M, P]``, ``train_mask [M, n_train]`` (+ ``logits``)."""
    keys = ("margins", "train_mask", "model_index") + (("logits",) if keep_logits else ())
    from ..storage import load_arrays

    parts = [load_arrays(p, keys) for p in paths]
    return {k: np.concatenate([p[k] for p in parts]) for k in keys}


def _load_imported(spec: dict, n_train: int, n_points: int, n_classes: int | None = None):
    """The ``datamodels.import`` files as attributions: ``(margins, logits or None)``, memory-mapped."""
    from ..datamodels import MatrixAttribution, load_attribution_matrix

    margins = MatrixAttribution(load_attribution_matrix(spec["weights"], n_train, n_points))
    logits = None
    if spec.get("logit_weights"):
        logits = MatrixAttribution(load_attribution_matrix(spec["logit_weights"], n_train, n_points, n_classes))
    return margins, logits


def _labels(splits: str) -> tuple[np.ndarray, int]:
    """Labels of every point in margin order and the train-set size, read without the images (gigabytes)."""
    with np.load(splits, allow_pickle=False) as npz:
        y_train = npz["y_train"]
        return np.concatenate([y_train, npz["y_val"]]).astype(np.int64), len(y_train)
