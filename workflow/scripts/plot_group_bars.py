from unlearnbench.stages import call
from unlearnbench.stages.report import plot_group_bars

call(plot_group_bars, snakemake)
