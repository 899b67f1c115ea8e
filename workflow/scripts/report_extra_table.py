from unlearnbench import logs, summary_md

logs.to_file(snakemake.log[0])
summary_md.write_table_html(
    snakemake.params.title, snakemake.input.table, snakemake.output.html
)
