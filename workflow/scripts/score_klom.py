from unlearnbench.stages import call
from unlearnbench.stages.scoring import score_klom

call(score_klom, snakemake)
