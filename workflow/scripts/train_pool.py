from unlearnbench.stages import call
from unlearnbench.stages.training import train_pool

call(train_pool, snakemake)
