"""A deliberately tiny CNN for 8x8 digits: a few hundred models train in minutes on two CPU cores."""

from __future__ import annotations

from torch import nn

from .layers import conv_bn_relu


class DigitsCNN(nn.Sequential):
    def __init__(self, num_classes: int = 10, in_channels: int = 1, width: int = 8):
        super().__init__(
            conv_bn_relu(in_channels, width),  # 8x8
            nn.MaxPool2d(2),  # 4x4
            conv_bn_relu(width, 2 * width),
            nn.AdaptiveMaxPool2d(1),
            nn.Flatten(),
            nn.Linear(2 * width, num_classes),
        )
