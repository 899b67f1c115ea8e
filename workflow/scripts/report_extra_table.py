from unlearnbench.stages import call
from unlearnbench.stages.report import report_extra_table

call(report_extra_table, snakemake)
