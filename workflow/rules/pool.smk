# The pool of random-half models serves datamodels (and through them DM-direct, datamodel matching and
# attribution forget sets) and U-LiRA. Pool models train in train_pool (training.smk).


rule fit_datamodels:
    input:
        pool=get_pool_margins,
    output:
        fit=PATHS.datamodel_fit,
    log:
        PATHS.log("fit_datamodels", PATHS.datamodel_fit),
    benchmark:
        PATHS.benchmark("fit_datamodels", PATHS.datamodel_fit)
    conda:
        "../../envs/unlearnbench.yaml"
    params:
        estimator=DATAMODEL_ESTIMATOR,
        l2=DATAMODEL_L2,
        n_train=DATA.n_train,
        code=get_code("fit_datamodels.py"),
    script:
        "../scripts/fit_datamodels.py"


rule datamodel_quality:
    input:
        unpack(get_imported_datamodels),
        pool=get_pool_margins,
    output:
        quality=PATHS.datamodel_quality,
    log:
        PATHS.log("datamodel_quality", PATHS.datamodel_quality),
    benchmark:
        PATHS.benchmark("datamodel_quality", PATHS.datamodel_quality)
    conda:
        "../../envs/unlearnbench.yaml"
    params:
        estimator=DATAMODEL_ESTIMATOR,
        l2=DATAMODEL_L2,
        holdout_models=config["datamodels"]["holdout_models"],
        group_sizes=config["datamodels"]["quality_group_sizes"],
        seed=plan.datamodel_quality_seed(config),
        imported=DATAMODELS_IMPORT,
        n_train=DATA.n_train,
        code=get_code("datamodel_quality.py"),
    script:
        "../scripts/datamodel_quality.py"


rule datamodel_effect:
    input:
        unpack(get_datamodel_effect_input),
    output:
        effect=PATHS.datamodel_effect(),
    log:
        PATHS.log("datamodel_effect", PATHS.datamodel_effect()),
    benchmark:
        PATHS.benchmark("datamodel_effect", PATHS.datamodel_effect())
    conda:
        "../../envs/unlearnbench.yaml"
    params:
        estimator=DATAMODEL_ESTIMATOR,
        l2=DATAMODEL_L2,
        imported=DATAMODELS_IMPORT,
        code=get_code("datamodel_effect.py"),
    script:
        "../scripts/datamodel_effect.py"


rule make_ulira_requests:
    input:
        pool=get_pool_margins,
        splits=SPLITS,
    output:
        requests=PATHS.ulira_requests,
    log:
        PATHS.log("make_ulira_requests", PATHS.ulira_requests),
    conda:
        "../../envs/unlearnbench.yaml"
    params:
        target_pool=ULIRA["target_pool"] if ULIRA else None,
        n_requests=ULIRA["n_requests"] if ULIRA else None,
        request_size=ULIRA["request_size"] if ULIRA else None,
        seed=config["seed"],
        code=get_code("make_ulira_requests.py"),
    script:
        "../scripts/make_ulira_requests.py"


rule ulira_unlearn:
    input:
        weights=PATHS.weights("pool"),
        pool_margins=PATHS.margins("pool"),
        requests=PATHS.ulira_requests,
        splits=SPLITS,
    output:
        runs=PATHS.ulira_runs(),
    log:
        PATHS.log("ulira_unlearn", PATHS.ulira_runs()),
    benchmark:
        PATHS.benchmark("ulira_unlearn", PATHS.ulira_runs())
    group:
        "ulira"
    conda:
        "../../envs/unlearnbench.yaml"
    threads: RES["threads"]
    resources:
        gpu=RES["gpu"],
    params:
        method=lambda w: w.method,
        hyperparameters=get_ulira_hyperparameters,
        epochs=get_ulira_snapshot_epochs,
        plugins=get_method_plugin,
        seeds=get_ulira_seeds,
        recipe=(config["pool"] or {}).get("train"),
        tta=(config["pool"] or {}).get("tta"),
        device=get_device,
        models_per_batch=RES["models_per_batch"],
        compile=RES["compile"],
        code=get_code("ulira_unlearn.py", per_method=True),
    script:
        "../scripts/ulira_unlearn.py"


rule score_ulira:
    input:
        runs=lambda w: [
            PATHS.ulira_runs(w.method, w.run, s) for s in range(len(POOL_SHARDS))
        ],
        requests=PATHS.ulira_requests,
    output:
        scores=PATHS.ulira_scores(),
    log:
        PATHS.log("score_ulira", PATHS.ulira_scores()),
    group:
        "ulira"
    conda:
        "../../envs/unlearnbench.yaml"
    params:
        n_targets=ULIRA["n_targets"] if ULIRA else None,
        seed=config["seed"],
        bootstrap=config["bootstrap"],
        identity=get_identity,
        code=get_code("score_ulira.py"),
    script:
        "../scripts/score_ulira.py"


rule summarize_ulira:
    input:
        scores=get_ulira_scores,
    output:
        csv=layout.ULIRA_SUMMARY,
    log:
        PATHS.log("summarize_ulira", layout.ULIRA_SUMMARY),
    localrule: True
    conda:
        "../../envs/unlearnbench.yaml"
    params:
        code=get_code("summarize_ulira.py"),
    script:
        "../scripts/summarize_ulira.py"
