"""Training: the loss goes down; batched training equals one-at-a-time; seeds rebuild a model alone."""

import numpy as np
import pytest
import torch

from unlearnbench.data import load_dataset
from unlearnbench.margins import stack_margins
from unlearnbench.stack import ModelStack
from unlearnbench.training import Recipe, lr_at, train_stack

RECIPE = Recipe(epochs=8, batch_size=32, lr=0.2, peak_epoch=2, momentum=0.9, weight_decay=5e-4)


@pytest.fixture(scope="module")
def digits():
    splits = load_dataset("digits")
    return splits, splits.inputs(), torch.from_numpy(splits.labels())


def test_training_lowers_the_loss(digits):
    splits, x, y = digits
    stack = ModelStack.initialise("digits_cnn", 10, 1, [1, 2], [0, 1])
    before = stack_margins(stack, x, y)
    train_stack(stack, x, y, np.arange(splits.n_train), [1, 2], RECIPE)
    after = stack_margins(stack, x, y)
    n = splits.n_train
    assert (after[:, n:] > 0).mean() > 0.8 > (before[:, n:] > 0).mean()
    assert after[:, :n].mean() > before[:, :n].mean() + 2


def test_batched_training_equals_one_model_at_a_time(digits):
    splits, x, y = digits
    seeds = [11, 12, 13]
    together = ModelStack.initialise("digits_cnn", 10, 1, seeds, range(3))
    alone = ModelStack.initialise("digits_cnn", 10, 1, seeds, range(3))
    points = np.arange(0, splits.n_train, 3)
    train_stack(together, x, y, points, seeds, RECIPE)
    train_stack(alone, x, y, points, seeds, RECIPE, models_per_batch=1)
    for name, value in together.params.items():
        torch.testing.assert_close(value, alone.params[name], rtol=1e-4, atol=1e-5)
    for name, value in together.buffers.items():  # BatchNorm running statistics included
        torch.testing.assert_close(value.float(), alone.buffers[name].float(), rtol=1e-4, atol=1e-5)


def test_a_model_is_rebuilt_alone_from_its_seed(digits):
    splits, x, y = digits
    points = np.arange(0, splits.n_train, 4)
    pair = ModelStack.initialise("digits_cnn", 10, 1, [5, 6], [0, 1])
    train_stack(pair, x, y, points, [5, 6], RECIPE)
    single = ModelStack.initialise("digits_cnn", 10, 1, [6], [1])
    train_stack(single, x, y, points, [6], RECIPE)
    np.testing.assert_allclose(stack_margins(pair, x, y)[1], stack_margins(single, x, y)[0], rtol=1e-4, atol=1e-4)


def test_triangular_schedule_starts_at_zero_peaks_and_ends_at_zero():
    r = Recipe(epochs=24, lr=0.4, peak_epoch=5, batch_size=256)
    steps = 196
    assert lr_at(r, 0, steps) == 0.0
    assert lr_at(r, 5 * steps, steps) == pytest.approx(0.4)
    assert lr_at(r, 24 * steps, steps) == pytest.approx(0.0)
    assert lr_at(r, 5 * steps // 2, steps) == pytest.approx(0.2)


def test_weights_round_trip_through_safetensors(tmp_path, digits):
    _, x, y = digits
    stack = ModelStack.initialise("digits_cnn", 10, 1, [3, 4], [7, 8])
    stack.save(tmp_path / "w.safetensors")
    loaded = ModelStack.load(tmp_path / "w.safetensors")
    assert loaded.model_index.tolist() == [7, 8]
    np.testing.assert_array_equal(stack_margins(stack, x, y), stack_margins(loaded, x, y))
    single = loaded.to_module(1).eval()
    with torch.no_grad():
        torch.testing.assert_close(single(x[:5]), stack.forward(x[:5], train=False)[1])


def test_batchnorm_can_be_exempt_from_weight_decay():
    from unlearnbench.loop import Optimiser

    stack = ModelStack.initialise("digits_cnn", 10, 1, [1], [0])
    bn = stack.batchnorm_params()
    assert bn == {"0.1.weight", "0.1.bias", "2.1.weight", "2.1.bias"}
    groups = Optimiser("sgd", weight_decay=0.1, decay_batchnorm=False).build(stack.params, bn).param_groups
    assert [g["weight_decay"] for g in groups] == [0.1, 0.0] and len(groups[1]["params"]) == 4
    assert len(Optimiser("sgd", weight_decay=0.1).build(stack.params, bn).param_groups) == 1
