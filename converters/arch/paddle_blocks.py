"""Blocks every Paddle mobile family shares (MobileNetV3 classifiers, PP-OCR's direction classifier,
PP-LCNetV3 in PP-OCRv4): width rounding, conv-BN-activation, squeeze-excite with Paddle's gate."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .paddle_ops import HardSigmoid, HardSwish


def make_divisible(v: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round to the nearest multiple of ``divisor``, never more than 10% below ``v``."""
    min_value = min_value or divisor
    new = max(min_value, int(v + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * v else new


def activation(name: str | None) -> nn.Module:
    if name is None:
        return nn.Identity()
    if name == "relu":
        return nn.ReLU()
    if name == "hardswish":
        return HardSwish()
    raise ValueError(f"unknown activation {name!r}")


class ConvBNAct(nn.Module):
    """Bias-free conv, BatchNorm, optional activation (Paddle's ConvBNLayer); padding
    (kernel - 1) // 2 x dilation keeps the size at stride 1."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int | tuple[int, int] = 1,
                 groups: int = 1, act: str | None = None, bn_eps: float = 1e-5, dilation: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2 * dilation, dilation,
                              groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=bn_eps)
        self.act = activation(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class SqueezeExcite(nn.Module):
    """x * hard_sigmoid(expand(relu(reduce(mean(x))))), 1x1 convs with bias. ``shortcut`` adds x
    back (x + x * gate), as PP-OCR's RSE neck layers do."""

    def __init__(self, channels: int, reduction: int = 4, slope: float = 0.2, offset: float = 0.5,
                 shortcut: bool = False):
        super().__init__()
        self.reduce = nn.Conv2d(channels, channels // reduction, 1)
        self.expand = nn.Conv2d(channels // reduction, channels, 1)
        self.gate = HardSigmoid(slope, offset)
        self.shortcut = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = self.gate(self.expand(F.relu(self.reduce(F.adaptive_avg_pool2d(x, 1)))))
        return x + x * g if self.shortcut else x * g
