"""The published CIFAR-10 setting, exactly (spec §3): ResNet-9's layers and size, the lr schedule,
and batched ResNet-9 training equal to one model at a time."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from unlearnbench.loop import even_batches
from unlearnbench.models import build_model
from unlearnbench.models.layers import Residual
from unlearnbench.models.resnet9 import ResNet9
from unlearnbench.stack import ModelStack
from unlearnbench.training import Recipe, lr_at, train_stack

PUBLISHED = Recipe(epochs=24, lr=0.4, peak_epoch=5, batch_size=256, schedule="triangle", momentum=0.9,
                   weight_decay=5e-4)


def conv_specs(module: nn.Module):
    """(in, out, kernel, stride, padding, bias) of every convolution, in forward order."""
    return [(m.in_channels, m.out_channels, m.kernel_size[0], m.stride[0], m.padding[0], m.bias is not None)
            for m in module.modules() if isinstance(m, nn.Conv2d)]


def test_resnet9_has_the_published_parameter_count():
    model = ResNet9()
    assert sum(p.numel() for p in model.parameters()) == 2_274_880
    assert sum(p.numel() for p in build_model("resnet9", 10, 3).parameters()) == 2_274_880


def test_resnet9_layer_sequence_matches_the_spec():
    net = ResNet9().net
    assert conv_specs(net) == [
        (3, 64, 3, 1, 1, False),
        (64, 128, 5, 2, 2, False),  # k5 s2 p2
        (128, 128, 3, 1, 1, False),
        (128, 128, 3, 1, 1, False),
        (128, 256, 3, 1, 1, False),
        (256, 256, 3, 1, 1, False),
        (256, 256, 3, 1, 1, False),
        (256, 128, 3, 1, 0, False),  # padding 0 in the last block
    ]
    # every conv is followed by BatchNorm then ReLU
    blocks = [m for m in net.modules() if isinstance(m, nn.Sequential) and isinstance(m[0], nn.Conv2d)]
    assert len(blocks) == 8
    for block in blocks:
        assert [type(m) for m in block] == [nn.Conv2d, nn.BatchNorm2d, nn.ReLU]
    kinds = [type(m) for m in net]
    assert kinds == [nn.Sequential, nn.Sequential, Residual, nn.Sequential, nn.MaxPool2d, Residual,
                     nn.Sequential, nn.AdaptiveMaxPool2d, nn.Flatten, nn.Linear]
    assert net[4].kernel_size == 2
    assert net[7].output_size == 1
    head = net[-1]
    assert (head.in_features, head.out_features, head.bias) == (128, 10, None)


def test_resnet9_output_shape_and_logit_scale():
    torch.manual_seed(0)
    model = ResNet9().eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        out = model(x)
        assert out.shape == (2, 10)
        torch.testing.assert_close(out, model.net(x) * 0.2)
    assert model.logit_scale == 0.2


def test_residual_adds_its_input():
    inner = nn.Conv2d(2, 2, 1)
    x = torch.randn(1, 2, 3, 3)
    with torch.no_grad():
        torch.testing.assert_close(Residual(inner)(x), x + inner(x))


def test_published_lr_schedule():
    steps = math.ceil(50_000 / 256)
    assert steps == 196 == len(even_batches(50_000, 256))
    assert lr_at(PUBLISHED, 0, steps) == 0.0  # the very first step has lr 0
    assert lr_at(PUBLISHED, 5 * steps, steps) == pytest.approx(0.4)
    assert lr_at(PUBLISHED, 24 * steps, steps) == pytest.approx(0.0, abs=1e-12)
    assert lr_at(PUBLISHED, 1, steps) == pytest.approx(0.4 / (5 * steps))
    # linear down from the peak: half-way between epoch 5 and 24 is half the peak
    assert lr_at(PUBLISHED, round(14.5 * steps), steps) == pytest.approx(0.2)
    lrs = [lr_at(PUBLISHED, s, steps) for s in range(24 * steps + 1)]
    assert max(lrs) == pytest.approx(0.4) and int(np.argmax(lrs)) == 5 * steps
    assert min(lrs) >= 0.0


def test_batched_resnet9_training_equals_one_model_at_a_time():
    """Two ResNet-9s (BatchNorm included) trained together in one vmapped forward equal the same two
    trained one after the other: 8 images of 16x16 (small enough for a CPU test; the layers are the
    published ones), batch 4, so 2 optimiser steps."""
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(8, 3, 16, 16, generator=gen)
    y = torch.randint(0, 10, (8,), generator=gen)
    recipe = Recipe(epochs=1, batch_size=4, lr=0.05, schedule="constant", momentum=0.9, weight_decay=5e-4)
    seeds = [21, 22]
    together = ModelStack.initialise("resnet9", 10, 3, seeds, range(2))
    alone = ModelStack.initialise("resnet9", 10, 3, seeds, range(2))
    before = {k: v.clone() for k, v in together.params.items()}
    train_stack(together, x, y, np.arange(8), seeds, recipe)
    train_stack(alone, x, y, np.arange(8), seeds, recipe, models_per_batch=1)
    assert not torch.equal(before["net.0.0.weight"], together.params["net.0.0.weight"])  # it trained
    for name, value in together.params.items():
        torch.testing.assert_close(value, alone.params[name], rtol=1e-4, atol=1e-5)
    for name, value in together.buffers.items():  # running statistics, per model
        torch.testing.assert_close(value.float(), alone.buffers[name].float(), rtol=1e-4, atol=1e-5)
    assert not torch.equal(together.buffers["net.0.1.running_mean"][0], together.buffers["net.0.1.running_mean"][1])
