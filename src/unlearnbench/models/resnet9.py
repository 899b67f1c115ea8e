"""ResNet-9 exactly as the published CIFAR-10 benchmark (spec §3): 2,274,880 parameters."""

from __future__ import annotations

import torch
from torch import nn

from .layers import Residual, conv_bn_relu


class ResNet9(nn.Module):
    def __init__(self, num_classes: int = 10, in_channels: int = 3, logit_scale: float = 0.2):
        super().__init__()
        self.net = nn.Sequential(
            conv_bn_relu(in_channels, 64, 3, 1, 1),
            conv_bn_relu(64, 128, 5, 2, 2),
            Residual(nn.Sequential(conv_bn_relu(128, 128), conv_bn_relu(128, 128))),
            conv_bn_relu(128, 256, 3, 1, 1),
            nn.MaxPool2d(2),
            Residual(nn.Sequential(conv_bn_relu(256, 256), conv_bn_relu(256, 256))),
            conv_bn_relu(256, 128, 3, 1, 0),
            nn.AdaptiveMaxPool2d(1),
            nn.Flatten(),
            nn.Linear(128, num_classes, bias=False),
        )
        self.logit_scale = logit_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x) * self.logit_scale
