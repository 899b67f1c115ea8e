from unlearnbench.stages import call
from unlearnbench.stages.imports import download_forget_set

call(download_forget_set, snakemake)
