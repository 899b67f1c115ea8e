from unlearnbench import logs
from unlearnbench.published import import_margins

logs.to_file(snakemake.log[0])
import_margins(
    snakemake.input.train,
    snakemake.input.val,
    snakemake.params.model_range,
    snakemake.output.margins,
    n_train=snakemake.params.n_train,
    n_val=snakemake.params.n_val,
)
