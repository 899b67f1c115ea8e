from unlearnbench import jobs, logs

logs.to_file(snakemake.log[0])
w = snakemake.wildcards
jobs.score_klom(
    list(snakemake.input.unlearned),
    list(snakemake.input.oracles),
    snakemake.input.forget_set,
    n_train=snakemake.params.n_train,
    n_val=snakemake.params.n_val,
    klom=snakemake.params.klom,
    cost_unit=snakemake.params.cost_unit,
    out_scores=snakemake.output.scores,
    out_stats=snakemake.output.stats,
    out_epsilon=snakemake.output.epsilon,
    bootstrap=snakemake.params.bootstrap,
    epsilon=snakemake.params.epsilon,
    label=f"method {w.method}, run {w.run}, forget set {w.forget_set}",
)
