# Serves train_base, train_oracle (a forget_set input) and train_pool (a pool_seed param).
from unlearnbench import jobs, logs

logs.to_file(snakemake.log[0])
jobs.train_shard(
    snakemake.input.splits,
    snakemake.output.weights,
    model=snakemake.params.model,
    recipe=snakemake.params.recipe,
    model_range=snakemake.params.model_range,
    seeds=snakemake.params.seeds,
    forget_set=snakemake.input.get("forget_set"),
    pool_seed=snakemake.params.get("pool_seed"),
    threads=snakemake.threads,
    device=snakemake.params.device,
    models_per_batch=snakemake.params.models_per_batch,
    compile=snakemake.params.compile,
)
