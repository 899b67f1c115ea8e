"""The run's plan (unlearnbench.plan) without Snakemake: which models every job works on and their seeds.

Expected seeds are written out from the seeding convention (``derive_seed(stage, identity..., model index,
base=config seed)``, as the workflow's getters computed them before the plan moved into the library), never
by calling the function under test.
"""

from __future__ import annotations

import numpy as np
import pytest

from unlearnbench import plan
from unlearnbench.metrics import ulira
from unlearnbench.seeds import derive_seed

SEED = 7


@pytest.fixture
def config():
    # report sample: base models 0-2; selection sample: base 3-4; oracles: scored 0-2, held out 3-4,
    # selection 5-6; pool: 5 models; two models per job
    return {"seed": SEED, "n_models": 3, "n_holdout_oracles": 2, "models_per_job": 2,
            "selection": {"n_models": 2}, "pool": {"n_models": 5}, "plugins": {},
            "train": {"epochs": 10},
            "methods": {"do_nothing": None, "oracle": None, "gradient_ascent": {"lr": [0.1, 0.2], "epochs": [1, 2]},
                        "retrain": {"budget": [0.5]}},
            "ulira": {"n_requests": 2, "methods": {"gradient_ascent": {"lr": 0.1, "epochs": [1]}}}}


def test_shards_of_each_family_and_sample(config):
    assert plan.base_shards(config) == [(0, 2), (2, 3), (3, 5)]
    assert plan.report_base_shards(config) == [0, 1] and plan.selection_base_shards(config) == [2]
    assert plan.oracle_shards(config) == [(0, 2), (2, 3), (3, 5), (5, 7)]
    assert plan.scored_oracle_shards(config) == [0, 1]
    assert plan.holdout_oracle_shards(config) == [2]
    assert plan.selection_oracle_shards(config) == [3]
    assert plan.pool_shards(config) == [(0, 2), (2, 4), (4, 5)]
    assert plan.pool_shards({**config, "pool": None}) == []
    assert plan.model_range(config, "oracle", "3") == (5, 7)


def test_base_oracle_and_pool_seeds_follow_the_model_identity(config):
    assert plan.base_seeds(config, "2") == [derive_seed("base", 3, base=SEED), derive_seed("base", 4, base=SEED)]
    assert plan.oracle_seeds(config, "class3", 1) == [derive_seed("oracle", "class3", 2, base=SEED)]
    assert plan.pool_seeds(config, 2) == [derive_seed("pool", 4, base=SEED)]
    # a shard layout regroups models without changing any of them
    regrouped = {**config, "models_per_job": 5}
    assert plan.base_seeds(regrouped, 0) == plan.base_seeds(config, 0) + plan.base_seeds(config, 1)


def test_the_pool_masks_are_seeded_by_the_run_seed_and_the_model_index(config):
    assert plan.pool_mask_seed(config) == SEED
    mask = plan.pool_mask(10, 3, plan.pool_mask_seed(config))
    expected = np.zeros(10, dtype=bool)
    expected[np.random.default_rng([SEED, 3]).permutation(10)[:5]] = True
    np.testing.assert_array_equal(mask, expected)
    assert ulira.pool_mask is plan.pool_mask  # training, datamodels and U-LiRA use the same masks


def test_unlearning_jobs_work_on_base_models_or_on_the_held_out_oracles(config):
    assert not plan.holds_oracles(config, "gradient_ascent") and plan.holds_oracles(config, "oracle")
    assert list(plan.unlearn_shards(config, "gradient_ascent")) == [0, 1]
    assert list(plan.unlearn_shards(config, "gradient_ascent", "selection")) == [2]
    assert list(plan.unlearn_shards(config, "oracle")) == [0]  # the held-out oracle shards, numbered from 0
    with pytest.raises(ValueError, match="never run on the selection sample"):
        plan.unlearn_shards(config, "oracle", "selection")
    assert plan.unlearn_model_range(config, "gradient_ascent", "1") == (2, 3)
    assert plan.unlearn_model_range(config, "oracle", "0") == (3, 5)
    run = "lr~0.1"
    assert plan.unlearn_seeds(config, "gradient_ascent", run, "1", "2") == [
        derive_seed("unlearn", "gradient_ascent", run, "1", i, base=SEED) for i in (3, 4)]
    assert plan.unlearn_seeds(config, "oracle", "default", "1", 0) == [
        derive_seed("unlearn", "oracle", "default", "1", i, base=SEED) for i in (3, 4)]


def test_ulira_seeds_per_request_and_pool_model(config):
    seeds = plan.ulira_seeds(config, "gradient_ascent", "lr~0.1", "1")
    assert seeds == {stage: [[derive_seed("ulira", stage, "gradient_ascent", "lr~0.1", k, i, base=SEED)
                              for i in (2, 3)] for k in (0, 1)]
                     for stage in ("oracle", "unlearn")}


def test_grid_points_run_ids_and_snapshots(config):
    runs = plan.method_runs(config["methods"])
    assert list(runs["gradient_ascent"]) == ["lr~0.1", "lr~0.2"] and runs["do_nothing"] == {"default": {}}
    assert plan.snapshot_epochs(config["methods"], "gradient_ascent") == [1, 2]
    assert plan.snapshot_epochs(config["methods"], "do_nothing") == [0]
    # a retraining ends in the one loop epoch its compressed schedule stops at
    assert plan.run_snapshot_epochs(config, "retrain", {"budget": 0.5}) == [5]
    assert plan.datamodel_quality_seed(config) == derive_seed("datamodel_quality", base=SEED)
