"""The pool's own recipe and margins: U-LiRA's retrained oracles train with the pool recipe and the same
mixed precision as every family; flip-TTA margins reach the pool's margins and every U-LiRA margin."""

import numpy as np
import pytest
import torch

from unlearnbench import training
from unlearnbench.data import load_dataset, save_splits
from unlearnbench.margins import margins_from_logits
from unlearnbench.metrics.ulira import pool_mask
from unlearnbench.stack import ModelStack
from unlearnbench.stages.margins import compute_margins
from unlearnbench.stages.pool import ulira_unlearn
from unlearnbench.storage import load_arrays, save_arrays

POOL_RECIPE = {"epochs": 1, "batch_size": 64, "lr": 0.5, "label_smoothing": 0.1, "momentum": 0.9,
               "augment": {"flip": True, "translate": 1, "cutout": 2}}


@pytest.fixture(scope="module")
def pool_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("pool")
    splits = load_dataset("digits")
    save_splits(root / "splits.npz", splits)
    stack = ModelStack.initialise("digits_cnn", 10, 1, [1, 2], [0, 1])
    masks = np.stack([pool_mask(splits.n_train, m, 0) for m in range(2)])
    stack.extras["train_mask"] = masks
    stack.save(root / "pool.safetensors")
    requests = np.stack([np.flatnonzero(mask)[:3][None] for mask in masks])  # [M, K=1, s=3]
    save_arrays(root / "requests.npz", requests=requests, target_pool=np.unique(requests), train_mask=masks)
    return root, splits


def test_flip_tta_margins_of_the_pool(pool_files):
    root, splits = pool_files
    compute_margins(str(root / "pool.safetensors"), str(root / "splits.npz"), str(root / "tta.npz"),
                    device="cpu", keep_logits=False, tta="flip")
    compute_margins(str(root / "pool.safetensors"), str(root / "splits.npz"), str(root / "plain.npz"),
                    device="cpu", keep_logits=False, tta="none")
    stack = ModelStack.load(root / "pool.safetensors")
    x, y = splits.inputs(), torch.from_numpy(splits.labels())
    with torch.no_grad():
        mean_logits = (stack.forward(x, train=False) + stack.forward(x.flip(-1), train=False)) / 2
    tta = load_arrays(root / "tta.npz", ("margins", "train_mask"))
    np.testing.assert_allclose(tta["margins"], margins_from_logits(mean_logits, y).numpy(), rtol=1e-5, atol=1e-5)
    assert not np.allclose(tta["margins"], load_arrays(root / "plain.npz", ("margins",))["margins"])


def test_ulira_oracles_retrain_with_the_pool_recipe_mixed_precision_and_tta(pool_files, monkeypatch):
    root, _ = pool_files
    calls = []

    def spy(stack, inputs, labels, points, seeds, recipe, models_per_batch=None, amp=False, **kwargs):
        calls.append({"recipe": recipe, "amp": amp, "tta": stack.tta, "points": points})

    monkeypatch.setattr(training, "train_stack", spy)
    monkeypatch.setattr(training, "mixed_precision", lambda device: True)  # as on a GPU
    compute_margins(str(root / "pool.safetensors"), str(root / "splits.npz"), str(root / "margins.npz"),
                    device="cpu", keep_logits=False, tta="flip")
    ulira_unlearn(weights=str(root / "pool.safetensors"), pool_margins=str(root / "margins.npz"),
                  requests=str(root / "requests.npz"), splits=str(root / "splits.npz"), runs=str(root / "out.npz"),
                  method="oracle", hyperparameters={}, epochs=[], plugins={}, seeds={"oracle": [[5, 6]]},
                  recipe=POOL_RECIPE, tta="flip", device="cpu", models_per_batch=None, compile=False)
    (call,) = calls
    assert call["recipe"] == training.Recipe.from_config(POOL_RECIPE) and call["recipe"].augment.active
    assert call["amp"] is True  # the same mixed precision as base, oracle and pool training on a GPU
    assert call["tta"] == "flip"
    assert call["points"].shape[1] == 150 - 3  # the pool model's half minus its request
