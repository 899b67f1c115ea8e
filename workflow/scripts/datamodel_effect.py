from unlearnbench import logs, pool_jobs

logs.to_file(snakemake.log[0])
pool_jobs.datamodel_effect(
    snakemake.input.forget_set,
    snakemake.output.effect,
    estimator=snakemake.params.estimator,
    l2=snakemake.params.l2,
    pool_margins=list(snakemake.input.get("pool", [])) or None,
    imported=snakemake.params.imported,
    splits=snakemake.input.get("splits"),
)
