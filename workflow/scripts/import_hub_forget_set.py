from unlearnbench.stages import call
from unlearnbench.stages.imports import import_hub_forget_set

call(import_hub_forget_set, snakemake)
