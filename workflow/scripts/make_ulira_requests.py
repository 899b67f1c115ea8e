from unlearnbench import logs, pool_jobs
from unlearnbench.data import load_splits

logs.to_file(snakemake.log[0])
pool_jobs.make_ulira_requests(
    list(snakemake.input.pool),
    snakemake.params.target_pool,
    snakemake.params.n_requests,
    snakemake.params.request_size,
    snakemake.params.seed,
    snakemake.output.requests,
    labels=load_splits(snakemake.input.splits).y_train,
)
