from unlearnbench import hub, logs
from unlearnbench.published import import_forget_set

logs.to_file(snakemake.log[0])
manifest = hub.load_manifest(snakemake.input.manifest)
import_forget_set(
    hub.resolve(manifest, snakemake.params.file),
    snakemake.params.n_train,
    snakemake.output.indices,
)
