from unlearnbench import hub, logs
from unlearnbench.published import published_forget_set
from unlearnbench.storage import save_npy

logs.to_file(snakemake.log[0])
manifest = hub.load_manifest(snakemake.input.manifest)
indices = published_forget_set(hub.resolve(manifest, snakemake.params.file), snakemake.params.n_train)
save_npy(snakemake.output.indices, sorted(indices))  # a forget set is sorted indices (forget_sets.py)
