from unlearnbench import hub, logs
from unlearnbench.published import import_per_model_margins

logs.to_file(snakemake.log[0])
p = snakemake.params
manifest = hub.load_manifest(snakemake.input.manifest)
import_per_model_margins(
    hub.resolve_groups(manifest, p.files),
    range(*p.model_range),
    snakemake.output.margins,
    p.n_train,
    p.n_val,
)
