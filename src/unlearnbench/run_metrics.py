"""Per-run metrics beside KLOM, by name (the NeurIPS'23 challenge ε is the first).

A run's ``score_klom`` job computes each metric at every snapshot of the report sample (the headline shows
them at the reported runs; the selection sample ranks by KLOM only) into a table of its own beside the run's
``stats.csv``: ``<name>.csv``, the run's identity, ``epoch``, then the metric's ``columns``. ``summarize``
stacks each into ``results/<name>_summary.csv`` (:func:`unlearnbench.layout.run_metric_summary`), and the
report shows that as an optional table titled ``title`` while the metric is on: its config section ``<name>``
is present and neither false nor ``{enabled: false}``. The section's other keys are the metric's options,
passed to its function as keywords (their schema and defaults: ``workflow/schemas/config.schema.yaml``).

A new per-run metric is its function ``(snapshot, **options) -> dict`` (one row: its ``columns``; the
snapshot is a :class:`unlearnbench.scoring.ScoredSnapshot`), one line in :data:`RUN_METRICS`, and its config
section in the schema. This module imports nothing heavy: the workflow reads it at every parse.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from . import registry


@dataclass(frozen=True)
class RunMetric:
    target: str  # "module:function": (snapshot: scoring.ScoredSnapshot, **options) -> dict of `columns`
    columns: tuple[str, ...]  # of its table, after the run's identity and `epoch`
    title: str  # of its table in summary.md and the report


RUN_METRICS: dict[str, RunMetric] = {
    "epsilon": RunMetric("unlearnbench.scoring:epsilon_row",
                         ("n_forget", "epsilon_mean", "epsilon_max", "forget_score", "final_score"), "epsilon"),
}


def summary_key(name: str) -> str:
    """The name under which ``summarize`` gets a metric's summary file (its tables come under ``name``)."""
    return f"{name}_summary"


def section_on(config: Mapping, name: str) -> bool:
    """Whether the config section ``name`` turns its table on: present, and neither false nor ``{enabled: false}``."""
    section = config.get(name)
    return bool(section) and not (isinstance(section, Mapping) and section.get("enabled") is False)


def options(config: Mapping, sample_kind: str) -> dict[str, dict | None]:
    """Per metric, the options a score of a ``sample_kind`` sample computes it with, or None where it is not
    computed (the selection sample, or a metric that is off)."""
    return {name: ({k: v for k, v in config[name].items() if k != "enabled"}
                   if sample_kind == "report" and section_on(config, name) else None)
            for name in RUN_METRICS}


def compute(name: str, snapshot, options: dict) -> dict:
    """One row of metric ``name`` at ``snapshot``."""
    return registry.load(RUN_METRICS[name].target)(snapshot, **options)
