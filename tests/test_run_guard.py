"""A run Snakemake ends with jobs never run fails, naming them (unlearnbench.run_guard)."""

from __future__ import annotations

from types import SimpleNamespace

from unlearnbench.run_guard import jobs_left, stalled_message


class FakeDag:
    """The one thing the guard asks of Snakemake's DAG: the jobs it still needs, finished ones left out."""

    def __init__(self, needed, finished):
        self.needed, self.finished = needed, finished

    def needrun_jobs(self):
        return (job for job in self.needed if job not in self.finished)


def job(rule, *outputs):
    return SimpleNamespace(rule=SimpleNamespace(name=rule), output=list(outputs))


def test_a_finished_run_leaves_nothing():
    jobs = [job("summarize", "results/klom_summary.csv"), job("all")]
    assert jobs_left(FakeDag(jobs, finished=jobs)) == []


def test_jobs_never_run_are_named_with_their_outputs():
    summarize = job("summarize", "results/klom_summary.csv", "results/klom_summary.parquet")
    plot = job("plot_margins", "results/figures/margins_forget_set~1.png")
    done = job("score_klom", "results/klom/x/stats.csv")
    left = jobs_left(FakeDag([summarize, done, plot], finished=[done]))
    assert left == ["plot_margins: results/figures/margins_forget_set~1.png",
                    "summarize: results/klom_summary.csv, results/klom_summary.parquet"]
    message = stalled_message(left)
    assert "2 job(s) never run" in message and "#823" in message and left[1] in message


def test_a_long_list_is_cut():
    left = [f"unlearn: shard~{i}.npz" for i in range(25)]
    message = stalled_message(left)
    assert "25 job(s)" in message and "shard~19.npz" in message and "shard~20.npz" not in message
    assert "and 5 more" in message


def test_the_snakefile_checks_before_it_reports_success():
    from conftest import REPO

    onsuccess = (REPO / "Snakefile").read_text().split("onsuccess:", 1)[1].split("\n\n\n")[0]
    assert onsuccess.index("fail_if_jobs_left(workflow.dag)") < onsuccess.index("print_summary")
