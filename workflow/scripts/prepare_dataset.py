from unlearnbench.stages import call
from unlearnbench.stages.data import prepare_dataset

call(prepare_dataset, snakemake)
