from unlearnbench.stages import call
from unlearnbench.stages.pool import make_ulira_requests

call(make_ulira_requests, snakemake)
