"""Model architectures by name. Each builder returns a plain ``nn.Module`` for one model; the training
engine stacks many of them itself."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from .digits_cnn import DigitsCNN
from .resnet9 import ResNet9

MODELS: dict[str, Callable[..., nn.Module]] = {
    "digits_cnn": DigitsCNN,
    "resnet9": ResNet9,
    "resnet18": __import__("unlearnbench.models.resnet18", fromlist=["ResNet18"]).ResNet18,
}


def build_model(name: str, num_classes: int, in_channels: int) -> nn.Module:
    try:
        builder = MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; known: {sorted(MODELS)}") from None
    return builder(num_classes=num_classes, in_channels=in_channels)


__all__ = ["MODELS", "build_model"]
