from unlearnbench import logs, plots

logs.to_file(snakemake.log[0])
plots.plot_klom_epochs(
    snakemake.input.summary,
    snakemake.wildcards.forget_set,
    list(snakemake.input.scores),
    snakemake.params.score_keys,
    snakemake.input.forget_set,
    n_train=snakemake.params.n_train,
    n_val=snakemake.params.n_val,
    out=snakemake.output.figure,
    stat=snakemake.params.stat,
)
