"""Where every file of a run lives: artefacts, summaries, report, logs and benchmarks (the only owner of paths).

In the style of PyPSA-Eur's path providers (``resources()``, ``logs()``, ``benchmarks()`` in its
``scripts/_helpers.py``): rules, the library and the tests ask this module for a path instead of spelling it.

- Run-wide files (summaries, report, figures, the Hub manifest) are module constants.
- A data set's artefacts come from a :class:`Layout` of that data set: the data set is a fixed part of the
  path (``results/<kind>/<dataset>/...``), not a wildcard (a run has one data set). Each method returns a
  concrete path when given values and a Snakemake template when not: ``Layout("digits").weights("base")``
  is ``results/weights/digits/base/shard~{shard}.safetensors``, ``.weights("base", 3)`` its shard 3.
- A rule's log and benchmark derive from its name and its output's wildcards (:meth:`Layout.log`,
  :meth:`Layout.benchmark`): ``logs/<rule>/<dataset>/<the output's wildcard parts>.log`` (the data set only
  for its own artefacts; the report's rules under ``logs/report/``).

Importable without torch or Snakemake (the Snakefile imports it at every parse).
"""

from __future__ import annotations

import re

RESULTS = "results"
LOGS = "logs"
BENCHMARKS = f"{RESULTS}/benchmarks"

# run-wide outputs (every data set of a run writes the same ones: a run has one data set)
KLOM_SUMMARY = f"{RESULTS}/klom_summary.csv"
KLOM_SUMMARY_PARQUET = f"{RESULTS}/klom_summary.parquet"
ULIRA_SUMMARY = f"{RESULTS}/ulira_summary.csv"

HUB_MANIFEST = f"{RESULTS}/hub/manifest.json"


def run_metric_summary(name: str) -> str:
    """The summary of a per-run metric (:mod:`unlearnbench.run_metrics`), e.g. ``results/epsilon_summary.csv``."""
    return f"{RESULTS}/{name}_summary.csv"


# the report (workflow/rules/report.smk; `unlearnbench report`)
SUMMARY_MD = f"{RESULTS}/summary.md"
FIGURES = f"{RESULTS}/figures"
REPORT = f"{RESULTS}/report"
BEST_RUNS_HTML = f"{REPORT}/best_runs.html"
SUMMARY_HTML = f"{REPORT}/klom_summary.html"
REPORT_HTML = f"{RESULTS}/report.html"


def extra_table_html(table: str = "{table}") -> str:
    """The HTML page of an optional table (``ulira``, ``epsilon``, ``pool``)."""
    return f"{REPORT}/{table}_summary.html"


def figure(kind: str, forget_set: str | None = None) -> str:
    """Path of a figure: ``results/figures/<kind>[_forget_set~<id>].png`` (``{forget_set}`` allowed)."""
    return f"{FIGURES}/{kind}.png" if forget_set is None else f"{FIGURES}/{kind}_forget_set~{forget_set}.png"


# model families and wildcards ---------------------------------------------------------------------------

FORGET_SET_ID = "[A-Za-z0-9-]+"  # the ids a forget set may have (path-safe)


def forget_set_part(forget_set: str = "{forget_set}") -> str:
    """The path part naming a forget set, in every artefact of it."""
    return f"forget_set~{forget_set}"


def oracle_family(forget_set: str = "{forget_set}") -> str:
    """The ``{family}`` of the oracles retrained without forget set ``forget_set`` (``base`` and ``pool`` are
    the others)."""
    return f"oracle/{forget_set_part(forget_set)}"


FAMILY_PATTERN = f"base|pool|{oracle_family(FORGET_SET_ID)}"

def _is_report(path: str) -> bool:
    """Whether ``path`` is part of the report (its rules' logs are kept together, under ``logs/report/``)."""
    return path == SUMMARY_MD or path.startswith((f"{REPORT}/", f"{FIGURES}/"))


# a wildcard written ``name~{name}`` (kept with its name in logs) or ``{name}``
_WILDCARD = re.compile(r"(\w+)~\{\1\}|\{\w+\}")


class Layout:
    """Paths of one data set's artefacts (see the module docstring)."""

    def __init__(self, dataset: str):
        self.dataset = dataset

    def _path(self, kind: str, *parts: str) -> str:
        return "/".join((RESULTS, kind, self.dataset, *parts))

    # data and forget sets
    @property
    def splits(self) -> str:
        return self._path("data", "splits.npz")

    def forget_set(self, forget_set: str = "{forget_set}") -> str:
        return self._path("forget_sets", f"{forget_set_part(forget_set)}.npy")

    def downloaded_forget_set(self, forget_set: str = "{forget_set}") -> str:
        """A forget set's file downloaded from its ``url`` (the user's own ``path`` is never an output)."""
        return self._path("downloads", f"{forget_set_part(forget_set)}.npy")

    # models and their margins, by family
    def weights(self, family: str = "{family}", shard: int | str = "{shard}") -> str:
        return self._path("weights", family, f"shard~{shard}.safetensors")

    def margins(self, family: str = "{family}", shard: int | str = "{shard}") -> str:
        return self._path("margins", family, f"shard~{shard}.npz")

    # unlearning, its scores and the selection
    def unlearned(self, method: str = "{method}", run: str = "{run}", forget_set: str = "{forget_set}",
                  sample: str = "{sample}", shard: int | str = "{shard}") -> str:
        """{sample}: "selection" (every run, selection models vs selection oracles) or "report_epoch~<e>" (the
        reported run up to its snapshot e, report models vs scored oracles); see unlearnbench.selection."""
        return self._path("unlearn", method, run, forget_set_part(forget_set), sample, f"shard~{shard}.npz")

    def scores(self, name: str, method: str = "{method}", run: str = "{run}", forget_set: str = "{forget_set}",
               sample: str = "{sample}") -> str:
        """One file of a KLOM score: ``klom.npz``, ``stats.csv`` or a per-run metric's table (``epsilon.csv``)."""
        return self._path("klom", method, run, forget_set_part(forget_set), sample, name)

    def selected(self, forget_set: str = "{forget_set}") -> str:
        return self._path("selection", f"{forget_set_part(forget_set)}.json")

    # the pool: datamodels and U-LiRA
    @property
    def datamodel_fit(self) -> str:
        return self._path("datamodels", "fit.npz")

    @property
    def datamodel_quality(self) -> str:
        return self._path("datamodels", "fit_quality.csv")

    def datamodel_effect(self, forget_set: str = "{forget_set}") -> str:
        return self._path("datamodels", forget_set_part(forget_set), "effect.npz")

    @property
    def ulira_requests(self) -> str:
        return self._path("ulira", "requests.npz")

    def ulira_runs(self, method: str = "{method}", run: str = "{run}", shard: int | str = "{shard}") -> str:
        return self._path("ulira", method, run, f"shard~{shard}.npz")

    def ulira_scores(self, method: str = "{method}", run: str = "{run}") -> str:
        return self._path("ulira", method, run, "scores.csv")

    # logs and benchmarks
    def _job_key(self, rule: str, output: str) -> str:
        """``[report/]<rule>[/<dataset>][/<wildcard parts of output>]``: the data set when the output is one of its
        artefacts, then each wildcard of the output's path (``name~{name}`` or ``{name}``), folder by folder."""
        parts = output.split("/")
        key = ["report", rule] if _is_report(output) else [rule]
        if len(parts) > 3 and parts[0] == RESULTS and parts[2] == self.dataset:
            key.append(self.dataset)
        for part in parts:
            key += [m.group(0) for m in _WILDCARD.finditer(part)]
        return "/".join(key)

    def log(self, rule: str, output: str) -> str:
        """The log of a rule's jobs, one per value of ``output``'s wildcards: ``logs/<key>.log``."""
        return f"{LOGS}/{self._job_key(rule, output)}.log"

    def benchmark(self, rule: str, output: str) -> str:
        """The benchmark of a rule's jobs: ``results/benchmarks/<key>.tsv`` (see :meth:`log`)."""
        return f"{BENCHMARKS}/{self._job_key(rule, output)}.tsv"
