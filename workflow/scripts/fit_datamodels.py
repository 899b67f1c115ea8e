from unlearnbench import logs, pool_jobs

logs.to_file(snakemake.log[0])
pool_jobs.fit_datamodels(
    list(snakemake.input.pool),
    snakemake.params.estimator,
    snakemake.params.l2,
    snakemake.params.n_train,
    snakemake.output.fit,
)
