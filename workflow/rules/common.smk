# Helpers shared by the rules: config lookups and input functions (getters are named get_*).

import functools
import re

from unlearnbench import fingerprint, layout, method_inputs, plan, run_metrics
from unlearnbench.config import dataset_spec
from unlearnbench.content_digests import DigestCache
from unlearnbench.device import device_request, gpus_per_job
from unlearnbench.identity import Identity
from unlearnbench import report_plan, selection
from unlearnbench.methods import lookup
from unlearnbench.run_metrics import RUN_METRICS

DATASET = config["dataset"]
DATA = dataset_spec(config)
FORGET_SETS = {str(fs["id"]): fs for fs in config["forget_sets"]}
DESCRIPTIONS = {fs: entry.get("description", "") for fs, entry in FORGET_SETS.items()}
RUNS = plan.method_runs(config["methods"])
ULIRA = config["ulira"]
ULIRA_RUNS = plan.method_runs(ULIRA["methods"]) if ULIRA else {}
POOL_SHARDS = plan.pool_shards(config)
RES = config["resources"]
# content digests of the user's own input files (see get_forget_set_content)
USER_FILES = DigestCache()
# `gpu: auto` -> 0 or 1 GPU per torch job, decided once (unlearnbench.device.gpus_per_job)
RES["gpu"] = gpus_per_job(
    RES["gpu"],
    RES["device"],
    workflow.global_resources.get("gpu").value,
    workflow.is_main_process,
)

# every path of the run (unlearnbench.layout); the data set is a fixed path part, not a wildcard
PATHS = layout.Layout(DATASET)
SPLITS = PATHS.splits
FORGET_SET = PATHS.forget_set()
# per-run metrics (unlearnbench.run_metrics): each one's table in every KLOM score, and its summary
RUN_METRIC_TABLES = {name: PATHS.scores(f"{name}.csv") for name in RUN_METRICS}
RUN_METRIC_SUMMARIES = {
    run_metrics.summary_key(name): layout.run_metric_summary(name)
    for name in RUN_METRICS
}
# an attribution matrix replacing the pool fit (datamodels.import), or None
DATAMODELS_IMPORT = config["datamodels"]["import"]
# estimator and penalty reach a job only when it fits the pool: with an import they change nothing
DATAMODEL_ESTIMATOR = None if DATAMODELS_IMPORT else config["datamodels"]["estimator"]
DATAMODEL_L2 = None if DATAMODELS_IMPORT else config["datamodels"]["l2"]


wildcard_constraints:
    shard=r"\d+",
    forget_set=layout.FORGET_SET_ID,
    method="[A-Za-z][A-Za-z0-9_]*",
    run="[^/]+",
    sample=selection.SAMPLE_PATTERN,
    family=layout.FAMILY_PATTERN,


def id_pattern(ids):
    """A wildcard constraint matching exactly these ids (forget sets, shards)."""
    return "|".join(re.escape(str(i)) for i in ids)


# A plug-in method must be found before any job runs (located, not imported: see fingerprint.locate).
for name, target in config["plugins"].items():
    if problem := fingerprint.missing_target(target):
        sys.exit(f"Invalid config: config key plugins.{name}: {problem}")


def get_code(script, per_method=False):
    """The `code` param of a rule: a digest of the code its job runs (unlearnbench.fingerprint), so a
    library change reruns exactly the jobs whose code changed. `per_method`: the job runs the method
    of its {method} wildcard, whose own code counts too."""
    path = os.path.join(workflow.basedir, "workflow", "scripts", script)
    if per_method:
        return lambda w: _code_fingerprint(
            path, lookup(w.method, config["plugins"]).target
        )
    return lambda w: _code_fingerprint(path)


@functools.cache
def _code_fingerprint(path, target=None):
    return fingerprint.code_fingerprint(path, (target,) if target else ())


def get_method_plugin(wildcards):
    """The `plugins` entry of the job's own method ({} for a built-in one): adding a plug-in to the
    config changes no other job's params."""
    plugins = config["plugins"]
    return {w: plugins[w] for w in [wildcards.method] if w in plugins}


def get_identity(wildcards):
    """What the job's artefact says it is (unlearnbench.identity): data set, model and the job's own
    method, run, forget set and sample; summaries read it from the files."""
    return Identity.of_job(DATASET, config["model"], dict(wildcards.items())).fields()


def get_device(wildcards, resources):
    """What a torch job runs on: its `gpu` resource as scheduled (set-resources included). Derived
    from resources, so not among the params snakemake compares: a device change reruns nothing.
    """
    return device_request(resources.gpu, RES["device"], RES["jobs_per_gpu"])


def get_split_file(wildcards):
    """A user's split file (living17 in the published index space) is an input: editing it rebuilds the splits."""
    split_file = config["data"]["split_file"]
    return {"split_file": split_file} if split_file else {}


def get_forget_set_entry(wildcards):
    return FORGET_SETS[wildcards.forget_set]


def get_forget_set_seed(wildcards):
    return plan.forget_set_seed(FORGET_SETS[wildcards.forget_set])


def get_forget_set_content(wildcards):
    """The content digest of the user's own forget-set file (`path`): a replaced file reruns the job even
    when it is older (cp -p). "missing" while a download stands in for it (a rule output, which Snakemake
    tracks itself); a file put there later then reruns the job, as it replaces the download.
    """
    entry = FORGET_SETS[wildcards.forget_set]
    if entry["kind"] != "file" or not entry.get("path"):
        return None
    return USER_FILES.digests([entry["path"]])[0]


def get_imported_state_dicts(wildcards):
    """The published state dicts of one base shard (`import.base_weights`, `{index}` = model index)."""
    pattern = config["import"]["base_weights"]
    return [pattern.format(index=i) for i in range(*get_model_range(wildcards, "base"))]


def get_forget_set_input(wildcards):
    """A class set needs the labels, a file set the user's file (or, when it has a url and the user's
    file does not exist, its download), an attribution set the datamodels."""
    entry = FORGET_SETS[wildcards.forget_set]
    if entry["kind"] == "class":
        return {"splits": SPLITS}
    if entry["kind"] == "file":
        if entry.get("url") and not (
            entry.get("path") and os.path.exists(entry["path"])
        ):
            return {"user_file": PATHS.downloaded_forget_set(wildcards.forget_set)}
        return {"user_file": entry["path"]}
    if entry["kind"] == "attribution_pc":  # the pool's fit, or an imported matrix
        return {
            "datamodels": (
                DATAMODELS_IMPORT["weights"]
                if DATAMODELS_IMPORT
                else PATHS.datamodel_fit
            )
        }
    return {}


def get_pool_margins(wildcards=None):
    return [PATHS.margins("pool", s) for s in range(len(POOL_SHARDS))]


def get_imported_datamodels(wildcards):
    """The imported attribution files: inputs, so that a changed file reruns what used it."""
    spec = DATAMODELS_IMPORT or {}
    return {k: spec[k] for k in ("weights", "logit_weights") if spec.get(k)}


def get_datamodel_effect_input(wildcards):
    inputs = {"forget_set": PATHS.forget_set(wildcards.forget_set)}
    if DATAMODELS_IMPORT:
        inputs |= get_imported_datamodels(wildcards) | {"splits": SPLITS}
    else:
        inputs["pool"] = get_pool_margins(wildcards)
    return inputs


def get_model_range(wildcards, family):
    return plan.model_range(config, family, wildcards.shard)


def get_base_seeds(wildcards):
    return plan.base_seeds(config, wildcards.shard)


def get_oracle_seeds(wildcards):
    return plan.oracle_seeds(config, wildcards.forget_set, wildcards.shard)


def get_pool_seeds(wildcards):
    return plan.pool_seeds(config, wildcards.shard)


def get_pool_mask_seed(wildcards):
    return plan.pool_mask_seed(config)


def get_unlearn_input(wildcards):
    """Inputs of one unlearning job: the base models and what the method's registry entry needs."""
    entry = lookup(wildcards.method, config["plugins"])
    return method_inputs.job_inputs(
        entry, PATHS, config, wildcards.forget_set, int(wildcards.shard)
    )


def get_unlearn_shards(method, sample="report"):
    return plan.unlearn_shards(config, method, sample)


def get_hyperparameters(wildcards):
    """The grid point's hyperparameters; a retraining from scratch also gets the training recipe."""
    hyperparameters = RUNS[wildcards.method][wildcards.run]
    if lookup(wildcards.method, config["plugins"]).kind == "retrain":
        return {**hyperparameters, "recipe": config["train"]}
    return hyperparameters


def get_snapshot_epochs(wildcards):
    """Every snapshot on the selection sample; on the report sample, only the reported one (the run stops there)."""
    kind, epoch = selection.parse_sample(wildcards.sample)
    if kind == "report":
        return [epoch]
    return plan.run_snapshot_epochs(
        config, wildcards.method, RUNS[wildcards.method][wildcards.run]
    )


def get_unlearn_seeds(w):
    return plan.unlearn_seeds(config, w.method, w.run, w.forget_set, w.shard)


def get_unlearned_shards(wildcards):
    kind, _ = selection.parse_sample(wildcards.sample)
    w = wildcards
    return [
        PATHS.unlearned(w.method, w.run, w.forget_set, w.sample, s)
        for s in get_unlearn_shards(w.method, kind)
    ]


def get_scored_oracle_margins(wildcards):
    """The oracles a sample is scored against: the selection oracles, or the scored oracles."""
    family = layout.oracle_family(wildcards.forget_set)
    sample = wildcards.get("sample")  # rules without one read the scored oracles
    kind = selection.parse_sample(sample)[0] if sample else "report"
    shards = (
        plan.selection_oracle_shards(config)
        if kind == "selection"
        else plan.scored_oracle_shards(config)
    )
    return [PATHS.margins(family, s) for s in shards]


def get_bootstrap(wildcards):
    """Intervals on the report sample only: selection compares point estimates."""
    kind, _ = selection.parse_sample(wildcards.sample)
    return (
        config["bootstrap"]
        if kind == "report"
        else {**config["bootstrap"], "n_resamples": 0}
    )


def get_run_metric_options(wildcards):
    """Per-run metrics (the challenge's ε, ...) on the report sample only (the headline shows them at the
    reported runs): per metric its options, or None."""
    kind, _ = selection.parse_sample(wildcards.sample)
    return run_metrics.options(config, kind)


# Selection: which run of a method is reported (unlearnbench.selection) -----------------------------


SELECTING = {m for m in RUNS if selection.selects(config, m)}


def selects(method):
    """Whether the method's reported run is chosen on the selection sample (it has a choice)."""
    return method in SELECTING


def get_selection_stats(wildcards):
    """Selection-sample scores of every run chosen from on a forget set: every grid point of a method
    that has a choice (each file names its run)."""
    return [
        PATHS.scores("stats.csv", m, run, wildcards.forget_set, "selection")
        for m in RUNS
        if selects(m)
        for run in RUNS[m]
    ]


def selected_run(method, forget_set):
    """(run, epoch) reported for a method on a forget set: chosen by the select_run checkpoint, or the
    only candidate. None for the retrain curve (every run is reported)."""
    if selects(method):
        path = checkpoints.select_run.get(forget_set=forget_set)
        chosen = {
            c["method"]: c for c in selection.read_selection(path.output.selection)
        }
        return chosen[method]["run"], chosen[method]["epoch"]
    options = selection.candidates(config, method)
    return options[0] if len(options) == 1 else None


def scored_runs(chosen=True):
    """(method, run, forget set, {sample}) of every KLOM score the summary collects; with chosen=False
    only those of the methods without a choice (known before any select_run has run)."""
    return [
        (m, run, fs, sample)
        for m in RUNS
        if chosen or not selects(m)
        for fs in FORGET_SETS
        for run, sample in selection.scored_runs(
            config, m, selected_run(m, fs) if selects(m) else None
        )
    ]


def score_paths(runs, name):
    """One file ``name`` (stats.csv, or a per-run metric's table) of each score in ``runs`` (from scored_runs)."""
    return [PATHS.scores(name, m, r, fs, sample) for m, r, fs, sample in runs]


def get_all_scores(wildcards, name):
    """One file ``name`` of every KLOM score the summary collects."""
    return score_paths(scored_runs(), name)


def get_run_metric_tables(wildcards):
    """Per per-run metric, its table of every KLOM score the summary collects."""
    runs = scored_runs()
    return {name: score_paths(runs, f"{name}.csv") for name in RUN_METRICS}


def get_selection_files(wildcards=None):
    """The select_run checkpoints' outputs (of the rule's forget set, when it has one)."""
    if not SELECTING:
        return []
    forget_sets = (
        [wildcards.forget_set] if hasattr(wildcards, "forget_set") else FORGET_SETS
    )
    return [PATHS.selected(fs) for fs in forget_sets]


def get_fixed_selections(wildcards=None):
    """The reported run of every method with a single candidate (nothing to select)."""
    return [
        {"method": m, "forget_set": fs, "run": run, "epoch": epoch}
        for m in RUNS
        if not selects(m)
        for fs in FORGET_SETS
        for run, epoch in [selected_run(m, fs) or (None, None)]
        if run is not None
    ]


def get_method_facts(wildcards=None):
    """Per method: its role (how tables and figures show it) and the pool cost it depends on."""
    pool = plan.pool_cost(config, DATA.n_train)
    return {
        m: {
            "role": lookup(m, config["plugins"]).role,
            "pool_cost": (
                pool
                if method_inputs.uses_pool(lookup(m, config["plugins"]).needs)
                else 0.0
            ),
        }
        for m in RUNS
    }


# Figures of the reported runs (report.smk) ---------------------------------------------------------


def reported_runs(forget_set, sample_chosen_on=False):
    """{method, run, sample} of each method's reported run on a forget set (the retrain curve left out):
    its report sample, or with sample_chosen_on the sample it was chosen on (its snapshots there).
    """
    runs = []
    for method in RUNS:
        chosen = selected_run(method, forget_set)
        if chosen is None:
            continue
        sample = selection.report_sample(chosen[1])
        if sample_chosen_on and selects(method):
            sample = "selection"
        runs.append({"method": method, "run": chosen[0], "sample": sample})
    return runs


def klom_epochs_files(wildcards):
    return report_plan.score_files(
        PATHS.scores("klom.npz"),
        DATASET,
        wildcards.forget_set,
        reported_runs(wildcards.forget_set, sample_chosen_on=True),
    )


def margins_score_files(wildcards):
    runs = reported_runs(wildcards.forget_set)
    return report_plan.score_files(
        PATHS.scores("klom.npz"), DATASET, wildcards.forget_set, runs
    )


def margins_shard_files(wildcards):
    return report_plan.shard_files(
        PATHS.unlearned(),
        DATASET,
        wildcards.forget_set,
        reported_runs(wildcards.forget_set),
        lambda method: get_unlearn_shards(method, "report"),
    )


def print_summary(path):
    """The short table shown when a run succeeds (the reported runs of results/summary.md)."""
    from unlearnbench.summary_md import console_summary

    print()
    print(console_summary(path))


WARM_PROCESS = []  # (process, socket path) of this run's warm process, when it has one


def start_warm_process():
    """Start the warm process of a plain local run (unlearnbench.warm); its jobs find it through the
    environment they inherit. Cluster jobs and jobs in another software environment run as they are.
    """
    from unlearnbench import warm

    deployment = {
        m.name.lower() for m in workflow.deployment_settings.deployment_method
    }
    mode = workflow.exec_mode.name.lower()
    if warm.wanted(RES["warm_start"], workflow.local_exec, mode, deployment):
        process, path = warm.start()
        WARM_PROCESS.append((process, path))
        os.environ[warm.ENV] = path


def stop_warm_process():
    from unlearnbench import warm

    while WARM_PROCESS:
        warm.stop(*WARM_PROCESS.pop())
    os.environ.pop(warm.ENV, None)


def fail_if_jobs_left(dag):
    """Fail a run that Snakemake ended with jobs never run (unlearnbench.run_guard)."""
    from snakemake.exceptions import WorkflowError
    from unlearnbench.run_guard import jobs_left, stalled_message

    left = jobs_left(dag)
    if left:
        raise WorkflowError(stalled_message(left))


def made_the_summary(dag):
    """Whether this run's DAG holds the summary (made or found up to date for *this* config): a run of
    other targets, maybe of another config, must not print a summary it did not check.
    """
    return any(job.rule.name == "summarize" for job in dag.jobs)


# U-LiRA -----------------------------------------------------------------------------------------


def get_ulira_hyperparameters(wildcards):
    return ULIRA_RUNS[wildcards.method][wildcards.run]


def get_ulira_snapshot_epochs(wildcards):
    return plan.snapshot_epochs(ULIRA["methods"], wildcards.method)


def get_ulira_seeds(w):
    return plan.ulira_seeds(config, w.method, w.run, w.shard)


def get_ulira_scores(wildcards=None):
    return [PATHS.ulira_scores(m, r) for m, runs in ULIRA_RUNS.items() for r in runs]


def unselected_scores():
    """Scores of the methods without a choice (every run reported directly). Named in `rule all`
    as well as by the summary: while a select_run checkpoint is to rerun, the summary's inputs are
    unknown, and without this a dry run (or `--summary`) would not show these jobs either.
    """
    return score_paths(scored_runs(chosen=False), "stats.csv")


def get_final_outputs():
    """Every final target, the inputs of the default target: the KLOM summary and each per-run metric's,
    the pool's products when there is a pool, and the report's tables and figures (report_plan).
    """
    outputs = [
        layout.KLOM_SUMMARY,
        layout.KLOM_SUMMARY_PARQUET,
        *RUN_METRIC_SUMMARIES.values(),
        *unselected_scores(),
    ]
    if POOL_SHARDS:
        outputs.append(PATHS.datamodel_quality)
    if ULIRA:
        outputs.append(layout.ULIRA_SUMMARY)
    return outputs + report_plan.targets(FORGET_SETS, config)
