from unlearnbench import jobs, logs

logs.to_file(snakemake.log[0])
jobs.make_forget_set(
    snakemake.params.entry,
    snakemake.params.seed,
    snakemake.params.n_train,
    snakemake.output.indices,
    splits=snakemake.input.get("splits"),
    datamodels=snakemake.input.get("datamodels"),
)
