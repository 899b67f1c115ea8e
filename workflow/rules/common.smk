# Helpers shared by the rules: config lookups and input functions (getters are named get_*).

from unlearnbench import config as plan
from unlearnbench.data import get_spec
from unlearnbench.methods import lookup
from unlearnbench.seeds import derive_seed

DATASET = config["dataset"]
DATA = get_spec(DATASET)
FORGET_SETS = {str(fs["id"]): fs for fs in config["forget_sets"]}
RUNS = plan.method_runs(config)
BASE_SHARDS = plan.base_shards(config)
ORACLE_SHARDS = plan.oracle_shards(config)
RES = config["resources"]

SPLITS = f"results/data/{DATASET}/splits.npz"
FORGET_SET = "results/forget_sets/{dataset}/forget_set_{forget_set}.npy"
WEIGHTS = "results/weights/{dataset}/{family}/shard~{shard}.safetensors"
MARGINS = "results/margins/{dataset}/{family}/shard~{shard}.npz"
UNLEARNED = (
    "results/unlearn/{dataset}/{method}/{run}/forget_set~{forget_set}/shard~{shard}.npz"
)
SCORES = "results/klom/{dataset}/{method}/{run}/forget_set~{forget_set}"


wildcard_constraints:
    dataset="[a-z0-9_]+",
    shard=r"\d+",
    forget_set="[A-Za-z0-9-]+",
    method="[A-Za-z][A-Za-z0-9_]*",
    run="[^/]+",
    family=r"base|oracle/forget_set~[A-Za-z0-9-]+",


def oracle_family(forget_set):
    return f"oracle/forget_set~{forget_set}"


def get_forget_set_entry(wildcards):
    return FORGET_SETS[wildcards.forget_set]


def get_forget_set_seed(wildcards):
    return plan.forget_set_seed(FORGET_SETS[wildcards.forget_set])


def get_forget_set_input(wildcards):
    """A class forget set needs the labels; a file forget set depends on the user's file."""
    entry = FORGET_SETS[wildcards.forget_set]
    if entry["kind"] == "class":
        return {"splits": SPLITS}
    if entry["kind"] == "file":
        return {"user_file": entry["path"]}
    return {}


def get_model_range(wildcards, stage):
    shards = BASE_SHARDS if stage == "base" else ORACLE_SHARDS
    return shards[int(wildcards.shard)]


def get_base_seeds(wildcards):
    return [
        derive_seed("base", i, base=config["seed"])
        for i in range(*get_model_range(wildcards, "base"))
    ]


def get_oracle_seeds(wildcards):
    start, stop = get_model_range(wildcards, "oracle")
    return [
        derive_seed("oracle", wildcards.forget_set, i, base=config["seed"])
        for i in range(start, stop)
    ]


def get_unlearn_input(wildcards):
    """Inputs of one unlearning job: what the method's registry entry says it needs."""
    entry = lookup(wildcards.method, config["plugins"])
    family = oracle_family(wildcards.forget_set)
    shard = int(wildcards.shard)
    if entry.kind == "margins":
        inputs = {}
        if "base_margins" in entry.needs:
            inputs["base_margins"] = MARGINS.format(
                dataset=DATASET, family="base", shard=shard
            )
        if "holdout_margins" in entry.needs:
            holdout = plan.holdout_oracle_shards(config)[shard]
            inputs["holdout_margins"] = MARGINS.format(
                dataset=DATASET, family=family, shard=holdout
            )
        return inputs
    inputs = {
        "weights": WEIGHTS.format(dataset=DATASET, family="base", shard=shard),
        "splits": SPLITS,
        "forget_set": FORGET_SET.format(
            dataset=DATASET, forget_set=wildcards.forget_set
        ),
    }
    if "matching_oracles" in entry.needs:
        inputs["matching_oracles"] = [
            WEIGHTS.format(dataset=DATASET, family=family, shard=s)
            for s in plan.holdout_oracle_shards(config)
        ]
    return inputs


def get_unlearn_shards(method):
    """Shards of an unlearning run: held-out oracle shards for `oracle`, base-model shards otherwise."""
    if "holdout_margins" in lookup(method, config["plugins"]).needs:
        return range(len(plan.holdout_oracle_shards(config)))
    return range(len(BASE_SHARDS))


def get_hyperparameters(wildcards):
    return RUNS[wildcards.method][wildcards.run]


def get_snapshot_epochs(wildcards):
    return plan.snapshot_epochs(config, wildcards.method)


def get_unlearn_seeds(wildcards):
    start, stop = BASE_SHARDS[int(wildcards.shard)]
    w = wildcards
    return [
        derive_seed("unlearn", w.method, w.run, w.forget_set, i, base=config["seed"])
        for i in range(start, stop)
    ]


def get_unlearned_shards(wildcards):
    return expand(
        UNLEARNED,
        shard=get_unlearn_shards(wildcards.method),
        allow_missing=True,
        **wildcards,
    )


def get_scored_oracle_margins(wildcards):
    family = oracle_family(wildcards.forget_set)
    return [
        MARGINS.format(dataset=DATASET, family=family, shard=s)
        for s in plan.scored_oracle_shards(config)
    ]


def all_scored_runs():
    """(method, run, forget set) of every KLOM score the summary collects."""
    return [(m, r, fs) for m, runs in RUNS.items() for r in runs for fs in FORGET_SETS]


def get_all_stats(wildcards):
    return [
        f"{SCORES}/stats.csv".format(dataset=DATASET, method=m, run=r, forget_set=fs)
        for m, r, fs in all_scored_runs()
    ]


def get_summary_keys(wildcards):
    return [
        {
            "dataset": DATASET,
            "model": config["model"],
            "forget_set": fs,
            "method": m,
            "run": r,
        }
        for m, r, fs in all_scored_runs()
    ]


def print_summary(path):
    """The short table shown when a run succeeds: forget/retain/val P95 per method and forget set."""
    import pandas as pd

    table = pd.read_csv(path)
    last = table[
        table["epoch"]
        == table.groupby(["forget_set", "method", "run"])["epoch"].transform("max")
    ]
    best = last.pivot_table(
        index=["forget_set", "method"], columns="group", values="p95", aggfunc="min"
    )
    print(
        f"\nKLOM P95 (best grid point, last snapshot; lower is better). Full table: {path}\n"
    )
    print(best[["forget", "retain", "val"]].round(3).to_string())
