from unlearnbench import jobs, logs

logs.to_file(snakemake.log[0])
inputs = snakemake.input
jobs.unlearn_shard(
    snakemake.wildcards.method,
    snakemake.params.hyperparameters,
    snakemake.params.epochs,
    snakemake.output.margins,
    plugins=snakemake.params.plugins,
    weights=inputs.get("weights"),
    splits=inputs.get("splits"),
    forget_set=inputs.get("forget_set"),
    seeds=snakemake.params.seeds,
    margins_inputs={k: inputs[k] for k in ("base_margins", "holdout_margins") if k in inputs.keys()},
    datamodel_effect=inputs.get("datamodel_effect"),
    matching_oracles=inputs.get("matching_oracles"),
    threads=snakemake.threads,
    device=snakemake.params.device,
    models_per_batch=snakemake.params.models_per_batch,
    compile=snakemake.params.compile,
)
