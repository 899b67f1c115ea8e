from unlearnbench.stages import call
from unlearnbench.stages.pool import fit_datamodels

call(fit_datamodels, snakemake)
