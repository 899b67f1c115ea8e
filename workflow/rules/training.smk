# Base models (on the whole train split) and oracles (per forget set, on train minus F), a shard of
# models_per_job models per job. Model i's seed derives from (stage, forget set, i) alone.


rule train_base:
    input:
        splits=SPLITS,
    output:
        weights=WEIGHTS.replace("{family}", "base"),
    log:
        "logs/train_base/{dataset}/shard~{shard}.log",
    benchmark:
        "results/benchmarks/train_base/{dataset}/shard~{shard}.tsv"
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
        code=get_code("train.py"),
        compile=RES["compile"],
    script:
        "../scripts/train.py"


rule train_oracle:
    input:
        splits=SPLITS,
        forget_set=FORGET_SET,
    output:
        weights=WEIGHTS.replace("{family}", "oracle/forget_set~{forget_set}"),
    log:
        "logs/train_oracle/{dataset}/forget_set~{forget_set}/shard~{shard}.log",
    benchmark:
        "results/benchmarks/train_oracle/{dataset}/forget_set~{forget_set}/shard~{shard}.tsv"
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
        code=get_code("train.py"),
        compile=RES["compile"],
    script:
        "../scripts/train.py"


rule train_pool:
    input:
        splits=SPLITS,
    output:
        weights=WEIGHTS.replace("{family}", "pool"),
    log:
        "logs/train_pool/{dataset}/shard~{shard}.log",
    benchmark:
        "results/benchmarks/train_pool/{dataset}/shard~{shard}.tsv"
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
        pool_seed=config["seed"],
        device=get_device,
        models_per_batch=RES["models_per_batch"],
        code=get_code("train.py"),
        compile=RES["compile"],
    script:
        "../scripts/train.py"
