from unlearnbench.stages import call
from unlearnbench.stages.pool import datamodel_quality

call(datamodel_quality, snakemake)
