from unlearnbench import jobs, logs

logs.to_file(snakemake.log[0])
jobs.prepare_dataset(
    snakemake.wildcards.dataset,
    snakemake.output.splits,
    (snakemake.params.n_train, snakemake.params.n_val),
    root=snakemake.params.root,
    download=snakemake.params.download,
    verify_checksums=snakemake.params.verify_checksums,
    resolution=snakemake.params.resolution,
    val_resolution=snakemake.params.val_resolution,
    split_file=snakemake.input.get("split_file"),
    workers=snakemake.threads if snakemake.threads > 1 else 0,
)
