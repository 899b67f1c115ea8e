from unlearnbench import jobs, logs

logs.to_file(snakemake.log[0])
jobs.summarize(
    list(snakemake.input.stats),
    list(snakemake.input.epsilon),
    snakemake.params.run_keys,
    snakemake.output.csv,
    snakemake.output.parquet,
    snakemake.output.epsilon,
)
