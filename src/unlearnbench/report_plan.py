"""What the report stage of the workflow reads and writes (used by ``workflow/rules/report.smk``).

Plain functions of the config and the path templates, importable without torch or matplotlib (the
Snakefile imports this at every parse).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

FIGURES = "results/figures"
SUMMARY_MD = "results/summary.md"
BEST_RUNS_HTML = "results/report/best_runs.html"
SUMMARY_HTML = "results/report/klom_summary.html"
EXTRA_TABLE_HTML = "results/report/{table}_summary.html"
PER_FORGET_SET_FIGURES = ("tradeoff", "klom_epochs", "margins")

# Optional tables written by other stages, shown when their config section is present (and neither
# false nor ``{enabled: false}``): config section -> (table, title in summary.md and the report);
# ``{dataset}`` in a path stands for the configured data set.
OPTIONAL_TABLES: dict[str, tuple[str, str]] = {
    "ulira": ("results/ulira_summary.csv", "U-LiRA"),
    "epsilon": ("results/epsilon_summary.csv", "epsilon"),
    "pool": ("results/datamodels/{dataset}/fit_quality.csv", "datamodel fit quality"),
}


def enabled_optional_tables(config: Mapping) -> dict[str, tuple[str, str]]:
    """``{name: (table path, title)}`` of the optional tables this config produces."""
    enabled = {}
    for name, (path, title) in OPTIONAL_TABLES.items():
        section = config.get(name)
        if section and not (isinstance(section, Mapping) and section.get("enabled") is False):
            enabled[name] = (path.format(dataset=config.get("dataset")), title)
    return enabled


def grid_points(method_runs: Mapping[str, Mapping]) -> list[tuple[str, str]]:
    """(method, run) of every grid point (every forget set has all of them)."""
    return [(m, r) for m, runs in method_runs.items() for r in runs]


def run_keys(method_runs: Mapping[str, Mapping]) -> list[dict[str, str]]:
    """``{method, run}`` per grid point, parallel to :func:`klom_paths`."""
    return [{"method": m, "run": r} for m, r in grid_points(method_runs)]


def klom_paths(template: str, dataset: str, method_runs: Mapping[str, Mapping], forget_set: str) -> list[str]:
    """klom.npz of every grid point of one forget set (``template``: ``.../klom.npz`` with wildcards)."""
    return [template.format(dataset=dataset, method=m, run=r, forget_set=forget_set)
            for m, r in grid_points(method_runs)]


def unlearned_keys(method_runs: Mapping[str, Mapping], shards: Callable[[str], Iterable[int]]) -> list[dict[str, str]]:
    """``{method, run}`` per unlearned shard, parallel to :func:`unlearned_paths`."""
    return [{"method": m, "run": r} for m, r in grid_points(method_runs) for _ in shards(m)]


def unlearned_paths(template: str, dataset: str, method_runs: Mapping[str, Mapping], forget_set: str,
                    shards: Callable[[str], Iterable[int]]) -> list[str]:
    """Unlearned-margin shards of every grid point of one forget set (``shards(method)``: shard ids)."""
    return [template.format(dataset=dataset, method=m, run=r, forget_set=forget_set, shard=s)
            for m, r in grid_points(method_runs) for s in shards(m)]


def figure(kind: str, forget_set: str | None = None) -> str:
    """Path of a figure: ``results/figures/<kind>[_forget_set~<id>].png`` (``{forget_set}`` allowed)."""
    return f"{FIGURES}/{kind}.png" if forget_set is None else f"{FIGURES}/{kind}_forget_set~{forget_set}.png"


def targets(forget_sets: Iterable[str], config: Mapping) -> list[str]:
    """Every file the report shows; ``rule all`` asks for them."""
    return [
        SUMMARY_MD,
        BEST_RUNS_HTML,
        SUMMARY_HTML,
        figure("p95_bars"),
        *[figure(kind, fs) for fs in forget_sets for kind in PER_FORGET_SET_FIGURES],
        *[EXTRA_TABLE_HTML.format(table=name) for name in enabled_optional_tables(config)],
    ]
