from unlearnbench import logs, summary_md

logs.to_file(snakemake.log[0])
titles = snakemake.params.titles
summary_md.write_tables(
    snakemake.input.summary,
    out_markdown=snakemake.output.markdown,
    out_best_html=snakemake.output.best,
    out_full_html=snakemake.output.full,
    extra_tables={titles[name]: snakemake.input[name] for name in titles},
    stat=snakemake.params.stat,
)
