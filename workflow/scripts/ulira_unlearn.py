from unlearnbench import logs, pool_jobs

logs.to_file(snakemake.log[0])
pool_jobs.ulira_unlearn(
    snakemake.wildcards.method,
    snakemake.params.hyperparameters,
    snakemake.params.epochs,
    snakemake.input.weights,
    snakemake.input.pool_margins,
    snakemake.input.requests,
    snakemake.input.splits,
    snakemake.params.seeds,
    snakemake.params.recipe,
    snakemake.output.runs,
    plugins=snakemake.params.plugins,
    threads=snakemake.threads,
    device=snakemake.params.device,
    models_per_batch=snakemake.params.models_per_batch,
    tta=snakemake.params.tta,
    compile=snakemake.params.compile,
)
