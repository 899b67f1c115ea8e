# One job per method x grid point x forget set x sample x shard of models; margins at every snapshot
# epoch. Every run on the selection sample; the reported run on the report sample, up to its snapshot.


rule unlearn:
    input:
        unpack(get_unlearn_input),
    output:
        margins=PATHS.unlearned(),
    log:
        PATHS.log("unlearn", PATHS.unlearned()),
    benchmark:
        PATHS.benchmark("unlearn", PATHS.unlearned())
    group:
        "unlearn"
    conda:
        "../../envs/unlearnbench.yaml"
    threads: RES["threads"]
    resources:
        gpu=RES["gpu"],
    params:
        method=lambda w: w.method,
        hyperparameters=get_hyperparameters,
        epochs=get_snapshot_epochs,
        seeds=get_unlearn_seeds,
        plugins=get_method_plugin,
        device=get_device,
        models_per_batch=RES["models_per_batch"],
        identity=get_identity,
        code=get_code("unlearn.py", per_method=True),
        compile=RES["compile"],
    script:
        "../scripts/unlearn.py"
