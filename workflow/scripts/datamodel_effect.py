from unlearnbench.stages import call
from unlearnbench.stages.pool import datamodel_effect

call(datamodel_effect, snakemake)
