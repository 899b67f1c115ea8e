from unlearnbench import logs, pool_jobs

logs.to_file(snakemake.log[0])
pool_jobs.datamodel_quality(
    list(snakemake.input.pool),
    snakemake.params.estimator,
    snakemake.params.l2,
    snakemake.params.holdout_models,
    snakemake.params.group_sizes,
    snakemake.params.seed,
    snakemake.output.quality,
    imported=snakemake.params.imported,
    n_train=snakemake.params.n_train,
)
