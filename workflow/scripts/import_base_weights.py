from unlearnbench.stages import call
from unlearnbench.stages.imports import import_base_weights

call(import_base_weights, snakemake)
