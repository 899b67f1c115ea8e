"""Selection independent of reporting: ranking rules, the winner's curse, the summary's protocol columns,
the shard layout of the three samples, and the retrain baseline's compressed schedule."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from unlearnbench import identity, plan
from unlearnbench.identity import Identity
from unlearnbench.config import ConfigError, validate
from unlearnbench import selection
from unlearnbench.stages.scoring import summarize
from unlearnbench.stages.selection import select_run
from unlearnbench.stages.unlearning import unlearn
from unlearnbench.compressed_schedule import CompressedSchedule, last_epoch
from unlearnbench.metrics.klom import klom

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "workflow/schemas/config.schema.yaml"


def candidates(rows):
    """Wide candidate rows from (run, epoch, forget, retain, val[, cost, diverged])."""
    records = []
    for row in rows:
        run, epoch, f, r, v, *rest = row
        cost, diverged = (rest + [0.1, 0])[:2] if rest else (0.1, 0)
        records.append({"run": run, "epoch": epoch, "forget_p95": f, "retain_p95": r, "val_p95": v,
                        "relative_cost": cost, "diverged": diverged})
    return pd.DataFrame(records)


# ranking rules -----------------------------------------------------------------------------------------


# destructive: best forget, broken elsewhere; balanced: best mean; even: best worst group
RULE_CASE = candidates([
    ("destructive", 1, 2.0, 9.0, 9.0),
    ("balanced", 1, 4.0, 1.0, 1.0),
    ("lopsided", 1, 3.0, 3.5, 0.5),
    ("even", 1, 3.2, 3.1, 3.0),
])


@pytest.mark.parametrize("rule, pick, value", [
    ("forget_95", "destructive", 2.0),
    ("average_95", "balanced", 2.0),
    ("max_95", "even", 3.2),
])
def test_each_rule_picks_its_run(rule, pick, value):
    chosen = selection.select(RULE_CASE, rule)
    assert chosen["run"] == pick and chosen["selection_value"] == pytest.approx(value)
    assert chosen["n_candidates"] == 4


def test_rule_values_and_an_unknown_rule():
    assert selection.rule_value(3.0, 6.0, 0.0, "average_95") == pytest.approx(3.0)
    assert selection.rule_value(3.0, 6.0, 0.0, "max_95") == pytest.approx(6.0)
    assert selection.rule_value(3.0, 6.0, 0.0, "forget_95") == pytest.approx(3.0)
    with pytest.raises(ValueError, match="unknown selection rule"):
        selection.rule_value(1, 1, 1, "median_95")
    schema_rules = yaml.safe_load(SCHEMA.read_text())["properties"]["selection"]["properties"]["rule"]["enum"]
    assert sorted(schema_rules) == sorted(selection.RULES)


def test_diverged_snapshots_rank_last_and_ties_are_deterministic():
    table = candidates([
        ("b", 2, 1.0, 1.0, 1.0, 0.2, 3),  # lowest value, but models diverged
        ("c", 3, 2.0, 2.0, 2.0, 0.2, 0),
        ("a", 3, 2.0, 2.0, 2.0, 0.2, 0),  # ties with c: same cost, same epoch -> run id
        ("d", 1, 2.0, 2.0, 2.0, 0.3, 0),  # ties, dearer
        ("e", 5, 2.0, 2.0, 2.0, 0.1, 0),  # ties, cheapest
    ])
    order = selection.rank(table, "average_95")["run"].tolist()
    assert order == ["e", "a", "c", "d", "b"]
    shuffled = table.sample(frac=1.0, random_state=3)
    assert selection.rank(shuffled, "average_95")["run"].tolist() == order


# the winner's curse ------------------------------------------------------------------------------------


def _sample_p95(rng, n_models: int, n_points: int) -> dict[str, float]:
    """P95 of per-point KLOM per group, for unlearned models that are exactly as good as oracles (same law)."""
    out = {}
    for group in selection.GROUPS:
        unlearned = rng.normal(size=(n_models, n_points))
        oracle = rng.normal(size=(n_models, n_points))
        out[group] = float(np.percentile(klom(unlearned, oracle, bins=10), 95))
    return out


@pytest.mark.parametrize("rule", sorted(selection.RULES))
def test_reporting_on_an_independent_sample_removes_the_winners_curse(rule):
    """Many equally good runs: the chosen run's value on the sample it was chosen on is biased low; its value
    on an independent sample is as high as a fresh score of any run (unbiased, within noise)."""
    rng = np.random.default_rng(0)
    n_runs, n_models, n_points, trials = 12, 20, 40, 40
    same, independent, fresh = [], [], []
    for _ in range(trials):
        rows_a, rows_b = [], []
        for k in range(n_runs):
            a, b = _sample_p95(rng, n_models, n_points), _sample_p95(rng, n_models, n_points)
            rows_a.append((f"run{k}", 1, a["forget"], a["retain"], a["val"]))
            rows_b.append((f"run{k}", 1, b["forget"], b["retain"], b["val"]))
        on_a, on_b = selection.rank(candidates(rows_a), rule), selection.rank(candidates(rows_b), rule)
        chosen = selection.select(candidates(rows_a), rule)
        same.append(chosen["selection_value"])
        independent.append(float(on_b.set_index("run").loc[chosen["run"], "selection_value"]))
        fresh.append(float(on_b["selection_value"].mean()))  # what a run not chosen by anything scores
    same, independent, fresh = map(np.asarray, (same, independent, fresh))
    noise = independent.std(ddof=1) / np.sqrt(trials)
    assert fresh.mean() - same.mean() > 6 * noise  # select-and-report on one sample: biased low
    assert abs(independent.mean() - fresh.mean()) < 3 * noise  # reported on another sample: unbiased


# plan -------------------------------------------------------------------------------------------------


@pytest.fixture
def default_config():
    return validate(yaml.safe_load((REPO / "config/config.yaml").read_text()), SCHEMA)


def test_which_methods_select_and_what_is_scored_where(default_config):
    config = default_config
    assert config["selection"] == {"n_models": config["n_models"], "rule": "average_95"}
    assert not selection.selects(config, "do_nothing") and not selection.selects(config, "oracle")
    assert not selection.selects(config, "retrain")  # budgets are a cost axis: every one is reported
    assert selection.selects(config, "gradient_ascent")
    ga = selection.candidates(config, "gradient_ascent")
    assert len(ga) == 2 * 3 and ("batch_size~32_lr~0.05", 5) in ga
    scored = selection.scored_runs(config, "gradient_ascent", ("batch_size~32_lr~0.05", 3))
    assert scored == [("batch_size~32_lr~0.01", "selection"), ("batch_size~32_lr~0.05", "selection"),
                      ("batch_size~32_lr~0.05", "report_epoch~3")]
    assert selection.scored_runs(config, "do_nothing", None) == [("default", "report_epoch~0")]
    budgets = config["methods"]["retrain"]["budget"]
    assert [run for run, _ in selection.scored_runs(config, "retrain", None)] == [
        f"budget~{b!r}" for b in budgets]
    assert selection.parse_sample("report_epoch~12") == ("report", 12)
    assert selection.parse_sample("selection") == ("selection", None)
    with pytest.raises(ValueError):
        selection.parse_sample("report")


@pytest.mark.parametrize("n, h, s, k", [(10, 5, 10, 4), (2, 6, 3, 2), (4, 0, 2, 3), (3, 1, 7, 100)])
def test_the_three_oracle_families_and_two_base_samples_never_share_a_shard(default_config, n, h, s, k):
    config = copy.deepcopy(default_config)
    config.update(n_models=n, n_holdout_oracles=h, models_per_job=k, selection={"n_models": s, "rule": "max_95"})
    base = plan.base_shards(config)
    assert [i for a, b in base for i in range(a, b)] == list(range(n + s))
    assert [i for j in plan.report_base_shards(config) for i in range(*base[j])] == list(range(n))
    assert [i for j in plan.selection_base_shards(config) for i in range(*base[j])] == list(range(n, n + s))
    oracles = plan.oracle_shards(config)
    families = {"scored": plan.scored_oracle_shards(config), "holdout": plan.holdout_oracle_shards(config),
                "selection": plan.selection_oracle_shards(config)}
    members = {name: [i for j in ids for i in range(*oracles[j])] for name, ids in families.items()}
    assert members == {"scored": list(range(n)), "holdout": list(range(n, n + h)),
                       "selection": list(range(n + h, n + h + s))}
    assert sorted(sum(families.values(), [])) == list(range(len(oracles)))


def test_pool_cost_counts_half_the_train_split_per_pool_model(default_config):
    assert plan.pool_cost(default_config, 300) == pytest.approx(384 * 150 / 300)
    assert plan.pool_cost({**default_config, "pool": None}, 300) == 0.0


def test_retrain_is_refused_for_ulira(default_config):
    config = copy.deepcopy(default_config)
    config["ulira"]["methods"]["retrain"] = {"budget": [0.5]}
    with pytest.raises(ConfigError, match="ulira.methods.retrain"):
        validate(config, SCHEMA)


@pytest.mark.parametrize("budget", [0, 1.5, [0.5, -0.1]])
def test_budgets_outside_zero_to_one_are_refused(default_config, budget):
    config = copy.deepcopy(default_config)
    config["methods"]["retrain"] = {"budget": budget}
    with pytest.raises(ConfigError, match="methods.retrain"):
        validate(config, SCHEMA)


# the summary's protocol columns -------------------------------------------------------------------------


def stats_rows(values: dict[int, tuple[float, float, float]], n_forget=10, n_train=300, samples=0.0):
    """A stats.csv as score_klom writes it: per epoch and group."""
    rows = []
    for epoch, (f, r, v) in values.items():
        for group, p95, n in (("forget", f, n_forget), ("retain", r, n_train - n_forget), ("val", v, 50)):
            rows.append({"epoch": epoch, "group": group, "n_points": n, "p95": p95, "p99": p95, "mean": p95 / 2,
                         "std": 1.0, "n_models": 4, "n_oracles": 4, "relative_cost": samples * epoch,
                         "diverged": 0, "direction": "unlearned-oracle"})
    return pd.DataFrame(rows)


def test_summarize_marks_the_chosen_run_and_reports_it_beside_its_selection_value(tmp_path):
    scores = {  # (method, run, sample) -> per-epoch (forget, retain, val) P95
        ("do_nothing", "default", "report"): {0: (9.0, 0.5, 0.5)},
        ("oracle", "default", "report"): {0: (0.7, 0.6, 0.6)},
        ("ga", "lr~0.1", "selection"): {1: (3.0, 1.0, 1.0), 2: (1.0, 5.0, 5.0)},
        ("ga", "lr~0.2", "selection"): {1: (2.0, 1.0, 0.9), 2: (4.0, 4.0, 4.0)},
        ("ga", "lr~0.2", "report"): {1: (2.6, 1.1, 1.0)},
        ("retrain", "budget~0.1", "report"): {3: (3.0, 2.0, 2.0)},
        ("retrain", "budget~0.5", "report"): {15: (1.0, 0.8, 0.8)},
    }
    paths, eps_paths, selecting = [], [], []
    for i, ((method, run, sample), values) in enumerate(scores.items()):
        sample = "selection" if sample == "selection" else selection.report_sample(max(values))
        who = Identity(dataset="digits", model="cnn", forget_set="01", method=method, run=run, sample=sample)
        cost = {"ga": 0.01, "retrain": 0.03}.get(method, 0.0)
        paths.append(str(tmp_path / f"{i}.csv"))
        identity.save_table(paths[-1], who, stats_rows(values, samples=cost))
        eps_paths.append(str(tmp_path / f"eps{i}.csv"))
        identity.save_table(eps_paths[-1], who, pd.DataFrame({"epoch": [0], "n_forget": [10]}))
        if sample == "selection":
            selecting.append(paths[-1])
    chosen = tmp_path / "chosen.json"
    select_run(selecting, str(chosen), "max_95", "01")
    assert json.loads(chosen.read_text())["methods"]["ga"]["run"] == "lr~0.2"  # max 2.0 at epoch 1
    out = {k: str(tmp_path / f"out.{k}") for k in ("csv", "parquet", "eps")}
    summarize(paths, [str(chosen)], out["csv"], out["csv"] + ".parquet", epsilon=eps_paths, epsilon_summary=out["eps"],
              fixed_selections=[{"method": m, "forget_set": "01", "run": "default", "epoch": 0}
                                for m in ("do_nothing", "oracle")],
              rule="max_95",
              methods={"do_nothing": {"role": "no_unlearning"}, "oracle": {"role": "oracle"},
                       "ga": {"role": "unlearning", "pool_cost": 0.0},
                       "retrain": {"role": "retrain"}},
              descriptions={"01": "ten <b>random</b> points"})
    from unlearnbench.storage import load_table

    table = load_table(out["csv"])
    assert set(table["forget_set"]) == {"01"} and (table["selection_rule"] == "max_95").all()
    per_run = table.groupby(["method", "run", "sample", "epoch"]).first()
    ga = per_run.loc["ga"]
    assert ga.loc[("lr~0.2", "selection", 1), "average_95"] == pytest.approx(3.9 / 3)
    assert ga.loc[("lr~0.2", "selection", 1), "selection_value"] == pytest.approx(2.0)  # max_95
    assert ga.loc[("lr~0.2", "report", 1), "selection_value"] == pytest.approx(2.6)
    selected = table[table["selected"]].drop_duplicates(["method", "run", "sample", "epoch"])
    assert sorted(zip(selected["method"], selected["sample"], selected["epoch"])) == [
        ("do_nothing", "report", 0), ("ga", "report", 1), ("ga", "selection", 1), ("oracle", "report", 0)]
    assert per_run["n_candidates"].to_dict() == {k: {"do_nothing": 1, "oracle": 1, "ga": 4, "retrain": 2}[k[0]]
                                                 for k in per_run.index}
    assert per_run.loc[("oracle", "default", "report", 0), "relative_cost"] == pytest.approx(290 / 300)
    assert per_run.loc[("do_nothing", "default", "report", 0), "relative_cost"] == 0.0
    assert (table["forget_set_description"] == "ten <b>random</b> points").all()
    assert set(table["role"]) == {"no_unlearning", "oracle", "unlearning", "retrain"}

    from unlearnbench import summary_md

    rows = summary_md.reported_runs(table).set_index("method")
    assert rows.loc["ga", ["selected_on", "reported_on"]].tolist() == pytest.approx([2.0, 2.6])
    assert rows.loc["ga", "optimism"] == pytest.approx(0.6)
    assert np.isnan(rows.loc["do_nothing", "selected_on"])  # nothing was chosen
    assert list(rows.index) == ["do_nothing", "oracle", "retrain", "retrain", "ga"]
    assert "retrain" not in set(summary_md.headline_runs(table)["method"])


# the retrain baseline ----------------------------------------------------------------------------------


def test_compressed_schedule_steps_epochs_and_cost():
    schedule = CompressedSchedule(budget=0.25, epochs=30, steps_per_epoch=10)
    assert schedule.total_steps == 75 and schedule.loop_epochs == 8
    assert [schedule.steps_in_epoch(e) for e in range(1, 10)] == [10] * 7 + [5, 0]
    assert schedule.points_in_epoch(8, 290) == 145 and schedule.points_in_epoch(7, 290) == 290
    assert schedule.points_in_epoch(9, 290) == 0
    assert last_epoch(0.25, 30) == 8 and last_epoch(0.1, 30) == 3 and last_epoch(1e-4, 30) == 1
    tiny = CompressedSchedule(budget=1e-4, epochs=30, steps_per_epoch=10)
    assert tiny.total_steps == 1 and tiny.loop_epochs == 1


def test_the_loop_epochs_never_pass_the_snapshot_epoch_and_the_steps_add_up():
    from unlearnbench.loop import even_batches

    for n in (7, 100, 290, 1000):
        for batch in (1, 16, 32, 256):
            steps = len(even_batches(n, batch))
            for budget in (0.01, 0.05, 0.1, 0.25, 1 / 3, 0.5, 0.77, 1.0):
                for epochs in (1, 3, 24, 30):
                    s = CompressedSchedule(budget, epochs, steps)
                    assert s.loop_epochs <= last_epoch(budget, epochs)
                    taken = [len(even_batches(s.points_in_epoch(e, n), batch)) if s.points_in_epoch(e, n) else 0
                             for e in range(1, s.loop_epochs + 1)]
                    assert taken == [s.steps_in_epoch(e) for e in range(1, s.loop_epochs + 1)]
                    assert sum(taken) == s.total_steps


@pytest.fixture(scope="module")
def digits_problem():
    import torch

    from unlearnbench.data import load_dataset
    from unlearnbench.forget_sets import random_forget_set

    splits = load_dataset("digits")
    return splits, splits.inputs(), torch.from_numpy(splits.labels()), random_forget_set(splits.n_train, 20, seed=3)


RECIPE = {"epochs": 4, "batch_size": 32, "lr": 0.2, "peak_epoch": 1, "momentum": 0.9, "weight_decay": 5e-4,
          "optimizer": "sgd", "schedule": "triangle", "weight_decay_batchnorm": True, "nesterov": False,
          "label_smoothing": 0.0}


def retrain_plan(problem, budget, seeds=(7, 8)):
    from unlearnbench.forget_sets import retain_points
    from unlearnbench.methods import load_build, lookup
    from unlearnbench.methods.base import UnlearningContext
    from unlearnbench.stack import ModelStack

    splits, x, y, forget = problem
    models = ModelStack.initialise("digits_cnn", 10, 1, list(seeds), range(len(seeds)))
    ctx = UnlearningContext(x, y, forget, retain_points(forget, splits.n_train), models.copy(), list(seeds))
    return ctx, models, load_build(lookup("retrain"))(ctx, budget=budget, recipe=RECIPE)


def test_the_retrain_learning_rate_is_the_whole_recipe_compressed(digits_problem):
    from unlearnbench.loop import even_batches
    from unlearnbench.training import Recipe, lr_at

    ctx, _, full = retrain_plan(digits_problem, 1.0)
    _, _, half = retrain_plan(digits_problem, 0.5)
    recipe, steps = Recipe.from_config(RECIPE), 9  # 280 retain points in batches of 32

    def curve(plan_, epochs):
        return [phase.lr(step) for e in range(1, epochs + 1) for phase in plan_.phases(e)
                for step in range(len(even_batches(phase.points.shape[-1], phase.batch_size)))]

    full_lr, half_lr = curve(full, 4), curve(half, 2)
    assert len(full_lr) == 4 * steps and len(half_lr) == 2 * steps
    assert full_lr == pytest.approx([lr_at(recipe, s, steps) for s in range(4 * steps)])
    assert half_lr == pytest.approx(full_lr[::2])  # the same curve at twice the pace
    assert half_lr[0] == 0.0 and max(half_lr) > 0.18 and half_lr[-1] < 0.03  # up to the peak and down again
    assert half.phases(3) == []  # past the compressed schedule


def test_retrain_with_the_full_budget_is_an_oracle_and_costs_its_budget(digits_problem):
    from unlearnbench.forget_sets import retain_points
    from unlearnbench.loop import run_loop
    from unlearnbench.margins import stack_margins
    from unlearnbench.training import Recipe, train_stack

    splits, x, y, forget = digits_problem
    ctx, models, full = retrain_plan(digits_problem, 1.0)
    record = run_loop(models, x, y, [7, 8], full.optimiser, 4, full.phases)
    oracle = ctx.original.copy()  # the same fresh models, trained by the training stage on the retain set
    train_stack(oracle, x, y, retain_points(forget, splits.n_train), [7, 8], Recipe.from_config(RECIPE))
    np.testing.assert_allclose(stack_margins(models, x, y), stack_margins(oracle, x, y), rtol=1e-5, atol=1e-5)

    _, quarter_models, quarter = retrain_plan(digits_problem, 0.25)
    quarter_record = run_loop(quarter_models, x, y, [7, 8], quarter.optimiser, last_epoch(0.25, 4), quarter.phases)
    full_cost = record.samples[4] / (splits.n_train * 4)
    quarter_cost = quarter_record.samples[last_epoch(0.25, 4)] / (splits.n_train * 4)
    assert full_cost == pytest.approx([280 / 300] * 2)
    assert quarter_cost == pytest.approx(full_cost * 0.25, rel=0.02)


def test_the_retrain_job_starts_from_fresh_seeded_models_not_the_base_models(tmp_path, digits_problem):
    from unlearnbench.data import save_splits
    from unlearnbench.stack import ModelStack
    from unlearnbench.storage import load_arrays, save_npy

    splits, x, y, forget = digits_problem
    save_splits(tmp_path / "splits.npz", splits)
    save_npy(tmp_path / "forget.npy", forget)
    base = ModelStack.initialise("digits_cnn", 10, 1, [1, 2], [5, 6])
    base.save(tmp_path / "base.safetensors")
    other = ModelStack.initialise("digits_cnn", 10, 1, [3, 4], [5, 6])  # other base weights, same models
    other.save(tmp_path / "other.safetensors")
    outputs = []
    for weights in ("base", "other"):
        out = tmp_path / f"{weights}.npz"
        unlearn(str(out), "retrain", {"budget": 0.5, "recipe": RECIPE}, [last_epoch(0.5, 4)], seeds=[7, 8],
                plugins={}, device="cpu", models_per_batch=None, compile=False,
                identity={"method": "retrain", "run": "budget~0.5"}, weights=str(tmp_path / f"{weights}.safetensors"), splits=str(tmp_path / "splits.npz"),
                forget_set=str(tmp_path / "forget.npy"))
        outputs.append(load_arrays(out))
    np.testing.assert_array_equal(outputs[0]["margins"], outputs[1]["margins"])  # base weights unused
    assert outputs[0]["model_index"].tolist() == [5, 6] and outputs[0]["epochs"].tolist() == [2]
    _, models, half = retrain_plan(digits_problem, 0.5)
    from unlearnbench.loop import run_loop
    from unlearnbench.margins import stack_margins

    run_loop(models, x, y, [7, 8], half.optimiser, 2, half.phases)
    np.testing.assert_allclose(outputs[0]["margins"][0], stack_margins(models, x, y), rtol=1e-5, atol=1e-5)
