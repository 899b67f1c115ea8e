"""The plan of a run, derived from its validated config: grid points and run ids, shards of models, the seed of
every model, the pool's masks, which models an unlearning job works on.

Plain functions of the config (no Snakemake, no torch): the rules' getters (``workflow/rules/common.smk``) are
one-line calls of these, so a stage can be run from Python with the same models and seeds as the workflow's.
Seeds derive from an artefact's identity alone (:func:`unlearnbench.seeds.derive_seed`), never from a shard
layout: changing ``models_per_job`` regroups models without changing any of them.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator, Mapping

from .seeds import derive_seed

# Keys of a method's config entry that are not grid axes.
SNAPSHOT_KEY = "epochs"


# grid -----------------------------------------------------------------------------------------------


def format_value(value) -> str:
    return repr(value) if isinstance(value, float) else str(value)


def run_id(hyperparameters: dict) -> str:
    """A stable id of one grid point, Snakemake ``Paramspace`` style: ``key~value`` joined by ``_``."""
    if not hyperparameters:
        return "default"
    return "_".join(f"{k}~{format_value(v)}" for k, v in sorted(hyperparameters.items()))


def grid(entry: dict) -> Iterator[dict]:
    """Every grid point of one method entry (Cartesian product over list values; snapshots excluded)."""
    axes = {k: (v if isinstance(v, list) else [v]) for k, v in entry.items() if k != SNAPSHOT_KEY}
    keys = sorted(axes)
    for values in itertools.product(*(axes[k] for k in keys)):
        yield dict(zip(keys, values))


def method_runs(methods: dict) -> dict[str, dict[str, dict]]:
    """``{method: {run id: hyperparameters}}`` for every method and grid point of a ``methods`` mapping."""
    return {m: {run_id(hp): hp for hp in grid(entry or {})} for m, entry in methods.items()}


def snapshot_epochs(methods: dict, method: str) -> list[int]:
    return sorted(set((methods[method] or {}).get(SNAPSHOT_KEY, [0])))


def run_snapshot_epochs(config: dict, method: str, hyperparameters: dict) -> list[int]:
    """Snapshot epochs of one grid point: the method's ``epochs``; for a retraining from scratch (registry
    kind ``retrain``) the one loop epoch its compressed schedule ends in."""
    from .methods import lookup

    if lookup(method, config.get("plugins")).kind == "retrain":
        from .compressed_schedule import last_epoch

        return [last_epoch(hyperparameters["budget"], config["train"]["epochs"])]
    return snapshot_epochs(config["methods"], method)


# shards -----------------------------------------------------------------------------------------------


def chunks(start: int, stop: int, size: int) -> list[tuple[int, int]]:
    return [(i, min(i + size, stop)) for i in range(start, stop, size)]


def selection_size(config: dict) -> int:
    """S, the size of the selection sample (base models and oracles per forget set that choose the runs)."""
    return config["selection"]["n_models"]


def base_shards(config: dict) -> list[tuple[int, int]]:
    """Model-index ranges of the base-model shards: the report sample [0, N) first, then the selection
    sample [N, N+S) (models of the same family, so their seeds follow from their index alone).

    A shard never mixes the two samples, so either is read without the other.
    """
    n, s, k = config["n_models"], selection_size(config), config["models_per_job"]
    return chunks(0, n, k) + chunks(n, n + s, k)


def report_base_shards(config: dict) -> list[int]:
    return [i for i, (start, _) in enumerate(base_shards(config)) if start < config["n_models"]]


def selection_base_shards(config: dict) -> list[int]:
    return [i for i, (start, _) in enumerate(base_shards(config)) if start >= config["n_models"]]


def oracle_shards(config: dict) -> list[tuple[int, int]]:
    """Model-index ranges of oracle shards: scored oracles [0, N) first, then held-out ones [N, N+H), then
    the selection oracles [N+H, N+H+S).

    A shard never mixes two of these families, so each is read without the others: runs are chosen
    against the selection oracles, reported against the scored ones, and the held-out ones (the `oracle`
    method, oracle matching's targets) are never scored against.
    """
    n, h, s, k = config["n_models"], config["n_holdout_oracles"], selection_size(config), config["models_per_job"]
    return chunks(0, n, k) + chunks(n, n + h, k) + chunks(n + h, n + h + s, k)


def _oracle_shards_in(config: dict, start: int, stop: int) -> list[int]:
    return [i for i, (first, _) in enumerate(oracle_shards(config)) if start <= first < stop]


def scored_oracle_shards(config: dict) -> list[int]:
    return _oracle_shards_in(config, 0, config["n_models"])


def holdout_oracle_shards(config: dict) -> list[int]:
    n = config["n_models"]
    return _oracle_shards_in(config, n, n + config["n_holdout_oracles"])


def selection_oracle_shards(config: dict) -> list[int]:
    n, h = config["n_models"], config["n_holdout_oracles"]
    return _oracle_shards_in(config, n + h, n + h + selection_size(config))


def pool_shards(config: dict) -> list[tuple[int, int]]:
    """Model-index ranges of the pool's shards (none without a pool)."""
    pool = config.get("pool")
    return chunks(0, pool["n_models"], config["models_per_job"]) if pool else []


def pool_cost(config: dict, n_train: int) -> float:
    """Training the pool, in base-training runs: M models x their n_train // 2 points x the recipe's epochs,
    over n_train x epochs. Paid once, shared by every forget set and unlearned model the pool serves."""
    pool = config.get("pool")
    if not pool:
        return 0.0
    epochs = pool.get("train", config["train"])["epochs"] / config["train"]["epochs"]
    return pool["n_models"] * (n_train // 2) / n_train * epochs


def forget_set_seed(entry: dict) -> int:
    """The seed of a random/class forget set: ``seed`` if given; else ``id - 1`` for an integer id (the
    published convention: CIFAR-10 set 1 is ``seed(0)``; also for its plain decimal text ``"1"``, as a nested
    ``--config`` value arrives); else a hash of the id, so that sets ``a`` and ``b`` of one size hold different
    points. Always below 2**32 (numpy's legacy ``RandomState``)."""
    if "seed" in entry:
        return int(entry["seed"])
    fs_id = entry["id"]
    if isinstance(fs_id, int) or re.fullmatch(r"[1-9][0-9]*", str(fs_id)):
        return int(fs_id) - 1
    return derive_seed("forget_set", fs_id) % 2**32


def model_range(config: dict, family: str, shard: int) -> tuple[int, int]:
    """Model indices ``[start, stop)`` of shard ``shard`` of a family (``base``, ``oracle`` or ``pool``)."""
    shards = {"base": base_shards, "oracle": oracle_shards, "pool": pool_shards}[family]
    return shards(config)[int(shard)]


# seeds -------------------------------------------------------------------------------------------------
# Every model's seed is derive_seed(stage, <its identity>..., model index, base=config["seed"]).


def base_seeds(config: dict, shard: int) -> list[int]:
    """Initialisation and data-order seeds of a base-model shard's models."""
    return [derive_seed("base", i, base=config["seed"]) for i in range(*model_range(config, "base", shard))]


def oracle_seeds(config: dict, forget_set: str, shard: int) -> list[int]:
    """Seeds of an oracle shard's models (retrained without forget set ``forget_set``)."""
    start, stop = model_range(config, "oracle", shard)
    return [derive_seed("oracle", forget_set, i, base=config["seed"]) for i in range(start, stop)]


def pool_seeds(config: dict, shard: int) -> list[int]:
    """The pool is seeded two ways, independently: its models' weights and its models' data.

    - weights (initialisation and data order): ``derive_seed("pool", i, base=config["seed"])`` for pool model
      ``i``, as every other family (this function);
    - masks (which random half of the train split model ``i`` trains on): :func:`pool_mask` with
      :func:`pool_mask_seed` (``numpy.random.default_rng([config["seed"], i])``), drawn by ``train_pool`` and
      stored with the weights and margins (``train_mask``), where datamodels and U-LiRA's requests read them.

    Both depend on the run's seed and the model index alone, so any pool model can be rebuilt by itself; the
    two streams differ (a hash for the weights, numpy's seed sequence for the masks), so they are unrelated.
    """
    return [derive_seed("pool", i, base=config["seed"]) for i in range(*model_range(config, "pool", shard))]


def pool_mask_seed(config: dict) -> int:
    """The seed of the pool's masks (see :func:`pool_seeds`): the run's seed itself."""
    return config["seed"]


def pool_mask(n_train: int, model: int, seed: int):
    """Inclusion mask ``bool [n_train]`` of pool model ``model``: exactly ``n_train // 2`` points.

    It depends only on ``(seed, model)`` (``numpy.random.default_rng([seed, model])``), so any pool model can be
    rebuilt alone and adding models never changes existing ones.  Every mask has the same size because the training
    engine trains several models as one batched network, which needs equal epoch lengths.
    """
    import numpy as np

    if n_train < 2:
        raise ValueError(f"n_train must be at least 2, got {n_train}")
    mask = np.zeros(n_train, dtype=bool)
    mask[np.random.default_rng([seed, model]).permutation(n_train)[: n_train // 2]] = True
    return mask


def datamodel_quality_seed(config: dict) -> int:
    """The seed of the datamodel fit's quality check (which pool models it holds out)."""
    return derive_seed("datamodel_quality", base=config["seed"])


# unlearning jobs ---------------------------------------------------------------------------------------


def holds_oracles(config: Mapping, method: str) -> bool:
    """Methods whose "models" are held-out oracles (the oracle draw), not base models."""
    from .method_inputs import held_out_models
    from .methods import lookup

    return held_out_models(lookup(method, config.get("plugins")).needs)


def unlearn_shards(config: dict, method: str, sample: str = "report") -> list[int] | range:
    """Shards of an unlearning run on a sample ("selection" or "report"): base-model shards of that sample,
    or the held-out oracle shards (numbered from 0) for the oracle draw, which has nothing to select.
    """
    if holds_oracles(config, method):
        if sample == "selection":
            raise ValueError(f"{method} is never run on the selection sample")
        return range(len(holdout_oracle_shards(config)))
    if sample == "selection":
        return selection_base_shards(config)
    return report_base_shards(config)


def unlearn_model_range(config: dict, method: str, shard: int) -> tuple[int, int]:
    """Model indices of an unlearning job's shard, in the family its models come from."""
    if holds_oracles(config, method):
        return oracle_shards(config)[holdout_oracle_shards(config)[int(shard)]]
    return base_shards(config)[int(shard)]


def unlearn_seeds(config: dict, method: str, run: str, forget_set: str, shard: int) -> list[int]:
    """Seeds of an unlearning job's runs: one per model, from (method, run id, forget set, model index)."""
    start, stop = unlearn_model_range(config, method, shard)
    return [derive_seed("unlearn", method, run, forget_set, i, base=config["seed"]) for i in range(start, stop)]


def ulira_seeds(config: dict, method: str, run: str, shard: int) -> dict[str, list[list[int]]]:
    """Per request k and pool model i of a pool shard: seeds of its retrained oracle and of its unlearning run."""
    models = range(*model_range(config, "pool", shard))
    return {
        stage: [[derive_seed("ulira", stage, method, run, k, i, base=config["seed"]) for i in models]
                for k in range(config["ulira"]["n_requests"])]
        for stage in ("oracle", "unlearn")
    }
