from unlearnbench.stages import call
from unlearnbench.stages.data import make_forget_set

call(make_forget_set, snakemake)
