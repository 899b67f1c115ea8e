from unlearnbench.stages import call
from unlearnbench.stages.unlearning import unlearn

call(unlearn, snakemake)
