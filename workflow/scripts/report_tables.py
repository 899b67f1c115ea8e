from unlearnbench.stages import call
from unlearnbench.stages.report import report_tables

call(report_tables, snakemake)
