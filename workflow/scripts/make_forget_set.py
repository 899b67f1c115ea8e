from unlearnbench import jobs, logs
from unlearnbench.downloads import verify_sha256

logs.to_file(snakemake.log[0])
entry = dict(snakemake.params.entry)
if "user_file" in snakemake.input.keys():
    # the user's file, or the download of its url when the user has none (results/downloads/)
    source = snakemake.input.user_file
    verify_sha256(source, entry.get("sha256"), f"forget set {entry['id']}: the file {source}")
    entry["path"] = source
jobs.make_forget_set(
    entry,
    snakemake.params.seed,
    snakemake.params.n_train,
    snakemake.output.indices,
    splits=snakemake.input.get("splits"),
    datamodels=snakemake.input.get("datamodels"),
)
