from unlearnbench import logs, plots

logs.to_file(snakemake.log[0])
plots.plot_tradeoff(
    snakemake.input.summary,
    snakemake.wildcards.forget_set,
    snakemake.output.figure,
    stat=snakemake.params.stat,
    cost_scale=snakemake.params.cost_scale,
)
