# KLOM per point and per group, and the per-run metrics (unlearnbench.run_metrics; no torch: these jobs
# start fast), then the summary tables. A score is of one sample: "selection" (selection models vs
# selection oracles, every snapshot: chooses the run) or "report_epoch~<e>" (the chosen run on the
# report models vs the scored oracles).


rule score_klom:
    input:
        unlearned=get_unlearned_shards,
        oracles=get_scored_oracle_margins,
        forget_set=FORGET_SET,
    output:
        **RUN_METRIC_TABLES,
        scores=PATHS.scores("klom.npz"),
        stats=PATHS.scores("stats.csv"),
    log:
        PATHS.log("score_klom", PATHS.scores("stats.csv")),
    benchmark:
        PATHS.benchmark("score_klom", PATHS.scores("stats.csv"))
    group:
        "unlearn"
    conda:
        "../../envs/unlearnbench.yaml"
    params:
        klom_options=config["klom"],
        bootstrap=get_bootstrap,
        run_metrics=get_run_metric_options,
        n_train=DATA.n_train,
        n_val=DATA.n_val,
        cost_unit=DATA.n_train * config["train"]["epochs"],
        identity=get_identity,
        code=get_code("score_klom.py"),
    script:
        "../scripts/score_klom.py"


rule summarize:
    input:
        unpack(get_run_metric_tables),
        stats=lambda w: get_all_scores(w, "stats.csv"),
        selections=get_selection_files,
    output:
        **RUN_METRIC_SUMMARIES,
        csv=layout.KLOM_SUMMARY,
        parquet=layout.KLOM_SUMMARY_PARQUET,
    log:
        PATHS.log("summarize", layout.KLOM_SUMMARY),
    localrule: True
    conda:
        "../../envs/unlearnbench.yaml"
    params:
        fixed_selections=get_fixed_selections,
        rule=config["selection"]["rule"],
        methods=get_method_facts,
        descriptions=DESCRIPTIONS,
        code=get_code("summarize.py"),
    script:
        "../scripts/summarize.py"
