from unlearnbench import logs
from unlearnbench.downloads import fetch_forget_set

logs.to_file(snakemake.log[0])
fetch_forget_set(snakemake.params.url, snakemake.output.indices)
