"""Per-model pairings are keyed by global model index (not the row inside a shard), and unlearned runs store
argmax correctness next to their margins."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from unlearnbench import plan
from unlearnbench.data import load_dataset
from unlearnbench.forget_sets import random_forget_set
from unlearnbench.margins import stack_outputs
from unlearnbench.methods import load_build, lookup
from unlearnbench.methods.base import Plan, sgd
from unlearnbench.stack import ModelStack
from unlearnbench.methods.oracle_matching import matching_rows
from unlearnbench.unlearning import margins_method, unlearn_stack


@pytest.mark.parametrize("n_models, n_holdout, per_job", [(100, 100, 25), (12, 4, 5), (10, 3, 4), (6, 8, 2)])
def test_every_held_out_oracle_is_a_target_once_per_h_models_however_models_are_sharded(n_models, n_holdout, per_job):
    config = {"n_models": n_models, "n_holdout_oracles": n_holdout, "models_per_job": per_job,
              "selection": {"n_models": n_models}}
    oracle_index = np.concatenate([np.arange(*plan.oracle_shards(config)[s])
                                   for s in plan.holdout_oracle_shards(config)])
    report_shards = [plan.base_shards(config)[s] for s in plan.report_base_shards(config)]
    targets = np.concatenate([oracle_index[matching_rows(np.arange(*shard), oracle_index)]
                              for shard in report_shards])
    assert len(report_shards) > 1  # the models really are sharded
    np.testing.assert_array_equal(targets, oracle_index[matching_rows(np.arange(n_models), oracle_index)])
    for start in range(0, n_models - n_holdout + 1, n_holdout):  # each window of H consecutive models
        assert sorted(targets[start:start + n_holdout]) == list(range(n_models, n_models + n_holdout))
    counts = np.bincount(targets - n_models, minlength=n_holdout)
    assert counts.max() - counts.min() <= 1  # a remainder of the last window, never a skipped oracle


def test_matching_rows_follow_the_oracle_index_not_the_order_they_arrive_in():
    shuffled = np.array([13, 10, 12, 11])  # held-out oracles 10..13 in another order
    np.testing.assert_array_equal(shuffled[matching_rows(np.array([5, 6, 7, 8]), shuffled)], [11, 12, 13, 10])
    with pytest.raises(ValueError, match="at least one"):
        matching_rows(np.arange(3), np.array([], dtype=np.int64))


@pytest.fixture(scope="module")
def digits():
    splits = load_dataset("digits")
    return splits, random_forget_set(splits.n_train, 10, seed=1)


def capture_targets(store):
    """A finetune method that records oracle matching's targets and trains nothing (lr 0)."""

    def build(ctx):
        load_build(lookup("oracle_matching"))(ctx, lr=1.0)  # sets its targets from the held-out oracles it needs
        store["oracle_logits"] = ctx.targets["oracle_logits"].clone()
        return Plan(sgd(), lambda epoch: [ctx.phase(ctx.forget, lambda logits, labels, batch: logits.sum(
            dim=(1, 2)) * 0, 0.0, 8, "nothing")])

    return build


def test_a_shard_of_base_models_matches_the_oracles_of_its_global_indices(digits):
    splits, forget = digits
    x = splits.inputs()
    oracles = ModelStack.initialise("digits_cnn", 10, 1, [40, 41, 42, 43], [10, 11, 12, 13])  # H = 4
    shard = ModelStack.initialise("digits_cnn", 10, 1, [7, 8], [2, 3])  # base models 2 and 3 of a sharded run
    store = {}
    unlearn_stack(capture_targets(store), {}, [1], shard, splits, forget, [7, 8], {"matching_oracles": oracles})
    expected = oracles.logits(x)[[2, 3]]  # held-out oracles 12 and 13; the rows in the shard are 0 and 1
    torch.testing.assert_close(store["oracle_logits"], expected)


def test_unlearned_runs_store_argmax_correctness_and_diverged_models_are_never_right(digits):
    splits, forget = digits
    x, y = splits.inputs(), torch.from_numpy(splits.labels())
    base = ModelStack.initialise("digits_cnn", 10, 1, [1, 2, 3], [0, 1, 2])
    trained = base.copy()  # trained in place: after the run it holds the last snapshot's models
    out = unlearn_stack(load_build(lookup("gradient_descent")), {"lr": 0.05}, [1, 2], trained, splits, forget,
                        [1, 2, 3])
    assert out["correct"].shape == out["margins"].shape == (2, 3, len(y)) and out["correct"].dtype == bool
    margins, correct = stack_outputs(trained, x, y)
    np.testing.assert_array_equal(out["correct"][-1], correct)
    np.testing.assert_allclose(out["margins"][-1], margins, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(correct, (trained.logits(x).argmax(-1) == y).numpy())
    assert (out["correct"][-1] != (out["margins"][-1] > 0)).any()  # flags are argmax-based, not margin > 0
    diverged = unlearn_stack(load_build(lookup("gradient_ascent")), {"lr": 1e8}, [5], base.copy(), splits, forget,
                             [1, 2, 3])
    assert diverged["diverged"].all() and not diverged["correct"].any()


def test_margins_methods_pass_their_source_models_correctness_through_dm_direct_has_none():
    rng = np.random.default_rng(0)
    store = {"margins": rng.normal(size=(3, 8)).astype(np.float32), "model_index": np.array([4, 5, 6]),
             "correct": rng.random((3, 8)) < 0.5}
    effect = {"margin_effect": np.ones(8, np.float32), "logit_effect": np.zeros((8, 10), np.float32)}
    for method, inputs in (("do_nothing", {"base_margins": store}), ("oracle", {"holdout_margins": store})):
        out = margins_method(load_build(lookup(method)), {}, inputs)
        np.testing.assert_array_equal(out["correct"], store["correct"][None])
        np.testing.assert_array_equal(out["model_index"], [4, 5, 6])
    out = margins_method(load_build(lookup("dm_direct")), {}, {"base_margins": store, "datamodel_effect": effect})
    assert "correct" not in out  # predicted margins: no logits, accuracy unknown (not the base models')
    np.testing.assert_array_equal(out["margins"][0], store["margins"] - 1)
