from unlearnbench import hub, logs
from unlearnbench.published import import_base_weights

logs.to_file(snakemake.log[0])
p = snakemake.params
manifest = hub.load_manifest(snakemake.input.manifest)
import_base_weights(
    [hub.resolve(manifest, name) for name in p.files],
    range(*p.model_range),
    snakemake.output.weights,
    arch=p.model,
    num_classes=p.num_classes,
    in_channels=p.in_channels,
)
