from unlearnbench.stages import call
from unlearnbench.stages.pool import score_ulira

call(score_ulira, snakemake)
