# unlearnbench: forget sets -> base and oracle models -> margins -> unlearning runs -> KLOM -> summary.
# Stages live in workflow/rules/, one per file; the library in src/unlearnbench does the work.
import os
import sys

# The library lives in src/: importable here and in every job (also under --sdm conda and on Slurm).
SRC = os.path.join(workflow.basedir, "src")
sys.path.insert(0, SRC)
os.environ.update(
    PYTHONPATH=os.pathsep.join(filter(None, [SRC, os.getenv("PYTHONPATH")]))
)

from unlearnbench import rescheduling
from unlearnbench.config import ConfigError, validate

# Snakemake's scheduler starts a chain of wake-ups per finished job; keep one (unlearnbench.rescheduling)
rescheduling.install()

# The embedded default, unless a scenario is given with --configfile (a scenario is complete on its
# own: no silent merge with the default's methods or forget sets). --config k=v still overrides.
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


try:
    # plug-ins are imported once, by the main process (jobs import their own method's module anyway)
    validate(
        config,
        os.path.join(workflow.basedir, "workflow/schemas/config.schema.yaml"),
        import_plugins=workflow.is_main_process,
    )
except ConfigError as err:
    sys.exit(f"Invalid config: {err}")


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/training.smk"
include: "workflow/rules/margins.smk"
include: "workflow/rules/unlearning.smk"
include: "workflow/rules/scoring.smk"
include: "workflow/rules/selection.smk"
include: "workflow/rules/pool.smk"
include: "workflow/rules/import.smk"
include: "workflow/rules/report.smk"


report: "workflow/report/workflow.rst"


rule all:
    default_target: True
    input:
        get_final_outputs(),


onstart:
    # temp files of writers killed by SIGKILL (never one a live job holds: see storage.sweep_stale_temp_files)
    from unlearnbench.storage import sweep_stale_temp_files

    for path in sweep_stale_temp_files(layout.RESULTS):
        print(f"removed stale temp file {path}")
    start_warm_process()  # local runs: jobs fork one process that imported torch once (unlearnbench.warm)


onsuccess:
    stop_warm_process()
    # a run Snakemake ended with jobs never run (snakemake issue #823) fails: unlearnbench.run_guard
    fail_if_jobs_left(workflow.dag)
    # only when this run's DAG holds the summary of this config (not for other targets, which may be
    # of another config than the summary on disk)
    summary = layout.KLOM_SUMMARY
    if made_the_summary(workflow.dag) and os.path.exists(summary):
        print_summary(summary)
        print(
            f"\nReported run per method and forget set: {layout.SUMMARY_MD} (figures: {layout.FIGURES}/; "
            "HTML report: unlearnbench report)"
        )


onerror:
    stop_warm_process()
