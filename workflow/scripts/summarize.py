from unlearnbench.stages import call
from unlearnbench.stages.scoring import summarize

call(summarize, snakemake)
