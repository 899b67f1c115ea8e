from unlearnbench.stages import call
from unlearnbench.stages.report import plot_margins

call(plot_margins, snakemake)
