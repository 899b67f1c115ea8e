from unlearnbench.stages import call
from unlearnbench.stages.selection import select_run

call(select_run, snakemake)
