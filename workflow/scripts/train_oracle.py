from unlearnbench.stages import call
from unlearnbench.stages.training import train_oracle

call(train_oracle, snakemake)
