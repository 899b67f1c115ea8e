"""Layers of an architecture by parameter name: "the last k layers", and re-initialising them.

A *layer* here is a weight layer (convolution or linear) together with the normalisation layers that follow
it before the next weight layer, in the order the architecture registers its modules (its forward order
for every built-in model). Goel et al. (2022) count layers of their networks without fixing a rule for
normalisation; keeping a BatchNorm with its convolution is the project's choice: it never splits a block.
"""

from __future__ import annotations

import torch
from torch import nn

from .stack import ModelStack

WEIGHT_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


def weight_layers(stack: ModelStack) -> list[list[str]]:
    """Parameter names of each layer, first layer first."""
    layers: list[list[str]] = []
    for prefix, module in stack._template.named_modules():
        own = [f"{prefix}.{n}" if prefix else n for n, _ in module.named_parameters(recurse=False)]
        if not own:
            continue
        if isinstance(module, WEIGHT_LAYERS) or not layers:
            layers.append(own)
        else:
            layers[-1].extend(own)
    return layers


def last_layers(stack: ModelStack, k: int) -> list[str]:
    """Parameter names of the last ``k`` layers (all of them if the model has fewer)."""
    if k < 1:
        raise ValueError(f"k counts layers from the output and is at least 1, got {k}")
    return [name for layer in weight_layers(stack)[-k:] for name in layer]


def buffers_of(stack: ModelStack, params) -> list[str]:
    """Buffers (BatchNorm statistics) of the modules that own ``params``."""
    modules = {name.rpartition(".")[0] for name in params}
    return [k for k in stack.buffers if k.rpartition(".")[0] in modules]


@torch.no_grad()
def reinitialise(stack: ModelStack, fresh: ModelStack, names) -> None:
    """Copy parameters ``names`` and their modules' buffers from ``fresh`` (same models, new
    initialisation) into ``stack`` in place."""
    for k in names:
        stack.params[k].copy_(fresh.params[k].to(stack.device))
    for k in buffers_of(stack, names):
        stack.buffers[k].copy_(fresh.buffers[k].to(stack.device))
