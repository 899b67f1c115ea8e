from unlearnbench import logs
from unlearnbench.downloads import fetch_forget_set

logs.to_file(snakemake.log[0])
p = snakemake.params
fetch_forget_set(
    p.url,
    snakemake.output.indices,
    max_bytes=p.max_bytes,
    sha256=p.sha256,
    allow_http=p.allow_http,
    user_path=p.user_path,
)
