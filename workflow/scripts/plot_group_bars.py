from unlearnbench import logs, plots

logs.to_file(snakemake.log[0])
plots.plot_group_bars(
    snakemake.input.summary, snakemake.output.figure, stat=snakemake.params.stat
)
