from unlearnbench import logs, pool_jobs

logs.to_file(snakemake.log[0])
pool_jobs.datamodel_effect(
    list(snakemake.input.pool),
    snakemake.input.forget_set,
    snakemake.params.l2,
    snakemake.output.effect,
)
