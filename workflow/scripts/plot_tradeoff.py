from unlearnbench.stages import call
from unlearnbench.stages.report import plot_tradeoff

call(plot_tradeoff, snakemake)
