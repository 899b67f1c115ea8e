from unlearnbench import logs, pool_jobs

logs.to_file(snakemake.log[0])
pool_jobs.score_ulira(
    list(snakemake.input.runs),
    snakemake.input.requests,
    snakemake.params.n_targets,
    snakemake.params.seed,
    snakemake.params.bootstrap,
    snakemake.output.scores,
)
