"""benchmarks/device_check.sh: its generated data and DAG config are valid (fast), and ``--smoke`` runs every
section end to end on the CPU (the check CI runs, so the GPU benchmark cannot rot)."""

from __future__ import annotations

import csv
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO
from unlearnbench.config import validate
from unlearnbench.data import load_dataset

sys.path.insert(0, str(REPO / "benchmarks"))
import device_check  # noqa: E402  (benchmarks/ is not a package)

SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"


def test_generated_cifar10_is_read_back_by_the_real_loader(tmp_path):
    device_check.write_cifar10(tmp_path, per_batch=3)
    splits = load_dataset("cifar10", root=str(tmp_path), download=False, verify_checksums=False)
    assert splits.x_train.shape == (15, 3, 32, 32) and splits.x_val.shape == (3, 3, 32, 32)
    assert splits.x_train.dtype == np.uint8 and len(set(splits.x_train[:, 0, 0, 0].tolist())) > 1


@pytest.mark.parametrize("smoke", [False, True])
def test_the_dag_config_is_valid_and_trains_the_published_recipe(smoke):
    sizes = device_check.SMOKE if smoke else device_check.FULL
    recipe = device_check.published_recipe()
    config = validate(device_check.dag_config(sizes, recipe, threads=1, smoke=smoke, jobs_per_gpu=2), SCHEMA)
    assert config["n_models"] == sizes["dag_models"] and config["train"]["epochs"] == sizes["dag_epochs"]
    assert config["data"]["n_train"] == 5 * sizes["dag_images_per_batch"]
    assert config["resources"]["jobs_per_gpu"] == 2
    if not smoke:  # the published recipe, only shortened: N = 8, 2 epochs, the peak at the same fraction
        assert (recipe.epochs, recipe.batch_size, recipe.lr, recipe.momentum) == (24, 256, 0.4, 0.9)
        assert config["n_models"] == 8 and config["train"]["epochs"] == 2
        assert config["train"]["batch_size"] == 256 and config["train"]["lr"] == 0.4
        assert config["train"]["peak_epoch"] == pytest.approx(recipe.peak_epoch * 2 / 24)


def test_flops_per_image_are_resnet9s_convolutions():
    train, forward = device_check.flops_per_image()
    # the first conv alone: 3x3x3 -> 64 channels on 32x32, 2 FLOPs per multiply-add
    assert forward > 2 * 27 * 64 * 32 * 32
    assert 2.5 < train / forward < 3.5  # backward = gradients of inputs and of weights: about 2x the forward


@pytest.mark.workflow
def test_smoke_mode_runs_every_section_and_the_dag(tmp_path):
    work = tmp_path / "check"
    proc = subprocess.run(["bash", str(REPO / "benchmarks" / "device_check.sh"), "--smoke", "--workdir", str(work)],
                          capture_output=True, text=True, timeout=1200, env={**os.environ, "PYTHON": sys.executable})
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    out = proc.stdout
    for heading in ("## 1. Training", "## 2. k processes", "## 3. Margin pass", "## 4. The DAG"):
        assert heading in out
    training = out.split("## 1. Training", 1)[1].split("## 2.", 1)[0]
    rows = [line.split("|")[1:-1] for line in training.splitlines() if line.startswith("| ") and "M |" not in line]
    assert [int(r[0]) for r in rows] == device_check.SMOKE["stacks"]
    assert all(float(r[3].replace(",", "")) > 0 for r in rows)  # models/hour measured
    with open(work / "workflow-copy" / "results" / "klom_summary.csv") as fh:
        summary = list(csv.DictReader(fh))
    assert {r["method"] for r in summary} == {"do_nothing", "oracle", "gradient_ascent"}
    assert {(r["dataset"], r["model"]) for r in summary} == {("cifar10", "resnet9")}
