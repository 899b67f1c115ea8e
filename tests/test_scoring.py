"""The scoring core (one row per group: KLOM stats, interval, accuracy, ε) and the score_klom job built on it."""

from __future__ import annotations

import logging
import math

import numpy as np
import pandas as pd
import pytest

from unlearnbench import identity
from unlearnbench.identity import FIELDS, Identity
from unlearnbench.stages.scoring import score_klom
from unlearnbench.metrics import epsilon as eps_metric
from unlearnbench.metrics.bootstrap import klom_percentile_ci
from unlearnbench.metrics.groups import group_masks, group_stats
from unlearnbench.metrics.klom import klom
from unlearnbench.scoring import KlomOptions, score_margins
from unlearnbench.storage import ArtefactError, load_arrays, save_arrays, save_npy

N_TRAIN, N_VAL = 120, 40
KLOM_CONFIG = {"bins": 20, "eps": 1e-5, "clip": [-100, 100], "direction": "unlearned-oracle",
               "inclusive_last_bin": False, "percentiles": [95, 99]}
EPSILON = {"delta": 1e-5, "cap": 50.0}


def ten_class_outputs(rng: np.random.Generator, m: int, n: int, confidence: float):
    """Margins and argmax correctness of m models on n points of a 10-class problem, from sampled logits.

    The true class gets a bonus of ``confidence``: often the argmax, rarely above probability 1/2, so the
    margin > 0 proxy and argmax accuracy disagree a lot."""
    labels = rng.integers(0, 10, n)
    logits = rng.normal(0, 1, (m, n, 10))
    logits[:, np.arange(n), labels] += confidence
    true = logits[:, np.arange(n), labels]
    others = logits.copy()
    others[:, np.arange(n), labels] = -np.inf
    margins = true - np.log(np.exp(others).sum(axis=-1))
    correct = logits.argmax(axis=-1) == labels
    return margins.astype(np.float32), correct


@pytest.fixture(scope="module")
def outputs():
    rng = np.random.default_rng(7)
    u, cu = ten_class_outputs(rng, 12, N_TRAIN + N_VAL, 1.6)
    o, co = ten_class_outputs(rng, 15, N_TRAIN + N_VAL, 1.4)
    forget = np.sort(rng.choice(N_TRAIN, 20, replace=False)).astype(np.int64)
    return u, cu, o, co, forget


def test_the_margin_proxy_is_not_argmax_accuracy_for_ten_classes(outputs):
    u, cu, *_ = outputs
    proxy, argmax = (u > 0).mean(), cu.mean()
    assert argmax - proxy > 0.2, (argmax, proxy)  # the fixture is a case where the proxy misleads


def test_rows_are_the_library_statistics_and_argmax_accuracies(outputs):
    u, cu, o, co, forget = outputs
    scored = score_margins(u, o, forget, N_TRAIN, bootstrap=30, seed=3, epsilon=EPSILON,
                           correct_unlearned=cu, correct_oracle=co)
    per_point = klom(u, o)
    np.testing.assert_array_equal(scored.klom, per_point)
    masks = group_masks(forget, N_TRAIN, N_VAL)
    assert [r["group"] for r in scored.rows] == ["forget", "retain", "val"]
    for row in scored.rows:
        mask = masks[row["group"]]
        assert {k: row[k] for k in group_stats(per_point[mask])} == group_stats(per_point[mask])
        low, high = klom_percentile_ci(u, o, mask, 95, 30, 0.05, seed=3, bias_correct=True)
        assert (row["p95_low"], row["p95_high"]) == (max(low, 0.0), min(high, math.log(1e5)))
        assert row["accuracy"] == pytest.approx(cu[:, mask].mean())
        assert row["oracle_accuracy"] == pytest.approx(co[:, mask].mean())
        assert row["accuracy"] != pytest.approx((u[:, mask] > 0).mean(), abs=0.05)  # not the margin proxy
    eps = eps_metric.epsilon_per_point(u[:, forget], o[:, forget], 1e-5, 50.0)
    forget_score = eps_metric.forget_score(eps, n_models=len(u))
    final = forget_score * (cu[:, masks["retain"]].mean() / co[:, masks["retain"]].mean()) * (
        cu[:, masks["val"]].mean() / co[:, masks["val"]].mean())
    assert scored.epsilon == pytest.approx({"n_forget": 20, "epsilon_mean": eps.mean(), "epsilon_max": eps.max(),
                                            "forget_score": forget_score, "final_score": final})


def test_unknown_correctness_gives_nan_accuracy_and_final_score(outputs):
    u, cu, o, _, forget = outputs
    scored = score_margins(u, o, forget, N_TRAIN, epsilon=EPSILON, correct_unlearned=cu)
    assert all(not math.isnan(r["accuracy"]) and math.isnan(r["oracle_accuracy"]) for r in scored.rows)
    assert math.isnan(scored.epsilon["final_score"]) and scored.epsilon["forget_score"] > 0
    assert all("p95_low" not in r for r in scored.rows)  # no bootstrap asked for


def test_a_diverged_model_scores_zero_and_gets_no_interval(outputs):
    u, cu, o, co, forget = outputs
    u = u.copy()
    u[0] = np.nan
    scored = score_margins(u, o, forget, N_TRAIN, bootstrap=10, epsilon=EPSILON, correct_unlearned=cu,
                           correct_oracle=co)
    assert scored.epsilon["final_score"] == 0.0
    assert all(math.isnan(r["p95_low"]) and math.isnan(r["p95_high"]) for r in scored.rows)


def test_train_only_margins_have_no_val_row_and_no_final_score(outputs):
    u, cu, o, co, forget = outputs
    scored = score_margins(u[:, :N_TRAIN], o[:, :N_TRAIN], forget, N_TRAIN, epsilon=EPSILON,
                           correct_unlearned=cu[:, :N_TRAIN], correct_oracle=co[:, :N_TRAIN])
    assert [r["group"] for r in scored.rows] == ["forget", "retain"]
    assert math.isnan(scored.epsilon["final_score"])  # no test set, no test-accuracy ratio


@pytest.mark.parametrize("change, message", [
    (lambda a: a.update(forget=np.array([5, N_TRAIN])), "forget indices must be train indices"),
    (lambda a: a.update(forget=np.array([5, 5])), "repeat"),
    (lambda a: a.update(forget=np.array([1.0, 2.0])), "integer"),
    (lambda a: a.update(n_train=N_TRAIN + N_VAL + 1), "n_train"),
    (lambda a: a.update(oracle=a["oracle"][:, :-1]), "same points"),
    (lambda a: a.update(correct_oracle=a["correct_oracle"][:, :-1]), "correct_oracle"),
    (lambda a: a.update(correct_unlearned=a["correct_unlearned"].astype(np.int8)), "correct_unlearned"),
])
def test_inconsistent_inputs_are_refused(outputs, change, message):
    u, cu, o, co, forget = outputs
    args = {"unlearned": u, "oracle": o, "forget": forget, "n_train": N_TRAIN, "correct_unlearned": cu,
            "correct_oracle": co}
    change(args)
    with pytest.raises(ValueError, match=message):
        score_margins(**args)


# the job ---------------------------------------------------------------------------------------------------


def write_run(tmp_path, outputs, correct=True, shards=2):
    """Unlearned shards (two snapshots) and oracle shards as the workflow writes them."""
    u, cu, o, co, forget = outputs
    later = u + 0.5  # a second snapshot
    unlearned, oracles = [], []
    for i, rows in enumerate(np.array_split(np.arange(len(u)), shards)):
        arrays = {"margins": np.stack([u[rows], later[rows]]), "epochs": np.array([1, 3]),
                  "samples": np.full((2, len(rows)), 60), "diverged": np.zeros((2, len(rows)), bool),
                  "model_index": rows}
        if correct:
            arrays["correct"] = np.stack([cu[rows], cu[rows]])
        save_arrays(tmp_path / f"u{i}.npz", **arrays)
        unlearned.append(str(tmp_path / f"u{i}.npz"))
    for i, rows in enumerate(np.array_split(np.arange(len(o)), shards)):
        arrays = {"margins": o[rows], "model_index": rows} | ({"correct": co[rows]} if correct else {})
        save_arrays(tmp_path / f"o{i}.npz", **arrays)
        oracles.append(str(tmp_path / f"o{i}.npz"))
    save_npy(tmp_path / "forget.npy", forget)
    return unlearned, oracles, str(tmp_path / "forget.npy")


def run_job(tmp_path, unlearned, oracles, forget, bootstrap=0):
    score_klom(unlearned, oracles, forget, scores=str(tmp_path / "klom.npz"), stats=str(tmp_path / "stats.csv"),
               epsilon=str(tmp_path / "epsilon.csv"), klom_options=KLOM_CONFIG,
               bootstrap={"n_resamples": bootstrap, "alpha": 0.05}, run_metrics={"epsilon": EPSILON}, n_train=N_TRAIN,
               n_val=N_VAL, cost_unit=1000,
               identity=RUN.fields())
    # the score tables without the identity columns every row repeats (test_every_score_file_names_its_run)
    return tuple(pd.read_csv(tmp_path / name).drop(columns=list(RUN.fields())) for name in ("stats.csv", "epsilon.csv"))


RUN = Identity(dataset="digits", model="digits_cnn", forget_set="1", method="ga", run="lr~0.1", sample="selection")


def test_every_score_file_names_its_run(tmp_path, outputs):
    run_job(tmp_path, *write_run(tmp_path, outputs))
    for name in ("stats.csv", "epsilon.csv"):
        who, table = identity.load_table(tmp_path / name)
        assert who == RUN and list(table.columns[:6]) == list(FIELDS), name
    who, arrays = identity.load_arrays(tmp_path / "klom.npz", ("klom", "epochs"))
    assert who == RUN and identity.read_identity(tmp_path / "klom.npz") == RUN and "identity" not in arrays
    assert load_arrays(tmp_path / "klom.npz")["identity"].dtype.kind == "U"  # no object array: loads unpickled


def test_score_klom_uses_the_core_per_snapshot_and_logs_what_it_scored(tmp_path, outputs, caplog):
    u, cu, o, co, forget = outputs
    with caplog.at_level(logging.INFO, logger="unlearnbench"):
        stats, eps = run_job(tmp_path, *write_run(tmp_path, outputs), bootstrap=20)
    for s, (epoch, margins) in enumerate(((1, u), (3, u + 0.5))):
        scored = score_margins(margins, o, forget, N_TRAIN, bootstrap=20, seed=epoch, epsilon=EPSILON,
                               correct_unlearned=cu, correct_oracle=co)
        table = stats[stats.epoch == epoch].set_index("group")
        for row in scored.rows:
            for key, value in row.items():
                if key != "group":
                    assert table.loc[row["group"], key] == pytest.approx(value), key
        assert eps[eps.epoch == epoch].iloc[0].to_dict() == pytest.approx({"epoch": epoch, **scored.epsilon})
        np.testing.assert_array_equal(load_arrays(tmp_path / "klom.npz")["klom"][s], scored.klom)
    assert {"accuracy", "oracle_accuracy"} <= set(stats.columns) and (stats.n_models == 12).all()
    lines = [r.getMessage() for r in caplog.records]
    assert any("scoring method ga, run lr~0.1, forget set 1: 12 unlearned models (2 shard(s)) x 2 snapshot(s) "
               "vs 15 oracles (2 shard(s)), 160 points (120 train, 40 val)" in line for line in lines), lines
    snapshot_lines = [line for line in lines if line.startswith("epoch ")]
    assert len(snapshot_lines) == 2
    forget_row = stats[(stats.epoch == 1) & (stats.group == "forget")].iloc[0]
    assert (f"forget P95 {forget_row.p95:.3f} acc {forget_row.accuracy:.3f} "
            f"(oracle {forget_row.oracle_accuracy:.3f})") in snapshot_lines[0]
    assert "retain P95" in snapshot_lines[0] and "val P95" in snapshot_lines[0] and "; epsilon " in snapshot_lines[0]
    assert f"final_score {eps[eps.epoch == 1].final_score.iloc[0]:.4g}" in snapshot_lines[0]


def test_score_klom_without_stored_correctness_reports_nan_accuracy(tmp_path, outputs, caplog):
    with caplog.at_level(logging.INFO, logger="unlearnbench"):
        stats, eps = run_job(tmp_path, *write_run(tmp_path, outputs, correct=False))
    assert stats.accuracy.isna().all() and stats.oracle_accuracy.isna().all() and eps.final_score.isna().all()
    assert any("accuracy unknown (NaN)" in r.getMessage() for r in caplog.records)
    assert any("acc n/a (oracle n/a)" in r.getMessage() for r in caplog.records)


def test_score_klom_refuses_correctness_that_does_not_fit_its_margins(tmp_path, outputs):
    unlearned, oracles, forget = write_run(tmp_path, outputs)
    arrays = load_arrays(oracles[0])
    save_arrays(oracles[0], **arrays | {"correct": arrays["correct"][:, :-1]})
    with pytest.raises(ArtefactError, match="'correct' is bool"):
        run_job(tmp_path, unlearned, oracles, forget)


def test_klom_options_from_the_config():
    assert KlomOptions.from_config(KLOM_CONFIG) == KlomOptions()


def test_a_saturated_group_keeps_its_interval_ordered_around_the_estimate() -> None:
    """KLOM of disjoint samples slightly exceeds ln(1/eps) (the floor is renormalised): capping only the upper end at
    ln(1/eps) left p95_high below p95_low (seen on DM-direct with a noisy forget effect)."""
    rng = np.random.default_rng(0)
    oracle = rng.normal(-20, 1, (30, 40))
    unlearned = rng.normal(20, 0.01, (30, 40))  # one histogram bin: KL = ln(1/eps) + ln(1 + eps)
    scored = score_margins(unlearned, oracle, np.arange(10), 30, bootstrap=20)
    for row in scored.rows:
        assert row["p95"] > math.log(1e5)
        assert row["p95_low"] <= row["p95"] <= row["p95_high"], row
