"""ResNet-18 for Living-17 (spec §9): torchvision's ``resnet18`` with a ``num_classes``-way head (17).

torchvision is imported inside the constructor so that the model registry stays cheap to import. The
architecture and the initialisation are torchvision's own (Kaiming-normal convolutions, BatchNorm
weight 1 / bias 0, default Linear init), so ``torch.manual_seed(s)`` before construction gives the
same model as ``torchvision.models.resnet18(num_classes=...)`` built after the same seed. A data set
with other than 3 input channels gets a matching first convolution (same shape rules, fresh init).
"""

from __future__ import annotations

from torch import nn


class ResNet18(nn.Module):
    def __init__(self, num_classes: int = 17, in_channels: int = 3):
        super().__init__()
        from torchvision.models import resnet18

        net = resnet18(weights=None, num_classes=num_classes)
        if in_channels != 3:
            net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
            nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")
        # torchvision uses ReLU(inplace=True); in-place ops on vmapped BatchNorm outputs are fine for
        # autograd, but out-of-place keeps functional_call/vmap free of aliasing surprises.
        for module in net.modules():
            if isinstance(module, nn.ReLU):
                module.inplace = False
        self.net = net

    def forward(self, x):
        return self.net(x)
