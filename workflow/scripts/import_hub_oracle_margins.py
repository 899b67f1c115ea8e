from unlearnbench.stages import call
from unlearnbench.stages.imports import import_hub_oracle_margins

call(import_hub_oracle_margins, snakemake)
