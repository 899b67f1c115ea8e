"""The workflow through snakemake itself, on the tiny config."""

from __future__ import annotations

import math
import os
import re
import shutil

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import REPO, TINY_CONFIG, planned_jobs, snakemake
from unlearnbench import layout

DIGITS = layout.Layout("digits")  # the paths of a run on the digits data set

pytestmark = pytest.mark.workflow

RULES = {
    "prepare_dataset", "make_forget_set", "train_base", "train_oracle", "compute_margins", "unlearn",
    "score_klom", "select_run", "summarize",
}
REPORT_RULES = {"report_tables", "report_extra_table", "plot_tradeoff", "plot_group_bars", "plot_klom_epochs",
                "plot_margins"}


def tiny_config(workdir):
    return yaml.safe_load((workdir / TINY_CONFIG).read_text())


def write_config(workdir, config, name="edited.yaml"):
    path = workdir / name
    path.write_text(yaml.safe_dump(config))
    return name


def test_dry_run_lists_every_rule(workflow_copy):
    proc = snakemake(workflow_copy, "-n", "--configfile", TINY_CONFIG)
    assert RULES <= set(planned_jobs(proc))


def test_lint_is_clean(workflow_copy):
    proc = snakemake(workflow_copy, "--lint", "--configfile", TINY_CONFIG, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_summary_has_every_forget_set_method_and_group(tiny_run):
    table = pd.read_csv(tiny_run / layout.KLOM_SUMMARY)
    config = tiny_config(tiny_run)
    required = ["dataset", "model", "forget_set", "method", "run", "sample", "epoch", "group", "n_points",
                "n_models", "p95", "p99", "mean", "std", "relative_cost", "diverged", "direction", "average_95",
                "selection_rule", "selection_value", "selected", "n_candidates", "role", "pool_cost",
                "forget_set_description", "accuracy", "oracle_accuracy"]
    assert set(required) <= set(table.columns)
    seen = set(zip(table.forget_set.astype(str), table.method, table.group))
    for fs in config["forget_sets"]:
        for method in config["methods"]:
            for group in ("forget", "retain", "val"):
                assert (str(fs["id"]), method, group) in seen
    assert (tiny_run / layout.KLOM_SUMMARY_PARQUET).exists()
    assert pd.read_parquet(tiny_run / layout.KLOM_SUMMARY_PARQUET).shape == table.shape
    assert (table.direction == "unlearned-oracle").all()
    assert (table.selection_rule == "average_95").all()


def test_runs_are_chosen_on_the_selection_sample_and_reported_on_the_report_sample(tiny_run):
    """Every grid point is scored on the selection models against the selection oracles; the chosen one (and
    each method without a choice) on the report models against the scored oracles."""
    import json

    table = pd.read_csv(tiny_run / layout.KLOM_SUMMARY, dtype={"forget_set": str})
    config = tiny_config(tiny_run)
    n = config["n_models"]
    report = table[table["sample"] == "report"]
    assert (report.n_models == n).all() and (report.n_oracles == n).all()
    ga = table[table.method == "gradient_ascent"]
    assert set(ga[ga["sample"] == "selection"].epoch) == {1, 2} and (ga.n_models == n).all()
    for fs in ("1", "class3"):
        chosen = json.loads((tiny_run / DIGITS.selected(fs)).read_text())
        chosen = chosen["methods"]["gradient_ascent"]
        reported = ga[(ga.forget_set == fs) & (ga["sample"] == "report")]
        assert set(reported.epoch) == {chosen["epoch"]} and set(reported.run) == {chosen["run"]}
        candidates = ga[(ga.forget_set == fs) & (ga["sample"] == "selection")]
        best = candidates.groupby("epoch")["average_95"].first().idxmin()
        assert best == chosen["epoch"] and candidates[candidates.selected].epoch.unique().tolist() == [best]
        assert chosen["selection_value"] == pytest.approx(candidates[candidates.epoch == best].average_95.iloc[0])
    # methods without a choice, and the retrain baseline at every budget, only on the report sample
    for method in ("do_nothing", "oracle", "oracle_matching", "retrain"):
        assert set(table[table.method == method]["sample"]) == {"report"}
    retrain = report[report.method == "retrain"]
    assert set(retrain.run) == {"budget~0.1", "budget~0.3"} and not retrain.selected.any()
    costs = retrain.groupby("run").relative_cost.first()
    assert costs["budget~0.1"] == pytest.approx(0.1, rel=0.1) and costs["budget~0.3"] == pytest.approx(0.3, rel=0.1)
    oracle_cost = report[report.method == "oracle"].relative_cost
    assert oracle_cost.between(0.9, 1.0).all()  # one retraining on the retain set
    text = (tiny_run / layout.SUMMARY_MD).read_text()
    assert "chosen by `average_95`" in text and "where chosen" in text


def test_the_onsuccess_summary_is_the_one_of_the_run(tiny_run, workflow_copy):
    printed = (tiny_run / "tiny_run.out").read_text()
    assert "chosen by average_95 on the selection sample" in printed
    # a stale summary of another config must not be printed after a run that did not make it
    stale = workflow_copy / layout.KLOM_SUMMARY
    stale.parent.mkdir(parents=True)
    shutil.copy(tiny_run / layout.KLOM_SUMMARY, stale)
    proc = snakemake(workflow_copy, DIGITS.forget_set("1"), "--configfile", TINY_CONFIG)
    assert DIGITS.forget_set("1") in proc.stdout + proc.stderr
    assert "KLOM P95 of each method" not in proc.stdout + proc.stderr


def test_group_sizes_match_the_forget_sets(tiny_run):
    table = pd.read_csv(tiny_run / layout.KLOM_SUMMARY)
    sizes = {str(fs["id"]): fs["size"] for fs in tiny_config(tiny_run)["forget_sets"]}
    for (fs, group), n in table.groupby([table.forget_set.astype(str), "group"])["n_points"].first().items():
        expected = {"forget": sizes[fs], "retain": 300 - sizes[fs], "val": 1497}[group]
        assert n == expected


def test_do_nothing_is_far_from_the_oracle_draw_on_forget_points(tiny_run):
    """The weak form of the expected outcome (N = 10 only): do-nothing's forget KLOM is well above the
    oracle draw's, and both are small on validation points."""
    table = pd.read_csv(tiny_run / layout.KLOM_SUMMARY)
    mean = table[table["sample"] == "report"].set_index(["forget_set", "method", "group"])["mean"]
    for fs in table.forget_set.unique():
        assert mean[(fs, "do_nothing", "forget")] > 1.3 * mean[(fs, "oracle", "forget")]
        assert mean[(fs, "do_nothing", "forget")] > 1.3 * mean[(fs, "do_nothing", "val")]


def test_every_row_has_argmax_accuracies_and_score_logs_say_what_they_scored(tiny_run):
    table = pd.read_csv(tiny_run / layout.KLOM_SUMMARY)
    assert table.accuracy.between(0, 1).all() and table.oracle_accuracy.between(0, 1).all()
    # one set of oracles per forget set and sample (selection oracles, scored oracles): the same oracle
    # accuracy whatever the method
    per_sample = [table.forget_set.astype(str), "sample", "group"]
    assert table.groupby(per_sample).oracle_accuracy.nunique().eq(1).all()
    assert set(table["sample"]) == {"selection", "report"}
    forget = table[(table.method == "do_nothing") & (table.group == "forget")]
    assert (forget.accuracy >= forget.oracle_accuracy).all()  # base models trained on the forget points
    assert pd.read_csv(tiny_run / layout.run_metric_summary("epsilon")).final_score.notna().all()
    chosen = table[(table.method == "gradient_ascent") & (table["sample"] == "report") & (table.forget_set.astype(str) == "1")]
    run, epoch = chosen.run.iloc[0], chosen.epoch.iloc[0]
    log = DIGITS.log("score_klom", DIGITS.scores("stats.csv"))
    logs = (tiny_run / log.format(method="gradient_ascent", run=run, forget_set=1, sample="selection")).parent
    snapshot = r"epoch \d+: forget P95 [\d.]+ acc [\d.]+ \(oracle [\d.]+\) \| retain P95 .* \| val P95 [\d.]+ acc"
    # the selection sample: every snapshot, against the selection oracles, no ε (point estimates only)
    selection = (logs / "selection.log").read_text()
    assert (f"scoring method gradient_ascent, run {run}, forget set 1: 10 unlearned models (1 shard(s)) x 2 "
            "snapshot(s) vs 10 oracles (1 shard(s)), 1797 points (300 train, 1497 val)") in selection
    assert len(re.findall(snapshot, selection)) == 2 and "; epsilon " not in selection, selection
    # the report sample: the chosen snapshot only, against the scored oracles, with ε
    report = (logs / f"report_epoch~{epoch}.log").read_text()
    assert "10 unlearned models (1 shard(s)) x 1 snapshot(s) vs 10 oracles" in report
    assert len(re.findall(snapshot + r".*; epsilon .*final_score", report)) == 1, report


def test_second_run_has_nothing_to_do(tiny_run):
    proc = snakemake(tiny_run, "-n", "--configfile", TINY_CONFIG)
    assert planned_jobs(proc) == {}, proc.stdout


def test_changing_klom_bins_reruns_only_scoring(tiny_run):
    config = tiny_config(tiny_run)
    config["klom"]["bins"] = config["klom"].get("bins", 20) + 3
    proc = snakemake(tiny_run, "-n", "--configfile", write_config(tiny_run, config))
    jobs = set(planned_jobs(proc))
    # scores, then the choices made from them (unlearning of a newly chosen run follows the checkpoint),
    # the summary and the figures and tables made from it
    assert {"score_klom", "select_run", "summarize", "all"} <= jobs <= {"score_klom", "select_run", "summarize",
                                                                        "all"} | REPORT_RULES


def test_changing_the_selection_rule_reruns_only_the_choice_and_what_follows(tiny_run):
    config = tiny_config(tiny_run)
    config["selection"] = {"rule": "forget_95"}
    jobs = set(planned_jobs(snakemake(tiny_run, "-n", "--configfile", write_config(tiny_run, config))))
    assert {"select_run", "summarize"} <= jobs <= {"select_run", "summarize", "all"} | REPORT_RULES


def test_changing_train_epochs_reruns_training_and_what_follows(tiny_run):
    config = tiny_config(tiny_run)
    config["train"]["epochs"] += 1
    jobs = planned_jobs(snakemake(tiny_run, "-n", "--configfile", write_config(tiny_run, config)))
    assert {"train_base", "train_oracle", "compute_margins", "unlearn", "score_klom", "summarize"} <= set(jobs)
    assert "prepare_dataset" not in jobs and "make_forget_set" not in jobs


def readme_plugin_example():
    """The README's worked plug-in example (code and config), so the README is tested as written."""
    text = (REPO / "README.md").read_text()
    code = re.search(r"```python\n(# my_methods.py\n.*?)```", text, re.S).group(1)
    config = re.search(r"```yaml\n# in your config\n(.*?)```", text, re.S).group(1)
    return code, yaml.safe_load(config)


def readme_hooks_example():
    """The README's worked hook examples (one plug-in module)."""
    text = (REPO / "README.md").read_text()
    return re.search(r"```python\n(# my_hooks.py\n.*?)```", text, re.S).group(1)


def test_a_user_plugin_and_a_diverging_run_go_through_the_dag(workflow_copy):
    code, plugin_config = readme_plugin_example()
    (workflow_copy / "my_methods.py").write_text(code)
    (workflow_copy / "my_hooks.py").write_text(readme_hooks_example())
    config = tiny_config(workflow_copy)
    config.update(n_models=4, n_holdout_oracles=0, models_per_job=4, forget_sets=config["forget_sets"][:1])
    # plug-ins using hooks: an edit instead of training with a Fisher importance, and re-initialised + frozen
    # layers; one candidate each (no selection-sample runs)
    config["plugins"] = {**plugin_config["plugins"], "fisher_shrink": "my_hooks:fisher_shrink",
                         "fresh_head": "my_hooks:fresh_head"}
    config["methods"] = {
        "do_nothing": None,
        **plugin_config["methods"],
        "fisher_shrink": {"factor": 0.5, "epochs": [1]},
        "fresh_head": {"lr": 0.1, "k": 1, "epochs": [2]},
        "gradient_ascent": {"lr": [1.0e8], "epochs": [1, 2]},  # diverges
    }
    name = write_config(workflow_copy, config)
    path = os.pathsep.join(filter(None, [str(workflow_copy), os.environ.get("PYTHONPATH")]))
    env = {"PYTHONPATH": path}  # keep the library's
    snakemake(workflow_copy, "--configfile", name, env=env)
    table = pd.read_csv(workflow_copy / layout.KLOM_SUMMARY)
    plugin_runs = table[table.method == "capped_ascent"]
    assert set(plugin_runs.run) == {"cap~3.0_lr~0.01", "cap~3.0_lr~0.05"}
    assert set(plugin_runs.epoch) == {1, 3} and (plugin_runs.relative_cost > 0).all()
    hooks = table[table.method.isin(["fisher_shrink", "fresh_head"])].set_index("method")
    assert set(hooks.index) == {"fisher_shrink", "fresh_head"} and (hooks.diverged == 0).all()
    assert (hooks.relative_cost > 0).all()  # the Fisher passes of an edit count as cost
    diverged = table[(table.method == "gradient_ascent") & (table.epoch == 2)]
    assert (diverged.diverged == 4).all()
    assert (diverged.accuracy == 0).all()  # a diverged model classifies nothing
    saturation = math.log(1 / config["klom"].get("eps", 1e-5))
    assert diverged.p95.tolist() == pytest.approx([saturation] * 3)

    # an unused plug-in entry changes no job's params: nothing reruns
    config["plugins"]["unused"] = "my_methods:capped_ascent"
    proc = snakemake(workflow_copy, "-n", "--configfile", write_config(workflow_copy, config), env=env)
    assert planned_jobs(proc) == {}, proc.stdout[-3000:]


def test_the_pool_serves_datamodels_attribution_sets_and_ulira(workflow_copy):
    snakemake(workflow_copy, "--configfile", ".test/config/pool.yaml")
    results = workflow_copy / "results"
    quality = pd.read_csv(results / "datamodels/digits/fit_quality.csv")
    assert set(quality.points) == {"forget", "retain", "val"} and quality.n_holdout_models.eq(6).all()
    assert set(quality.group_size) == {1, 10, 100} and (quality.estimator == "ridge_rescaled").all()  # 26/300
    assert (results / "report/pool_summary.html").exists()  # the fit-quality table is in the report
    ulira = pd.read_csv(results / "ulira_summary.csv").set_index("method")
    assert set(ulira.index) == {"do_nothing", "oracle"} and (ulira.n_runs == 64).all()
    assert ulira.accuracy_low.le(ulira.accuracy_mean).all() and ulira.accuracy_mean.le(ulira.accuracy_high).all()
    epsilon = pd.read_csv(results / "epsilon_summary.csv")
    assert {"forget_score", "final_score"} <= set(epsilon.columns)
    table = pd.read_csv(results / "klom_summary.csv")
    assert {"dm_direct", "dm_matching"} <= set(table.method) and set(table.forget_set.astype(str)) == {"class3", "pc1"}
    assert (table.p95_low <= table.p95_high).all()
    pc1 = np.load(results.parent / DIGITS.forget_set("pc1"))
    assert pc1.dtype == np.int64 and len(pc1) == 10


def test_families_of_different_sizes_build_the_dag(workflow_copy):
    """More held-out oracle shards than base-model shards, and a selection sample of another size: the oracle
    draw's seeds come from the oracle family (indexing the base shards failed to build the DAG)."""
    config = tiny_config(workflow_copy)
    config.update(n_models=2, n_holdout_oracles=6, models_per_job=2, selection={"n_models": 3},
                  forget_sets=config["forget_sets"][:1], methods={"do_nothing": None, "oracle": None})
    jobs = planned_jobs(snakemake(workflow_copy, "-n", "--configfile", write_config(workflow_copy, config)))
    assert jobs["unlearn"] == 1 + 3  # do_nothing on the base shard; the oracle draw on 3 held-out shards
    assert jobs["train_oracle"] == 1 + 3  # scored and held-out only: nothing is chosen, no selection oracles
    assert "select_run" not in jobs
