# Published assets instead of local work (config keys `forget_sets[].url` and `import`). Each rule
# writes exactly the file the regular rule would (make_forget_set's input, train_base's weights,
# compute_margins' oracle margins), so everything downstream is unchanged.
import re

# Published forget sets (kind: file with a url): fetched on the submit host (compute nodes of a
# cluster are often offline) the first time their path is missing; a file already there is used.
DOWNLOADS = {
    fs["path"]: fs["url"]
    for fs in config["forget_sets"]
    if fs["kind"] == "file" and fs.get("url")
}
IMPORT = config.get("import", {})
ORACLE_IMPORTS = {str(k): v for k, v in IMPORT.get("oracle_margins", {}).items()}
IMPORTED_ORACLE_SHARDS = (
    plan.scored_oracle_shards(config)
    if IMPORT.get("oracle_shards", "all") == "scored"
    else plan.scored_oracle_shards(config) + plan.holdout_oracle_shards(config)
)  # selection oracles are always trained


if DOWNLOADS:

    rule download_forget_set:
        output:
            indices="{download}",
        log:
            "logs/download_forget_set/{download}.log",
        wildcard_constraints:
            download="|".join(re.escape(path) for path in DOWNLOADS),
        localrule: True
        conda:
            "../../envs/unlearnbench.yaml"
        params:
            url=lambda w: DOWNLOADS[w.download],
        script:
            "../scripts/download_forget_set.py"


if IMPORT.get("base_weights"):

    ruleorder: import_base_weights > train_base

    # One published state dict per model (`base_weights` holds `{index}`), gathered into our shard.
    rule import_base_weights:
        input:
            state_dicts=lambda w: [
                IMPORT["base_weights"].format(index=i)
                for i in range(*get_model_range(w, "base"))
            ],
        output:
            weights=WEIGHTS.replace("{family}", "base"),
        log:
            "logs/import_base_weights/{dataset}/shard~{shard}.log",
        conda:
            "../../envs/unlearnbench.yaml"
        params:
            model=config["model"],
            num_classes=DATA.num_classes,
            in_channels=DATA.in_channels,
            model_range=lambda w: get_model_range(w, "base"),
        script:
            "../scripts/import_base_weights.py"


if ORACLE_IMPORTS:

    ruleorder: import_oracle_margins > compute_margins

    # Rows [start, stop) of the published train/val margin tensors become one oracle margins shard.
    rule import_oracle_margins:
        input:
            train=lambda w: ORACLE_IMPORTS[w.forget_set]["train"],
            val=lambda w: ORACLE_IMPORTS[w.forget_set]["val"],
        output:
            margins=MARGINS.replace("{family}", "oracle/forget_set~{forget_set}"),
        log:
            "logs/import_oracle_margins/{dataset}/forget_set~{forget_set}/shard~{shard}.log",
        wildcard_constraints:
            forget_set="|".join(re.escape(k) for k in ORACLE_IMPORTS),
            shard="|".join(str(s) for s in IMPORTED_ORACLE_SHARDS),
        conda:
            "../../envs/unlearnbench.yaml"
        params:
            model_range=lambda w: get_model_range(w, "oracle"),
            n_train=DATA.n_train,
            n_val=DATA.n_val,
        script:
            "../scripts/import_oracle_margins.py"
