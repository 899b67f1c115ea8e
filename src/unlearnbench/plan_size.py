"""How big a run is, estimated from its config alone: job count and the memory of the largest job.

``config.validate`` refuses a config beyond ``limits.max_jobs`` / ``limits.max_job_memory_gib`` before Snakemake
plans it: ``n_models: 10**7, models_per_job: 1`` would otherwise keep a dry run busy for minutes, and a single
shard of a million models allocates until MemoryError. Everything here is arithmetic on the config (no grid is
enumerated, no torch), so the check takes microseconds whatever the sizes.

The estimates are orders of magnitude, not exact counts (``snakemake -n`` gives those): jobs per stage follow the
shard layout of ``config.py``; memory counts the arrays a job must hold at once (float32 margins, float64 scores and
datamodel weights, float32 model weights with gradients and optimiser state).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from .models import MODELS
from .plan import SNAPSHOT_KEY
from .plan import holds_oracles as scores_holdout_oracles  # its unlearned models are the held-out oracles

# Trainable parameters per model (at 10 classes; 17 for resnet18, Living-17). tests/test_plan_size.py checks them
# against the real modules. Training holds weights, gradients, optimiser state and the loop's frozen copy.
PARAMETERS = {name: spec.parameters for name, spec in MODELS.items()}
TRAINING_BYTES_PER_PARAMETER = 4 * 4


def grid_size(entry: dict | None) -> int:
    """Grid points of one method entry: the product of its axes' lengths (snapshot epochs excluded)."""
    return math.prod(len(v) if isinstance(v, list) else 1 for k, v in (entry or {}).items() if k != SNAPSHOT_KEY)


def snapshots(entry: dict | None) -> int:
    return len(set((entry or {}).get(SNAPSHOT_KEY) or [0]))


def _shards(n: int, per_job: int) -> int:
    return -(-n // per_job)


@dataclass
class SizeEstimate:
    jobs: int
    jobs_key: str  # the config key that drives the job count most
    job_memory: dict[str, int] = field(default_factory=dict)  # bytes, per kind of job
    memory_key: dict[str, str] = field(default_factory=dict)  # kind of job -> the config key that sizes it

    @property
    def largest_job(self) -> tuple[str, int]:
        kind = max(self.job_memory, key=self.job_memory.get)
        return kind, self.job_memory[kind]


def estimate(config: dict, spec) -> SizeEstimate:
    """Jobs of the whole run and bytes of its largest jobs, for a validated ``config`` (defaults filled) on the
    data set ``spec`` (``config.dataset_spec``: split sizes and class count)."""
    n_train, n_val = spec.n_train, spec.n_val
    n, held_out, per_job = config["n_models"], config["n_holdout_oracles"], config["models_per_job"]
    n_sets = len(config["forget_sets"])
    points = n_train + n_val
    pool = (config.get("pool") or {}).get("n_models", 0)
    base, holdout = _shards(n, per_job), _shards(held_out, per_job)
    selection = _shards((config.get("selection") or {}).get("n_models", n), per_job)
    pool_shards = _shards(pool, per_job)

    # (jobs, key): training and margins of every family (report, held-out and selection samples), unlearning
    # and scoring per method (every candidate on the selection sample, then the chosen run on the report
    # sample; a method without a choice only there), U-LiRA per pool shard
    terms = [(2 * (base + selection + n_sets * (base + holdout + selection)), "n_models"),
             (2 * pool_shards + n_sets + 1, "pool.n_models")]
    for name, entry in config["methods"].items():
        on_holdout = scores_holdout_oracles(config, name)
        runs, shards = grid_size(entry), (holdout if on_holdout else base)
        key = f"methods.{name}" if runs >= shards else ("n_holdout_oracles" if on_holdout else "n_models")
        chosen_from = runs * snapshots(entry) > 1 and not on_holdout
        jobs = runs * n_sets * (selection + 1) + n_sets * (shards + 1) if chosen_from else runs * n_sets * (shards + 1)
        terms.append((jobs, key))
    ulira = config.get("ulira") or {}
    for name, entry in (ulira.get("methods") or {}).items():
        runs = grid_size(entry)
        terms.append((runs * (pool_shards + 1), f"ulira.methods.{name}" if runs >= pool_shards else "pool.n_models"))
    jobs = sum(t for t, _ in terms) + 5 * n_sets + 10  # data, forget sets, summaries, report tables and figures
    jobs_key = max(terms)[1]

    entries = config["methods"]
    scored = max((snapshots(e) * (held_out if scores_holdout_oracles(config, m) else n) for m, e in entries.items()),
                 default=0)
    top_snapshots = max((snapshots(e) for e in entries.values()), default=1)
    memory = {
        # unlearned margins [S, M, P] and oracle margins [N, P] (float32), scores [S, P] (float64)
        "score_klom": 4 * points * (scored + n) + 8 * top_snapshots * points,
        # a shard of models in training; its logits [M, P, C] when computing margins
        "train": per_job * PARAMETERS.get(config["model"], 0) * TRAINING_BYTES_PER_PARAMETER,
        "compute_margins": per_job * points * 4 * (spec.num_classes + 1),
    }
    keys = {"score_klom": "n_models", "train": "models_per_job", "compute_margins": "models_per_job"}
    if pool:
        memory["fit_datamodels"] = 8 * n_train * points + 4 * pool * (n_train + points)  # weights, masks, margins
        keys["fit_datamodels"] = "pool"
    if ulira:
        ulira_snapshots = max((snapshots(e) for e in ulira["methods"].values()), default=1)
        memory["score_ulira"] = 4 * ulira_snapshots * pool * ulira["n_requests"] * points
        keys["score_ulira"] = "ulira.n_requests"
    return SizeEstimate(jobs, jobs_key, memory, keys)
