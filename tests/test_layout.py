"""unlearnbench.layout is the one owner of paths: rules name none themselves, logs and benchmarks derive from
the rule and its output's wildcards."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from unlearnbench import layout
from unlearnbench.layout import Layout

REPO = Path(__file__).resolve().parents[1]
WORKFLOW_FILES = sorted((REPO / "workflow/rules").glob("*.smk")) + [REPO / "Snakefile"]
PATHS = Layout("digits")


def _templates(paths: Layout) -> dict[str, str]:
    return {
        "splits": paths.splits, "forget_set": paths.forget_set(), "download": paths.downloaded_forget_set(),
        "weights": paths.weights(), "oracle_weights": paths.weights(layout.oracle_family()),
        "margins": paths.margins(), "unlearned": paths.unlearned(), "scores": paths.scores("stats.csv"),
        "selected": paths.selected(), "fit": paths.datamodel_fit, "quality": paths.datamodel_quality,
        "effect": paths.datamodel_effect(), "requests": paths.ulira_requests, "ulira_runs": paths.ulira_runs(),
        "ulira_scores": paths.ulira_scores(), "summary": layout.KLOM_SUMMARY, "summary_md": layout.SUMMARY_MD,
        "extra_table": layout.extra_table_html(), "figure": layout.figure("margins", "{forget_set}"),
    }


@pytest.mark.parametrize("path", sorted(WORKFLOW_FILES), ids=lambda p: p.name)
def test_no_rule_spells_a_results_or_logs_path(path):
    literals = re.findall(r"""["'](?:results|logs)/[^"']*["']""", path.read_text())
    assert not literals, f"{path.name} names paths itself (use unlearnbench.layout): {literals}"


def test_every_log_and_benchmark_is_derived_from_its_own_rule_name():
    text = "\n".join(p.read_text() for p in WORKFLOW_FILES)
    rules = re.findall(r"^\s*(?:rule|checkpoint) (\w+):\n(.*?)(?=^\s*(?:rule|checkpoint) \w+:|\Z)", text,
                       re.MULTILINE | re.DOTALL)
    logged = 0
    for name, body in rules:
        if name == "all":  # the only rule without outputs
            continue
        for directive in ("log", "benchmark"):
            match = re.search(rf"^\s*{directive}:\s*\n\s*PATHS\.(\w+)\(\s*\"(\w+)\"", body, re.MULTILINE)
            if directive == "log" or match or re.search(rf"^\s*{directive}:", body, re.MULTILINE):
                assert match and match.groups() == (directive, name), f"rule {name}: its {directive} is not " \
                    f"PATHS.{directive}({name!r}, ...)"
                logged += 1
    assert logged > 30  # every rule has a log, the heavy ones a benchmark


def test_the_data_set_is_a_fixed_path_part_not_a_wildcard():
    for name, template in _templates(Layout("cifar10")).items():
        assert "{dataset}" not in template, name
    assert PATHS.weights("base", 3) == "results/weights/digits/base/shard~3.safetensors"
    assert PATHS.weights("base") == "results/weights/digits/base/shard~{shard}.safetensors"
    assert PATHS.forget_set("1") == "results/forget_sets/digits/forget_set~1.npy"  # forget_set~<id> everywhere
    assert PATHS.downloaded_forget_set("7") == "results/downloads/digits/forget_set~7.npy"


def test_templates_fill_in_to_the_concrete_paths():
    values = {"family": "pool", "shard": 2, "method": "scrub", "run": "lr~0.1", "forget_set": "class3",
              "sample": "selection", "table": "ulira"}
    assert PATHS.unlearned().format(**values) == PATHS.unlearned("scrub", "lr~0.1", "class3", "selection", 2)
    assert PATHS.scores("klom.npz").format(**values) == PATHS.scores("klom.npz", "scrub", "lr~0.1", "class3",
                                                                      "selection")
    assert PATHS.margins().format(**values) == PATHS.margins("pool", 2)


def test_one_spelling_of_the_oracle_family():
    assert layout.oracle_family("1") == "oracle/forget_set~1"
    assert PATHS.margins(layout.oracle_family()).format(forget_set="x-1", shard=0) == \
        PATHS.margins(layout.oracle_family("x-1"), 0)
    for family in ("base", "pool", layout.oracle_family("class3"), layout.oracle_family("12")):
        assert re.fullmatch(layout.FAMILY_PATTERN, family)
    assert not re.fullmatch(layout.FAMILY_PATTERN, "oracle/forget_set_1")


def test_logs_and_benchmarks_keep_the_output_wildcards():
    assert PATHS.log("unlearn", PATHS.unlearned()) == \
        "logs/unlearn/digits/{method}/{run}/forget_set~{forget_set}/{sample}/shard~{shard}.log"
    assert PATHS.benchmark("train_oracle", PATHS.weights(layout.oracle_family())) == \
        "results/benchmarks/train_oracle/digits/forget_set~{forget_set}/shard~{shard}.tsv"
    assert PATHS.log("compute_margins", PATHS.margins()) == "logs/compute_margins/digits/{family}/shard~{shard}.log"
    assert PATHS.log("score_klom", PATHS.scores("stats.csv")) == \
        "logs/score_klom/digits/{method}/{run}/forget_set~{forget_set}/{sample}.log"
    assert PATHS.log("prepare_dataset", PATHS.splits) == "logs/prepare_dataset/digits.log"
    assert PATHS.log("summarize", layout.KLOM_SUMMARY) == "logs/summarize.log"
    assert PATHS.log("report_tables", layout.SUMMARY_MD) == "logs/report/report_tables.log"
    assert PATHS.log("plot_tradeoff", layout.figure("tradeoff", "{forget_set}")) == \
        "logs/report/plot_tradeoff/forget_set~{forget_set}.log"
    assert PATHS.log("report_extra_table", layout.extra_table_html()) == "logs/report/report_extra_table/{table}.log"
    for name, template in _templates(PATHS).items():  # a job's log names every wildcard of its output
        wildcards = set(re.findall(r"\{(\w+)\}", template))
        assert set(re.findall(r"\{(\w+)\}", PATHS.log("r", template))) == wildcards, name
        assert set(re.findall(r"\{(\w+)\}", PATHS.benchmark("r", template))) == wildcards, name
