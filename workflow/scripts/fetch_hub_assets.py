from unlearnbench.stages import call
from unlearnbench.stages.imports import fetch_hub_assets

call(fetch_hub_assets, snakemake)
