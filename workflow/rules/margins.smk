rule compute_margins:
    input:
        weights=WEIGHTS,
        splits=SPLITS,
    output:
        margins=MARGINS,
    params:
        device=RES["device"],
    threads: RES["threads"]
    resources:
        gpu=RES["gpu"],
    log:
        "logs/compute_margins/{dataset}/{family}/shard~{shard}.log",
    benchmark:
        "results/benchmarks/compute_margins/{dataset}/{family}/shard~{shard}.tsv"
    script:
        "../scripts/compute_margins.py"
