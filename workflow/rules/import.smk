# Published assets instead of local work (config keys `forget_sets[].url` and `import`). Each rule
# writes exactly the file the regular rule would (make_forget_set's input or output, train_base's
# weights, compute_margins' margins), so everything downstream is unchanged. Fetching runs on the
# submitting host (localrule: compute nodes of a cluster are often offline).
from unlearnbench import hub
from unlearnbench.downloads import index_file_limit
from unlearnbench.hub_layouts import hub_assets, imported_oracle_shards

# A file forget set with a url: downloaded into results/downloads/ when the user's `path` does not
# exist (get_forget_set_input); the user's file is never an output, so no snakemake command deletes it.
DOWNLOADS = {
    str(fs["id"]): fs
    for fs in config["forget_sets"]
    if fs["kind"] == "file" and fs.get("url")
}
IMPORT = config["import"]
ORACLE_IMPORTS = {str(k): v for k, v in IMPORT.get("oracle_margins", {}).items()}
IMPORTED_ORACLE_SHARDS = imported_oracle_shards(config)
HUB = hub_assets(config)  # import: {source: hub}: every file of the run, by job
HUB_MANIFEST = layout.HUB_MANIFEST


if DOWNLOADS:

    rule download_forget_set:
        output:
            indices=PATHS.downloaded_forget_set(),
        log:
            PATHS.log("download_forget_set", PATHS.downloaded_forget_set()),
        wildcard_constraints:
            forget_set=id_pattern(DOWNLOADS),
        localrule: True
        conda:
            "../../envs/unlearnbench.yaml"
        params:
            url=lambda w: DOWNLOADS[w.forget_set]["url"],
            sha256=lambda w: DOWNLOADS[w.forget_set].get("sha256"),
            allow_http=lambda w: DOWNLOADS[w.forget_set]["allow_http"],
            user_path=lambda w: DOWNLOADS[w.forget_set].get("path"),
            max_bytes=index_file_limit(DATA.n_train),
            code=get_code("download_forget_set.py"),
        script:
            "../scripts/download_forget_set.py"


if IMPORT.get("base_weights"):

    ruleorder: import_base_weights > train_base

    # One published state dict per model (`base_weights` holds `{index}`), gathered into our shard.
    # `content`: the files' digests, so a file replaced by an older one (cp -p) reruns the import.
    rule import_base_weights:
        input:
            state_dicts=get_imported_state_dicts,
        output:
            weights=PATHS.weights("base"),
        log:
            PATHS.log("import_base_weights", PATHS.weights("base")),
        conda:
            "../../envs/unlearnbench.yaml"
        params:
            model=config["model"],
            num_classes=DATA.num_classes,
            in_channels=DATA.in_channels,
            model_range=lambda w: get_model_range(w, "base"),
            content=lambda w: USER_FILES.digests(get_imported_state_dicts(w)),
            code=get_code("import_base_weights.py"),
        script:
            "../scripts/import_base_weights.py"


if ORACLE_IMPORTS and IMPORTED_ORACLE_SHARDS:

    ruleorder: import_oracle_margins > compute_margins

    # Rows [start, stop) of the published train/val margin tensors become one oracle margins shard.
    rule import_oracle_margins:
        input:
            train=lambda w: ORACLE_IMPORTS[w.forget_set]["train"],
            val=lambda w: ORACLE_IMPORTS[w.forget_set]["val"],
        output:
            margins=PATHS.margins(layout.oracle_family()),
        log:
            PATHS.log("import_oracle_margins", PATHS.margins(layout.oracle_family())),
        wildcard_constraints:
            forget_set=id_pattern(ORACLE_IMPORTS),
            shard=id_pattern(IMPORTED_ORACLE_SHARDS),
        conda:
            "../../envs/unlearnbench.yaml"
        params:
            model_range=lambda w: get_model_range(w, "oracle"),
            n_train=DATA.n_train,
            n_val=DATA.n_val,
            content=lambda w: USER_FILES.digests(ORACLE_IMPORTS[w.forget_set].values()),
            code=get_code("import_oracle_margins.py"),
        script:
            "../scripts/import_oracle_margins.py"


if HUB:
    # Offline with files missing from the local Hub cache: stop now, before any job, naming them and
    # the command that gets them (only in the main process: a job on a compute node needs no cache).
    if workflow.is_main_process:
        try:
            hub.check_available(hub.Source(HUB.repo, HUB.revision), HUB.files, HUB.lock)
        except hub.HubError as err:
            sys.exit(f"Published assets (config key import): {err}")

    # One job brings every file of the run into the Hub cache at one commit and verifies its sha256
    # (config pins, then the lock file; first use records it there); the manifest lists what it checked.
    rule fetch_hub_assets:
        output:
            manifest=HUB_MANIFEST,
        log:
            PATHS.log("fetch_hub_assets", HUB_MANIFEST),
        priority: 100
        localrule: True
        conda:
            "../../envs/unlearnbench.yaml"
        params:
            repo=HUB.repo,
            revision=HUB.revision,
            files=HUB.files,
            pins=HUB.pins,
            lock=HUB.lock,
            code=get_code("fetch_hub_assets.py"),
        script:
            "../scripts/fetch_hub_assets.py"

    if HUB.forget_sets:

        ruleorder: import_hub_forget_set > make_forget_set

        rule import_hub_forget_set:
            input:
                manifest=HUB_MANIFEST,
            output:
                indices=FORGET_SET,
            log:
                PATHS.log("import_hub_forget_set", FORGET_SET),
            wildcard_constraints:
                forget_set=id_pattern(HUB.forget_sets),
            localrule: True
            conda:
                "../../envs/unlearnbench.yaml"
            params:
                file=lambda w: HUB.forget_sets[w.forget_set],
                n_train=DATA.n_train,
                code=get_code("import_hub_forget_set.py"),
            script:
                "../scripts/import_hub_forget_set.py"

    if HUB.base_weights:

        ruleorder: import_hub_base_weights > train_base

        rule import_hub_base_weights:
            input:
                manifest=HUB_MANIFEST,
            output:
                weights=PATHS.weights("base"),
            log:
                PATHS.log("import_hub_base_weights", PATHS.weights("base")),
            wildcard_constraints:
                shard=id_pattern(HUB.base_weights),
            localrule: True
            conda:
                "../../envs/unlearnbench.yaml"
            params:
                files=lambda w: HUB.base_weights[int(w.shard)],
                model=config["model"],
                num_classes=DATA.num_classes,
                in_channels=DATA.in_channels,
                model_range=lambda w: get_model_range(w, "base"),
                code=get_code("import_hub_base_weights.py"),
            script:
                "../scripts/import_hub_base_weights.py"

    if HUB.base_margins:

        ruleorder: import_hub_base_margins > compute_margins

        rule import_hub_base_margins:
            input:
                manifest=HUB_MANIFEST,
            output:
                margins=PATHS.margins("base"),
            log:
                PATHS.log("import_hub_base_margins", PATHS.margins("base")),
            wildcard_constraints:
                shard=id_pattern(HUB.base_margins),
            localrule: True
            conda:
                "../../envs/unlearnbench.yaml"
            params:
                files=lambda w: HUB.base_margins[int(w.shard)],
                model_range=lambda w: get_model_range(w, "base"),
                n_train=DATA.n_train,
                n_val=DATA.n_val,
                code=get_code("import_hub_base_margins.py"),
            script:
                "../scripts/import_hub_base_margins.py"

    if HUB.oracle_margins:

        ruleorder: import_hub_oracle_margins > compute_margins

        # The published index file comes along: the oracles are only scored against the same points.
        rule import_hub_oracle_margins:
            input:
                manifest=HUB_MANIFEST,
                forget_set=FORGET_SET,
            output:
                margins=PATHS.margins(layout.oracle_family()),
            log:
                PATHS.log(
                    "import_hub_oracle_margins", PATHS.margins(layout.oracle_family())
                ),
            wildcard_constraints:
                forget_set=id_pattern(HUB.oracle_forget_sets),
                shard=id_pattern(IMPORTED_ORACLE_SHARDS),
            localrule: True
            conda:
                "../../envs/unlearnbench.yaml"
            params:
                layout=HUB.layout.name,
                files=lambda w: HUB.oracle_margins[(w.forget_set, int(w.shard))],
                forget_file=lambda w: HUB.oracle_forget_sets[w.forget_set],
                model_range=lambda w: get_model_range(w, "oracle"),
                n_train=DATA.n_train,
                n_val=DATA.n_val,
                forget_set_id=lambda w: w.forget_set,
                code=get_code("import_hub_oracle_margins.py"),
            script:
                "../scripts/import_hub_oracle_margins.py"
