from unlearnbench import jobs, logs

logs.to_file(snakemake.log[0])
jobs.summarize(
    list(snakemake.input.stats),
    list(snakemake.input.epsilon),
    snakemake.params.run_keys,
    snakemake.output.csv,
    snakemake.output.parquet,
    snakemake.output.epsilon,
    selections=list(snakemake.input.selections),
    fixed_selections=snakemake.params.fixed_selections,
    rule=snakemake.params.rule,
    methods=snakemake.params.methods,
    descriptions=snakemake.params.descriptions,
)
