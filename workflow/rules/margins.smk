rule compute_margins:
    input:
        weights=WEIGHTS,
        splits=SPLITS,
    output:
        margins=MARGINS,
    log:
        "logs/compute_margins/{dataset}/{family}/shard~{shard}.log",
    benchmark:
        "results/benchmarks/compute_margins/{dataset}/{family}/shard~{shard}.tsv"
    group:
        "train"
    conda:
        "../../envs/unlearnbench.yaml"
    threads: RES["threads"]
    resources:
        gpu=RES["gpu"],
    params:
        device=get_device,
        keep_logits=lambda w: w.family == "pool",
        code=get_code("compute_margins.py"),
        tta=lambda w: (
            (config["pool"] or {}).get("tta") if w.family == "pool" else "none"
        ),
    script:
        "../scripts/compute_margins.py"
