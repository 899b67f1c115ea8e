from unlearnbench import logs, pool_jobs

logs.to_file(snakemake.log[0])
pool_jobs.summarize_ulira(list(snakemake.input.scores), snakemake.params.run_keys, snakemake.output.csv)
