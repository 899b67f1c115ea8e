from unlearnbench import hub, logs

logs.to_file(snakemake.log[0])
p = snakemake.params
hub.fetch(
    hub.Source(p.repo, p.revision),
    list(p.files),
    dict(p.pins),
    p.lock,
    snakemake.output.manifest,
)
