# Serves train_base and train_oracle: oracles differ only by their forget_set input.
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
    threads=snakemake.threads,
    device=snakemake.params.device,
    models_per_batch=snakemake.params.models_per_batch,
)
