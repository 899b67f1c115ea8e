"""Training: the loss goes down; batched training equals one-at-a-time; seeds rebuild a model alone."""

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from unlearnbench.augment import Augment
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
    """Equal up to float rounding (a grouped convolution sums in another order than a single one). Two
    epochs: longer runs at this learning rate amplify the rounding chaotically, by how much depends on the
    CPU's kernels (measured on an AVX-512 Xeon: 4e-7 after 2 epochs, 9e-7 after 4, 2e-3 after 8)."""
    splits, x, y = digits
    seeds = [11, 12, 13]
    together = ModelStack.initialise("digits_cnn", 10, 1, seeds, range(3))
    alone = ModelStack.initialise("digits_cnn", 10, 1, seeds, range(3))
    points = np.arange(0, splits.n_train, 3)
    recipe = dataclasses.replace(RECIPE, epochs=2, peak_epoch=1)
    train_stack(together, x, y, points, seeds, recipe)
    train_stack(alone, x, y, points, seeds, recipe, models_per_batch=1)
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


# --- recipe defaults, augmentation, speed switches, progress lines ------------------------------------------

SCHEMA = Path(__file__).resolve().parents[1] / "workflow/schemas/config.schema.yaml"


def test_recipe_defaults_are_the_schemas():
    """One source of defaults: a Recipe built in Python trains as the config with the same keys would."""
    recipe_schema = yaml.safe_load(SCHEMA.read_text())["$defs"]["recipe"]
    fields = {f.name: f for f in dataclasses.fields(Recipe)}
    assert set(fields) == set(recipe_schema["properties"])
    for name, spec in recipe_schema["properties"].items():
        if name in recipe_schema["required"]:
            assert fields[name].default is dataclasses.MISSING, name
        elif name == "augment":
            assert Recipe.from_config({"epochs": 1, "batch_size": 1, "lr": 1.0, "augment": spec["default"]}).augment \
                == fields[name].default == Augment()
            assert {k: v["default"] for k, v in spec["properties"].items()} == dataclasses.asdict(Augment())
        else:
            assert fields[name].default == spec["default"], name


def test_a_validated_config_builds_its_recipe_and_the_pool_recipe_defaults_to_train():
    from unlearnbench.config import validate

    config = yaml.safe_load((SCHEMA.parents[2] / "config/config.yaml").read_text())
    validate(config, SCHEMA)
    assert config["pool"]["train"] == config["train"] and config["pool"]["tta"] == "none"
    assert Recipe.from_config(config["pool"]["train"]) == Recipe.from_config(config["train"])
    assert not Recipe.from_config(config["train"]).augment.active  # digits: no augmentation by default
    config["pool"]["train"]["lr"] = 0.5
    assert config["train"]["lr"] == 0.2  # a copy, not the same recipe object


AUGMENT = Augment(flip=True, translate=1, cutout=2)


def test_batched_training_with_augmentation_equals_one_model_at_a_time(digits, monkeypatch):
    """Each model draws its own augmentation, whoever shares its batch. (Contiguous layout: channels-last
    convolutions round differently with the number of models, and augmented digits - zero-filled
    squares, exact ties in max-pooling - let that grow to 1e-4 in three epochs.)"""
    from unlearnbench import loop

    monkeypatch.setattr(loop.ENGINE, "channels_last", False)
    splits, x, y = digits
    seeds = [11, 12, 13]
    recipe = dataclasses.replace(RECIPE, epochs=3, augment=AUGMENT)
    together = ModelStack.initialise("digits_cnn", 10, 1, seeds, range(3))
    alone = ModelStack.initialise("digits_cnn", 10, 1, seeds, range(3))
    plain = ModelStack.initialise("digits_cnn", 10, 1, seeds, range(3))
    points = np.arange(0, splits.n_train, 3)
    train_stack(together, x, y, points, seeds, recipe)
    train_stack(alone, x, y, points, seeds, recipe, models_per_batch=1)
    train_stack(plain, x, y, points, seeds, dataclasses.replace(recipe, augment=Augment()))
    for name, value in together.params.items():
        torch.testing.assert_close(value, alone.params[name], rtol=1e-4, atol=1e-5)
    assert not torch.allclose(together.params["5.weight"], plain.params["5.weight"])  # it did augment


def test_augmentation_applies_to_the_batches_the_models_see(digits, monkeypatch):
    """Each model's batch is its own augmented images (spied at the forward), not the raw ones."""
    splits, x, y = digits
    seen = []
    forward = ModelStack.forward

    def spy(self, inputs, *, train, params=None):
        if train:
            seen.append(inputs.detach().clone())
        return forward(self, inputs, train=train, params=params)

    monkeypatch.setattr(ModelStack, "forward", spy)
    stack = ModelStack.initialise("digits_cnn", 10, 1, [1, 2], [0, 1])
    recipe = dataclasses.replace(RECIPE, epochs=1, batch_size=50, augment=Augment(cutout=3))
    train_stack(stack, x, y, np.arange(100), [1, 2], recipe)
    batch = seen[0]  # [2, 50, 1, 8, 8]
    squares = (batch == 0).flatten(2).sum(-1)
    assert (squares >= 9).all()  # every image lost a 3x3 square to the fill (0 = the mean colour)
    assert not torch.equal(batch[0], batch[1])  # the two models draw their own


@pytest.mark.parametrize("switch", [{"channels_last": True}, {"compile": True},
                                    {"compile": True, "channels_last": True}])
def test_speed_switches_leave_the_results_unchanged(digits, switch, monkeypatch):
    """channels_last (on by default for the conv nets on a GPU) and torch.compile (opt-in) only change
    the speed. On the CPU compile uses the "aot_eager" backend here: the same graph capture of the
    vmapped forward and its BatchNorm updates, without inductor's code generation (minutes on 2 cores)."""
    from unlearnbench import loop

    monkeypatch.setattr(loop.ENGINE, "compile_backend", "aot_eager")
    splits, x, y = digits
    seeds = [11, 12]
    recipe = dataclasses.replace(RECIPE, epochs=2, augment=AUGMENT)
    points = np.arange(0, splits.n_train, 3)
    reference = ModelStack.initialise("digits_cnn", 10, 1, seeds, range(2))
    switched = ModelStack.initialise("digits_cnn", 10, 1, seeds, range(2))
    monkeypatch.setattr(loop.ENGINE, "channels_last", False)
    train_stack(reference, x, y, points, seeds, recipe)
    monkeypatch.setattr(loop.ENGINE, "compile", switch.get("compile", False))
    monkeypatch.setattr(loop.ENGINE, "channels_last", switch.get("channels_last", False))
    train_stack(switched, x, y, points, seeds, recipe)
    for name, value in reference.params.items():
        torch.testing.assert_close(switched.params[name], value, rtol=1e-4, atol=1e-5)
        assert switched.params[name].is_contiguous()
    for name, value in reference.buffers.items():
        torch.testing.assert_close(switched.buffers[name].float(), value.float(), rtol=1e-4, atol=1e-5)


def test_the_log_has_a_progress_line_per_epoch_and_accuracies_at_report_epochs(digits, caplog):
    splits, x, y = digits
    stack = ModelStack.initialise("digits_cnn", 10, 1, [1, 2, 3, 4], range(4))
    recipe = dataclasses.replace(RECIPE, epochs=5)
    val = np.arange(splits.n_train, splits.n_train + splits.n_val)
    with caplog.at_level("INFO", logger="unlearnbench.loop"):
        train_stack(stack, x, y, np.arange(splits.n_train), [1, 2, 3, 4], recipe, models_per_batch=2,
                    eval_points={"train": np.arange(splits.n_train), "val": val})
    lines = [r.getMessage() for r in caplog.records]
    epochs = [m for m in lines if "samples/s" in m]
    assert len(epochs) == 2 * 5  # two slices of 2 models x 5 epochs, nothing per step
    assert epochs[0].startswith("train models 0-1: epoch 1/5,") and "ETA" in epochs[0] and "elapsed" in epochs[0]
    assert epochs[-1].startswith("train models 2-3: epoch 5/5,") and epochs[-1].endswith("ETA 0 s")
    accuracy = [m for m in lines if "accuracy" in m]
    assert len(accuracy) == 2 * 5  # epochs // 5 = every epoch here
    last = accuracy[-1]
    assert "train " in last and "val " in last
    assert float(last.split("val ")[1]) > 0.5


@pytest.mark.parametrize("arch, in_channels, side", [("digits_cnn", 1, 8), ("resnet9", 3, 16), ("resnet18", 3, 32)])
def test_the_folded_forward_is_vmaps_bit_for_bit(arch, in_channels, side):
    """Models folded into the channels of one network compute what vmap computes: logits (train and
    eval, per-model and shared inputs) and BatchNorm statistics bit for bit; gradients bit for bit for
    digits_cnn and resnet9, to float rounding for resnet18 (its overlapping max-pool windows add
    gradients in another order)."""
    from unlearnbench import wide

    folded_stack = ModelStack.initialise(arch, 10, in_channels, [1, 2, 3], range(3))
    assert wide.folded(arch, folded_stack._template) is not None
    vmapped = folded_stack.copy()
    gen = torch.Generator().manual_seed(0)
    x, labels = torch.randn(3, 5, in_channels, side, side, generator=gen), torch.randint(0, 10, (15,), generator=gen)
    for stack, forward in ((folded_stack, folded_stack.forward), (vmapped, vmapped.forward_vmap)):
        for v in stack.params.values():
            v.requires_grad_(True)
        logits = forward(x, train=True)
        torch.nn.functional.cross_entropy(logits.reshape(-1, 10), labels).backward()
        stack.train_logits = logits.detach()
    assert torch.equal(folded_stack.train_logits, vmapped.train_logits)
    for name in folded_stack.buffers:
        assert torch.equal(folded_stack.buffers[name], vmapped.buffers[name]), name
    for name in folded_stack.params:
        grads = folded_stack.params[name].grad, vmapped.params[name].grad
        if arch == "resnet18":
            torch.testing.assert_close(*grads, rtol=1e-5, atol=1e-5)
        else:
            assert torch.equal(*grads), name
    with torch.no_grad():
        shared = x[0]
        assert torch.equal(folded_stack.forward(shared, train=False), vmapped.forward_vmap(shared, train=False))
        assert torch.equal(folded_stack.forward(x, train=False), vmapped.forward_vmap(x, train=False))


def test_channels_last_stacks_keep_their_layout_through_slices_and_save_contiguous(tmp_path):
    stack = ModelStack.initialise("digits_cnn", 10, 1, [1, 2], [0, 1])
    plain = stack.copy()
    stack.to_channels_last()
    part = stack.select([1])
    assert part.channels_last and part.params["0.0.weight"][0].is_contiguous(memory_format=torch.channels_last)
    x = torch.randn(4, 1, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(stack.forward(x, train=False), plain.forward(x, train=False))
    stack.save(tmp_path / "w.safetensors")
    assert torch.equal(ModelStack.load(tmp_path / "w.safetensors").params["0.0.weight"], plain.params["0.0.weight"])


def test_eval_passes_in_channels_last_move_margins_by_float_rounding_only(digits, monkeypatch):
    from unlearnbench import stack as stack_module

    _, x, y = digits
    models = ModelStack.initialise("digits_cnn", 10, 1, [1, 2, 3], range(3))
    monkeypatch.setattr(stack_module.ENGINE, "eval_channels_last", False)
    contiguous = stack_margins(models, x, y)
    monkeypatch.setattr(stack_module.ENGINE, "eval_channels_last", True)
    np.testing.assert_allclose(stack_margins(models, x, y), contiguous, rtol=1e-5, atol=1e-5)
    assert not models.channels_last and models.params["0.0.weight"].is_contiguous()  # the stack is untouched


def test_eval_chunks_are_sized_from_one_models_widest_activation():
    """25 digits nets: the widest layer has 8 x 8 x 8 = 512 outputs per input and model, so chunks of
    1,500,000 / (25 x 512) = 117 inputs - also after a folded forward ran (its layers see all models)."""
    stack = ModelStack.initialise("digits_cnn", 10, 1, list(range(25)), range(25))
    with torch.no_grad():
        stack.forward(torch.zeros(2, 1, 8, 8), train=False)
    assert stack.eval_batch_size(torch.zeros(5, 1, 8, 8)) == 117
