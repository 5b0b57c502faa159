"""ResNet as a configurable, framework-neutral PyTorch module (torchvision-style names).

Own module rather than torchvision's: torchvision's Bottleneck fixes the stride on the 3x3 conv and
has no conv biases, while gluon's ResNet v1 (and Detectron's MSRA models) stride the 1x1 conv and
gluon v1 gives its 1x1 body convs a bias."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class ResNetConfig:
    block: str  # "basic" | "bottleneck"
    layers: tuple[int, ...]  # blocks per stage
    channels: tuple[int, ...]  # stem width, then each stage's output width
    num_classes: int = 1000
    stride_in_1x1: bool = True  # v1/MSRA: stride on the first 1x1 conv; v1b/torchvision: on the 3x3
    bias_1x1: bool = False  # gluon v1 bottlenecks: 1x1 body convs carry a bias
    bn_eps: float = 1e-5


def _bn(c: int, cfg: ResNetConfig) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c, eps=cfg.bn_eps)


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, cfg: ResNetConfig):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = _bn(cout, cfg)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = _bn(cout, cfg)
        self.relu = nn.ReLU()
        self.downsample = _downsample(cin, cout, stride, cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return self.relu(y + (self.downsample(x) if self.downsample is not None else x))


class Bottleneck(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, cfg: ResNetConfig):
        super().__init__()
        mid = cout // 4
        s1, s3 = (stride, 1) if cfg.stride_in_1x1 else (1, stride)
        self.conv1 = nn.Conv2d(cin, mid, 1, s1, 0, bias=cfg.bias_1x1)
        self.bn1 = _bn(mid, cfg)
        self.conv2 = nn.Conv2d(mid, mid, 3, s3, 1, bias=False)
        self.bn2 = _bn(mid, cfg)
        self.conv3 = nn.Conv2d(mid, cout, 1, 1, 0, bias=cfg.bias_1x1)
        self.bn3 = _bn(cout, cfg)
        self.relu = nn.ReLU()
        self.downsample = _downsample(cin, cout, stride, cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return self.relu(y + (self.downsample(x) if self.downsample is not None else x))


def _downsample(cin: int, cout: int, stride: int, cfg: ResNetConfig) -> nn.Sequential | None:
    if cin == cout and stride == 1:
        return None
    return nn.Sequential(nn.Conv2d(cin, cout, 1, stride, 0, bias=False), _bn(cout, cfg))


class ResNet(nn.Module):
    """Stem (7x7/2 conv, BN, ReLU, 3x3/2 max-pool), four stages, global average pool, fc."""

    def __init__(self, cfg: ResNetConfig):
        super().__init__()
        self.cfg = cfg
        block = {"basic": BasicBlock, "bottleneck": Bottleneck}[cfg.block]
        self.conv1 = nn.Conv2d(3, cfg.channels[0], 7, 2, 3, bias=False)
        self.bn1 = _bn(cfg.channels[0], cfg)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        cin = cfg.channels[0]
        for i, (n, cout) in enumerate(zip(cfg.layers, cfg.channels[1:])):
            blocks = [block(cin if j == 0 else cout, cout, 2 if (i > 0 and j == 0) else 1, cfg)
                      for j in range(n)]
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))
            cin = cout
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, cfg.num_classes)

    @property
    def stages(self) -> list[nn.Sequential]:
        return [getattr(self, f"layer{i + 1}") for i in range(len(self.cfg.layers))]

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        return self.maxpool(self.relu(self.bn1(self.conv1(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
        return self.fc(torch.flatten(self.avgpool(x), 1))
