from unlearnbench import jobs, logs

logs.to_file(snakemake.log[0])
jobs.compute_margins(
    snakemake.input.weights,
    snakemake.input.splits,
    snakemake.output.margins,
    threads=snakemake.threads,
    device=snakemake.params.device,
    keep_logits=snakemake.params.keep_logits,
    tta=snakemake.params.tta,
)
