# Base models (on the whole train split) and oracles (per forget set, on train minus F), a shard of
# models_per_job models per job. Model i's seed derives from (stage, forget set, i) alone.


rule train_base:
    input:
        splits=SPLITS,
    output:
        weights=PATHS.weights("base"),
    log:
        PATHS.log("train_base", PATHS.weights("base")),
    benchmark:
        PATHS.benchmark("train_base", PATHS.weights("base"))
    group:
        "train"
    conda:
        "../../envs/unlearnbench.yaml"
    threads: RES["threads"]
    resources:
        gpu=RES["gpu"],
    params:
        model=config["model"],
        recipe=config["train"],
        model_range=lambda w: get_model_range(w, "base"),
        seeds=get_base_seeds,
        device=get_device,
        models_per_batch=RES["models_per_batch"],
        code=get_code("train_base.py"),
        compile=RES["compile"],
    script:
        "../scripts/train_base.py"


rule train_oracle:
    input:
        splits=SPLITS,
        forget_set=FORGET_SET,
    output:
        weights=PATHS.weights(layout.oracle_family()),
    log:
        PATHS.log("train_oracle", PATHS.weights(layout.oracle_family())),
    benchmark:
        PATHS.benchmark("train_oracle", PATHS.weights(layout.oracle_family()))
    group:
        "train"
    conda:
        "../../envs/unlearnbench.yaml"
    threads: RES["threads"]
    resources:
        gpu=RES["gpu"],
    params:
        model=config["model"],
        recipe=config["train"],
        model_range=lambda w: get_model_range(w, "oracle"),
        seeds=get_oracle_seeds,
        device=get_device,
        models_per_batch=RES["models_per_batch"],
        code=get_code("train_oracle.py"),
        compile=RES["compile"],
    script:
        "../scripts/train_oracle.py"


rule train_pool:
    input:
        splits=SPLITS,
    output:
        weights=PATHS.weights("pool"),
    log:
        PATHS.log("train_pool", PATHS.weights("pool")),
    benchmark:
        PATHS.benchmark("train_pool", PATHS.weights("pool"))
    group:
        "train"
    conda:
        "../../envs/unlearnbench.yaml"
    threads: RES["threads"]
    resources:
        gpu=RES["gpu"],
    params:
        model=config["model"],
        recipe=(config["pool"] or {}).get("train"),
        model_range=lambda w: get_model_range(w, "pool"),
        seeds=get_pool_seeds,
        pool_seed=get_pool_mask_seed,
        device=get_device,
        models_per_batch=RES["models_per_batch"],
        code=get_code("train_pool.py"),
        compile=RES["compile"],
    script:
        "../scripts/train_pool.py"
