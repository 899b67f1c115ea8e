from unlearnbench.stages import call
from unlearnbench.stages.imports import import_hub_base_margins

call(import_hub_base_margins, snakemake)
