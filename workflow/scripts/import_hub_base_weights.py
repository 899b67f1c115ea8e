from unlearnbench.stages import call
from unlearnbench.stages.imports import import_hub_base_weights

call(import_hub_base_weights, snakemake)
