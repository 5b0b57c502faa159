"""ResNeXt / SE-ResNeXt / SENet as one configurable, framework-neutral PyTorch module.

Names follow torchvision's ResNet (``conv1``, ``layerN.M.conv1..3``, ``downsample.0/1``, ``fc``), so a
plain ResNeXt's state dict loads into torchvision's ResNet unchanged. Own module rather than
torchvision's because torchvision has no squeeze-and-excitation gate, no deep (three 3x3 conv) stem,
no ceil-mode stem pool, no halved first 1x1 conv and no 3x3 projection shortcut, which SENet needs."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class ResNeXtConfig:
    layers: tuple[int, ...]  # blocks per stage
    cardinality: int  # groups of each block's 3x3 conv
    bottleneck_width: int  # channels per group at stage 1 (the "4" of 32x4d); doubles per stage
    se: bool = False  # squeeze-and-excitation gate on each block's residual branch
    deep_stem: bool = False  # three 3x3 convs (64, 64, 128; the first stride 2) instead of one 7x7/2
    pool_padding: int = 1  # stem 3x3/2 max-pool padding
    pool_ceil: bool = False  # stem max-pool output size rounded up (MXNet pooling_convention='full')
    half_first_1x1: bool = False  # the block's first 1x1 conv has half the grouped conv's width
    downsample_kernel: int = 1  # projection shortcut kernel in stages 2+ (stage 1 is always 1x1)
    dropout: float = 0.0  # before the classifier (identity in eval)
    num_classes: int = 1000
    bn_eps: float = 1e-5

    @property
    def stem_channels(self) -> tuple[int, ...]:
        return (64, 64, 128) if self.deep_stem else (64,)

    def group_width(self, stage: int) -> int:
        """Width of the grouped 3x3 conv in ``stage`` (0-based): cardinality x floor(base x width / 64)
        with base = 64 x 2^stage; the floor is gluoncv's (and torchvision's int()) rounding."""
        return self.cardinality * int(math.floor(64 * 2**stage * self.bottleneck_width / 64))

    def out_channels(self, stage: int) -> int:
        return 256 * 2**stage


def _bn(c: int, cfg: ResNeXtConfig) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c, eps=cfg.bn_eps)


class SqueezeExcite(nn.Module):
    """Channel gate: global average pool, 1x1 conv (with bias) to ``squeeze``, ReLU, 1x1 conv back,
    sigmoid. Returns the gate; the caller multiplies."""

    def __init__(self, channels: int, squeeze: int):
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.relu = nn.ReLU()
        self.fc2 = nn.Conv2d(squeeze, channels, 1)
        self.sigmoid = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.sigmoid(self.fc2(self.relu(self.fc1(self.avgpool(x)))))


class Bottleneck(nn.Module):
    """1x1, grouped 3x3 (carries the stride), 1x1 expansion; optional SE gate, then + shortcut, ReLU."""

    def __init__(self, cin: int, stage: int, stride: int, first: bool, cfg: ResNeXtConfig):
        super().__init__()
        width, cout = cfg.group_width(stage), cfg.out_channels(stage)
        mid = width // 2 if cfg.half_first_1x1 else width
        self.conv1 = nn.Conv2d(cin, mid, 1, bias=False)
        self.bn1 = _bn(mid, cfg)
        self.conv2 = nn.Conv2d(mid, width, 3, stride, 1, groups=cfg.cardinality, bias=False)
        self.bn2 = _bn(width, cfg)
        self.conv3 = nn.Conv2d(width, cout, 1, bias=False)
        self.bn3 = _bn(cout, cfg)
        self.relu = nn.ReLU()
        self.se = SqueezeExcite(cout, cout // 16) if cfg.se else None
        self.downsample = None
        if first:  # every stage's first block projects, stage 1 included (its input is the stem's)
            k = cfg.downsample_kernel if stage > 0 else 1
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, k, stride, k // 2, bias=False), _bn(cout, cfg))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        if self.se is not None:
            y = y * self.se(y)
        return self.relu(y + (self.downsample(x) if self.downsample is not None else x))


class ResNeXt(nn.Module):
    """Stem (7x7/2 conv, or three 3x3 convs; each BN + ReLU), 3x3/2 max-pool, stages, global average
    pool, dropout, fc."""

    def __init__(self, cfg: ResNeXtConfig):
        super().__init__()
        self.cfg = cfg
        cin = 3
        for i, c in enumerate(cfg.stem_channels):
            k, s = (3, 2 if i == 0 else 1) if cfg.deep_stem else (7, 2)
            self.add_module(f"conv{i + 1}", nn.Conv2d(cin, c, k, s, k // 2, bias=False))
            self.add_module(f"bn{i + 1}", _bn(c, cfg))
            cin = c
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, 2, cfg.pool_padding, ceil_mode=cfg.pool_ceil)
        for i, n in enumerate(cfg.layers):
            blocks = []
            for j in range(n):
                blocks.append(Bottleneck(cin, i, 2 if (i > 0 and j == 0) else 1, j == 0, cfg))
                cin = cfg.out_channels(i)
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(cfg.dropout) if cfg.dropout else nn.Identity()
        self.fc = nn.Linear(cin, cfg.num_classes)

    @property
    def stages(self) -> list[nn.Sequential]:
        return [getattr(self, f"layer{i + 1}") for i in range(len(self.cfg.layers))]

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        for i in range(len(self.cfg.stem_channels)):
            x = self.relu(getattr(self, f"bn{i + 1}")(getattr(self, f"conv{i + 1}")(x)))
        return self.maxpool(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
        return self.fc(self.dropout(torch.flatten(self.avgpool(x), 1)))
