"""Model architectures by name. Each builder returns a plain ``nn.Module`` for one model; the training
engine stacks many of them itself.

One table, :data:`MODELS`, of one kind of entry (the convention of :mod:`unlearnbench.registry`): add a model
with its module and one line here. The table imports no torch; a builder is imported when a model is built.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .. import registry

if TYPE_CHECKING:
    from torch import nn


@dataclass(frozen=True)
class ModelSpec:
    target: str  # "module:class", called as class(num_classes=..., in_channels=...)
    parameters: int  # its size where it is used (the size guard's memory estimate; tests/test_plan_size.py checks)

    def build(self, num_classes: int, in_channels: int) -> nn.Module:
        return registry.load(self.target)(num_classes=num_classes, in_channels=in_channels)


MODELS: dict[str, ModelSpec] = {
    "digits_cnn": ModelSpec("unlearnbench.models.digits_cnn:DigitsCNN", parameters=1_442),
    "resnet9": ModelSpec("unlearnbench.models.resnet9:ResNet9", parameters=2_274_880),
    "resnet18": ModelSpec("unlearnbench.models.resnet18:ResNet18", parameters=11_185_233),
}


def build_model(name: str, num_classes: int, in_channels: int) -> nn.Module:
    return registry.find(MODELS, name, "model").build(num_classes, in_channels)


__all__ = ["MODELS", "ModelSpec", "build_model"]
