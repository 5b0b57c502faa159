"""DarkNet-53 (the YOLOv3 backbone, as an ImageNet classifier) as a configurable, framework-neutral
PyTorch module. Own module: torchvision has no DarkNet.

Switches: gluoncv's net (the defaults) has LeakyReLU(0.1) after every BN; PaddleClas's has ReLU, and
its ``BatchNorm(act="relu")`` layer returns the activated output, so ``bn_act`` moves the activation
into the BN module (``BatchNormAct``, same state-dict keys) and parity compares like with like."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .paddle_ops import BatchNormAct


@dataclass(frozen=True)
class DarkNetConfig:
    layers: tuple[int, ...] = (1, 2, 8, 8, 4)  # residual blocks per stage
    channels: tuple[int, ...] = (32, 64, 128, 256, 512, 1024)  # stem width, then each stage's
    num_classes: int = 1000
    bn_eps: float = 1e-5
    leaky_slope: float = 0.1  # LeakyReLU negative slope after every BatchNorm
    stem_stride: int = 1  # the 3x3 stem conv does not downsample; each stage's first conv does
    act: str = "leaky"  # "leaky" (LeakyReLU(leaky_slope), gluoncv) | "relu" (PaddleClas) | "mish" (PP-YOLOv2)
    bn_act: bool = False  # the activation runs inside the BN module (Paddle's BatchNorm(act=...))


def activation(cfg: DarkNetConfig) -> nn.Module:
    if cfg.act == "leaky":
        return nn.LeakyReLU(cfg.leaky_slope)
    if cfg.act == "relu":
        return nn.ReLU()
    if cfg.act == "mish":
        return nn.Mish()
    raise ValueError(f"unknown DarkNet activation {cfg.act!r}")


class ConvBNLeaky(nn.Module):
    """Bias-free conv (padding k // 2), BatchNorm, activation (LeakyReLU by default)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, cfg: DarkNetConfig):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False)
        if cfg.bn_act:
            self.bn = BatchNormAct(cout, activation(cfg), eps=cfg.bn_eps)
            self.act = nn.Identity()
        else:
            self.bn = nn.BatchNorm2d(cout, eps=cfg.bn_eps)
            self.act = activation(cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class Residual(nn.Module):
    """1x1 conv to half the width, 3x3 conv back; identity added after, with no activation."""

    def __init__(self, channels: int, cfg: DarkNetConfig):
        super().__init__()
        self.conv1 = ConvBNLeaky(channels, channels // 2, 1, 1, cfg)
        self.conv2 = ConvBNLeaky(channels // 2, channels, 3, 1, cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(self.conv1(x))


class Stage(nn.Module):
    """A 3x3 stride-2 conv (``down``), then residual blocks at the new width."""

    def __init__(self, cin: int, cout: int, n: int, cfg: DarkNetConfig):
        super().__init__()
        if cout % 2:
            raise ValueError(f"DarkNet stage width must be even, got {cout}")
        self.down = ConvBNLeaky(cin, cout, 3, 2, cfg)
        self.blocks = nn.Sequential(*(Residual(cout, cfg) for _ in range(n)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.down(x))


class DarkNet(nn.Module):
    """Stem 3x3 conv, five stages, global average pool, Linear."""

    def __init__(self, cfg: DarkNetConfig):
        super().__init__()
        if len(cfg.channels) != len(cfg.layers) + 1:
            raise ValueError("DarkNet needs one width per stage plus the stem's")
        self.cfg = cfg
        self.stem = ConvBNLeaky(3, cfg.channels[0], 3, cfg.stem_stride, cfg)
        self.stages = nn.Sequential(*(Stage(cin, cout, n, cfg) for n, cin, cout
                                      in zip(cfg.layers, cfg.channels, cfg.channels[1:])))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cfg.channels[-1], cfg.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.stages(self.stem(x))), 1))
