"""What the report stage of the workflow reads and writes (used by ``workflow/rules/report.smk``).

Plain functions of the config and the path templates, importable without torch or matplotlib (the
Snakefile imports this at every parse). Every path comes from :mod:`unlearnbench.layout`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from . import layout
from .layout import BEST_RUNS_HTML, SUMMARY_HTML, SUMMARY_MD, extra_table_html, figure
from .run_metrics import RUN_METRICS, section_on

PER_FORGET_SET_FIGURES = ("tradeoff", "klom_epochs", "margins")

# Optional tables written by other stages, shown when their config section is present (and neither
# false nor ``{enabled: false}``): config section -> (table, title in summary.md and the report);
# ``{dataset}`` in a path stands for the configured data set.
OPTIONAL_TABLES: dict[str, tuple[str, str]] = {
    "ulira": (layout.ULIRA_SUMMARY, "U-LiRA"),
    **{name: (layout.run_metric_summary(name), metric.title) for name, metric in RUN_METRICS.items()},
    "pool": (layout.Layout("{dataset}").datamodel_quality, "datamodel fit quality"),
}


def enabled_optional_tables(config: Mapping) -> dict[str, tuple[str, str]]:
    """``{name: (table path, title)}`` of the optional tables this config produces."""
    return {name: (path.format(dataset=config.get("dataset")), title)
            for name, (path, title) in OPTIONAL_TABLES.items() if section_on(config, name)}


def score_files(template: str, dataset: str, forget_set: str, runs: Iterable[Mapping[str, str]]) -> list[str]:
    """A file of each score (``template``: ``.../klom.npz`` with wildcards) of ``runs`` (``{method, run,
    sample}``); each file names its own run (:mod:`unlearnbench.identity`)."""
    return [template.format(dataset=dataset, method=r["method"], run=r["run"], forget_set=forget_set,
                            sample=r["sample"]) for r in runs]


def shard_files(template: str, dataset: str, forget_set: str, runs: Iterable[Mapping[str, str]],
                shards: Callable[[str], Iterable[int]]) -> list[str]:
    """Unlearned-margin shards of ``runs`` (``{method, run, sample}``; ``shards(method)``: shard ids); each
    file names its own run (:mod:`unlearnbench.identity`)."""
    return [template.format(dataset=dataset, method=r["method"], run=r["run"], forget_set=forget_set,
                            sample=r["sample"], shard=shard) for r in runs for shard in shards(r["method"])]


def targets(forget_sets: Iterable[str], config: Mapping) -> list[str]:
    """Every file the report shows; ``rule all`` asks for them."""
    return [
        SUMMARY_MD,
        BEST_RUNS_HTML,
        SUMMARY_HTML,
        figure("p95_bars"),
        *[figure(kind, fs) for fs in forget_sets for kind in PER_FORGET_SET_FIGURES],
        *[extra_table_html(name) for name in enabled_optional_tables(config)],
    ]
