from unlearnbench.stages import call
from unlearnbench.stages.report import plot_klom_epochs

call(plot_klom_epochs, snakemake)
