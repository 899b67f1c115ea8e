from unlearnbench.stages import call
from unlearnbench.stages.pool import summarize_ulira

call(summarize_ulira, snakemake)
