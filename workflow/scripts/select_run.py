from unlearnbench import logs, selection

logs.to_file(snakemake.log[0])
selection.write_selection(
    list(snakemake.input.stats),
    snakemake.params.runs,
    snakemake.wildcards.forget_set,
    snakemake.params.rule,
    snakemake.output.selection,
)
