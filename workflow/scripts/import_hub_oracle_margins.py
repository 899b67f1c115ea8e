from unlearnbench import hub, logs
from unlearnbench.published import import_hub_oracle_margins

logs.to_file(snakemake.log[0])
p = snakemake.params
manifest = hub.load_manifest(snakemake.input.manifest)
import_hub_oracle_margins(
    p.layout,
    hub.resolve(manifest, p.forget_file),
    hub.resolve_groups(manifest, p.files),
    snakemake.input.forget_set,
    snakemake.wildcards.forget_set,
    p.model_range,
    snakemake.output.margins,
    p.n_train,
    p.n_val,
)
