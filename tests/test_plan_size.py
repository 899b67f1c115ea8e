"""The size guard's estimates (unlearnbench.plan_size) against the real models and the real DAG."""

from __future__ import annotations

import pytest
import yaml

from conftest import REPO, planned_jobs, snakemake
from unlearnbench.config import dataset_spec, validate
from unlearnbench.models import build_model
from unlearnbench.plan_size import PARAMETERS, estimate, grid_size

SCHEMA = REPO / "workflow/schemas/config.schema.yaml"


@pytest.mark.parametrize("arch, num_classes, in_channels", [("digits_cnn", 10, 1), ("resnet9", 10, 3),
                                                             ("resnet18", 17, 3)])
def test_parameter_counts_are_the_models(arch, num_classes, in_channels):
    real = sum(p.numel() for p in build_model(arch, num_classes, in_channels).parameters())
    assert PARAMETERS[arch] == pytest.approx(real, rel=0.01)


def test_grid_size_is_the_product_of_the_axes_without_snapshots():
    assert grid_size({"lr": [1, 2, 3], "batch_size": 64, "ascent_epochs": [3, 5], "epochs": [1, 2, 3, 4]}) == 6
    assert grid_size(None) == 1 and grid_size({"epochs": [1]}) == 1


def load(path):
    return validate(yaml.safe_load((REPO / path).read_text()), SCHEMA)


def test_the_shipped_configs_are_far_inside_the_limits():
    for path in ("config/config.yaml", "config/cifar10.yaml", "config/living17.yaml"):
        config = load(path)
        size = estimate(config, dataset_spec(config))
        assert size.jobs * 5 < config["limits"]["max_jobs"]
        assert size.largest_job[1] < config["limits"]["max_job_memory_gib"] * 2**30 / 2


@pytest.mark.workflow
@pytest.mark.parametrize("path", [".test/config/config.yaml", ".test/config/pool.yaml"])
def test_the_job_estimate_is_close_to_the_dag(workflow_copy, path):
    config = load(path)
    jobs = sum(planned_jobs(snakemake(workflow_copy, "-n", "--configfile", path)).values())
    assert jobs <= estimate(config, dataset_spec(config)).jobs <= 2 * jobs
