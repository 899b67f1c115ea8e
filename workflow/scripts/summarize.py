from unlearnbench import jobs, logs

logs.to_file(snakemake.log[0])
jobs.summarize(
    list(snakemake.input.stats),
    snakemake.params.run_keys,
    snakemake.output.csv,
    snakemake.output.parquet,
)
