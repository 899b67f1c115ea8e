rule compute_margins:
    input:
        weights=PATHS.weights(),
        splits=SPLITS,
    output:
        margins=PATHS.margins(),
    log:
        PATHS.log("compute_margins", PATHS.margins()),
    benchmark:
        PATHS.benchmark("compute_margins", PATHS.margins())
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
