from unlearnbench.stages import call
from unlearnbench.stages.training import train_base

call(train_base, snakemake)
