from unlearnbench import logs, selection

logs.to_file(snakemake.log[0])
w = snakemake.wildcards
selection.write_selection(
    list(snakemake.input.stats), snakemake.params.runs, w.method, w.forget_set, snakemake.params.rule,
    snakemake.output.selection,
)
