from unlearnbench.stages import call
from unlearnbench.stages.pool import ulira_unlearn

call(ulira_unlearn, snakemake)
