from unlearnbench.stages import call
from unlearnbench.stages.margins import compute_margins

call(compute_margins, snakemake)
