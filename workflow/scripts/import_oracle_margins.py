from unlearnbench.stages import call
from unlearnbench.stages.imports import import_oracle_margins

call(import_oracle_margins, snakemake)
