from unlearnbench import logs
from unlearnbench.published import import_base_weights

logs.to_file(snakemake.log[0])
import_base_weights(
    list(snakemake.input.state_dicts),
    range(*snakemake.params.model_range),
    snakemake.output.weights,
    arch=snakemake.params.model,
    num_classes=snakemake.params.num_classes,
    in_channels=snakemake.params.in_channels,
)
