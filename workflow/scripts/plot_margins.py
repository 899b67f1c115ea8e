from unlearnbench import logs, plots

logs.to_file(snakemake.log[0])
plots.plot_margins(
    snakemake.input.summary,
    snakemake.wildcards.forget_set,
    list(snakemake.input.scores),
    snakemake.params.score_keys,
    list(snakemake.input.unlearned),
    snakemake.params.unlearned_keys,
    list(snakemake.input.oracles),
    snakemake.input.forget_set,
    n_train=snakemake.params.n_train,
    n_val=snakemake.params.n_val,
    out=snakemake.output.figure,
    n_points=snakemake.params.n_points,
    reference=snakemake.params.reference,
    stat=snakemake.params.stat,
    clip=snakemake.params.clip,
)
