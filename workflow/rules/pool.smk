# The pool of random-half models serves datamodels (and through them DM-direct, datamodel matching and
# attribution forget sets) and U-LiRA. Pool models train in train_pool (training.smk).


rule fit_datamodels:
    input:
        pool=get_pool_margins,
    output:
        fit=f"{DATAMODELS}/fit.npz",
    log:
        f"logs/fit_datamodels/{DATASET}.log",
    benchmark:
        f"results/benchmarks/fit_datamodels/{DATASET}.tsv"
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
        quality=f"{DATAMODELS}/fit_quality.csv",
    log:
        f"logs/datamodel_quality/{DATASET}.log",
    benchmark:
        f"results/benchmarks/datamodel_quality/{DATASET}.tsv"
    conda:
        "../../envs/unlearnbench.yaml"
    params:
        estimator=DATAMODEL_ESTIMATOR,
        l2=DATAMODEL_L2,
        holdout_models=config["datamodels"]["holdout_models"],
        group_sizes=config["datamodels"]["quality_group_sizes"],
        seed=derive_seed("datamodel_quality", base=config["seed"]),
        imported=DATAMODELS_IMPORT,
        n_train=DATA.n_train,
        code=get_code("datamodel_quality.py"),
    script:
        "../scripts/datamodel_quality.py"


rule datamodel_effect:
    input:
        unpack(get_datamodel_effect_input),
    output:
        effect=EFFECT,
    log:
        "logs/datamodel_effect/{dataset}/forget_set~{forget_set}.log",
    benchmark:
        "results/benchmarks/datamodel_effect/{dataset}/forget_set~{forget_set}.tsv"
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
        requests=f"{ULIRA_DIR}/requests.npz",
    log:
        f"logs/make_ulira_requests/{DATASET}.log",
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
        weights=WEIGHTS.replace("{family}", "pool"),
        pool_margins=MARGINS.replace("{family}", "pool"),
        requests=f"{ULIRA_DIR}/requests.npz",
        splits=SPLITS,
    output:
        runs="results/ulira/{dataset}/{method}/{run}/shard~{shard}.npz",
    log:
        "logs/ulira_unlearn/{dataset}/{method}/{run}/shard~{shard}.log",
    benchmark:
        "results/benchmarks/ulira_unlearn/{dataset}/{method}/{run}/shard~{shard}.tsv"
    group:
        "ulira"
    conda:
        "../../envs/unlearnbench.yaml"
    threads: RES["threads"]
    resources:
        gpu=RES["gpu"],
    params:
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
        runs=lambda w: expand(
            "results/ulira/{{dataset}}/{{method}}/{{run}}/shard~{shard}.npz",
            shard=range(len(POOL_SHARDS)),
        ),
        requests=f"{ULIRA_DIR}/requests.npz",
    output:
        scores="results/ulira/{dataset}/{method}/{run}/scores.csv",
    log:
        "logs/score_ulira/{dataset}/{method}/{run}.log",
    group:
        "ulira"
    conda:
        "../../envs/unlearnbench.yaml"
    params:
        n_targets=ULIRA["n_targets"] if ULIRA else None,
        seed=config["seed"],
        bootstrap=config["bootstrap"],
        code=get_code("score_ulira.py"),
    script:
        "../scripts/score_ulira.py"


rule summarize_ulira:
    input:
        scores=get_ulira_scores,
    output:
        csv="results/ulira_summary.csv",
    log:
        "logs/summarize_ulira.log",
    group:
        "report"
    conda:
        "../../envs/unlearnbench.yaml"
    params:
        run_keys=get_ulira_keys,
        code=get_code("summarize_ulira.py"),
    script:
        "../scripts/summarize_ulira.py"
