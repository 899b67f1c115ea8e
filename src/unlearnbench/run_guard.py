"""A run that ends with jobs it never started has failed, whatever Snakemake's exit status says.

Snakemake's scheduler can run out of ready jobs before every job of the DAG has run: its issue #823
("checkpoint: pipeline finishing early", https://github.com/snakemake/snakemake/issues/823), which its
maintainers trace to checkpoints combined with group jobs. Without ``--keep-going`` Snakemake then reports
the jobs left and fails; with ``--keep-going`` (set by this workflow's local and slurm profiles) it skips
that check and exits 0, and the summary is simply missing. The Snakefile's ``onsuccess`` asks
:func:`jobs_left` and fails the run, naming them; the report stage is kept out of group jobs
(``workflow/rules/report.smk``) so that it does not happen.
"""

from __future__ import annotations


def jobs_left(dag) -> list[str]:
    """``rule: outputs`` of every job the DAG still needs to run and that has not finished, sorted."""
    return sorted(f"{job.rule.name}: {', '.join(map(str, job.output))}" for job in dag.needrun_jobs())


def stalled_message(left: list[str]) -> str:
    shown = "\n".join(f"  - {job}" for job in left[:20])
    more = f"\n  ... and {len(left) - 20} more" if len(left) > 20 else ""
    return (
        f"Snakemake stopped with {len(left)} job(s) never run (snakemake issue #823; with --keep-going it "
        f"would have exited 0):\n{shown}{more}\nRun the same command again: it starts from the jobs left."
    )
