"""CIFAR residual networks (32x32 inputs) as one configurable, framework-neutral PyTorch module:
post-activation ResNets (He et al. 2015), pre-activation ResNets and wide ResNets (He et al. 2016,
Zagoruyko & Komodakis 2016), and ResNeXt with grouped bottlenecks (Xie et al. 2017).

Own module: torchvision has no CIFAR variants (its stem is a 7x7/2 conv plus max-pool, and it has
neither pre-activation blocks nor an input normalisation layer)."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

BLOCKS = ("basic", "preact", "grouped_bottleneck")


@dataclass(frozen=True)
class CifarResNetConfig:
    block: str  # "basic" (post-activation) | "preact" (pre-activation) | "grouped_bottleneck" (ResNeXt)
    layers: tuple[int, ...]  # blocks per stage; the first block of stage i > 0 has stride 2
    channels: tuple[int, ...]  # stem width, then each stage's output width
    num_classes: int = 10
    # normalisation of the raw image by a BN with no learned scale: gamma is fixed at 1, beta kept
    input_norm: bool = False
    stem_norm: bool = True  # BN after the 3x3 stem conv
    stem_relu: bool = False  # ReLU after the stem (BN); some post-activation nets have none
    # pre-activation blocks: the projection shortcut reads the block's activated input
    # (BN+ReLU output) when True, its raw input when False
    shortcut_from_activation: bool = False
    cardinality: int = 1  # grouped bottleneck: groups of the 3x3 conv
    bottleneck_width: int = 64  # grouped bottleneck: per-group width for a 64-channel stage base
    bn_eps: float = 1e-5

    def __post_init__(self) -> None:
        if self.block not in BLOCKS:
            raise ValueError(f"block must be one of {BLOCKS}, got {self.block!r}")
        if len(self.channels) != len(self.layers) + 1:
            raise ValueError("channels must hold the stem width and one width per stage")

    @property
    def preact(self) -> bool:
        """Pre-activation nets end with BN + ReLU before pooling (their blocks end on a conv)."""
        return self.block == "preact"

    def group_width(self, cout: int) -> int:
        """Grouped bottleneck inner width: cardinality x floor(base x width / 64), base = cout / 4."""
        return self.cardinality * int(math.floor(cout // 4 * (self.bottleneck_width / 64)))


def _conv3x3(cin: int, cout: int, stride: int, groups: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride, 1, groups=groups, bias=False)


class BasicBlock(nn.Module):
    """conv-BN-ReLU-conv-BN, add the shortcut, ReLU; projection = 1x1 conv + BN."""

    def __init__(self, cin: int, cout: int, stride: int, cfg: CifarResNetConfig):
        super().__init__()
        self.conv1 = _conv3x3(cin, cout, stride)
        self.bn1 = nn.BatchNorm2d(cout, eps=cfg.bn_eps)
        self.conv2 = _conv3x3(cout, cout, 1)
        self.bn2 = nn.BatchNorm2d(cout, eps=cfg.bn_eps)
        self.relu = nn.ReLU()
        self.downsample = _projection(cin, cout, stride, cfg, norm=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        return self.relu(y + (self.downsample(x) if self.downsample is not None else x))


class PreActBlock(nn.Module):
    """BN-ReLU-conv-BN-ReLU-conv, add the shortcut (no activation after the sum); projection =
    1x1 conv, no BN, fed by the raw or the activated input (``shortcut_from_activation``)."""

    def __init__(self, cin: int, cout: int, stride: int, cfg: CifarResNetConfig):
        super().__init__()
        self.from_activation = cfg.shortcut_from_activation
        self.bn1 = nn.BatchNorm2d(cin, eps=cfg.bn_eps)
        self.conv1 = _conv3x3(cin, cout, stride)
        self.bn2 = nn.BatchNorm2d(cout, eps=cfg.bn_eps)
        self.conv2 = _conv3x3(cout, cout, 1)
        self.relu = nn.ReLU()
        self.downsample = _projection(cin, cout, stride, cfg, norm=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.relu(self.bn1(x))
        shortcut = x
        if self.downsample is not None:
            shortcut = self.downsample(a if self.from_activation else x)
        return self.conv2(self.relu(self.bn2(self.conv1(a)))) + shortcut


class GroupedBottleneck(nn.Module):
    """1x1 conv-BN-ReLU, 3x3 grouped conv (stride)-BN-ReLU, 1x1 conv-BN, add, ReLU;
    projection = 1x1 conv + BN."""

    def __init__(self, cin: int, cout: int, stride: int, cfg: CifarResNetConfig):
        super().__init__()
        mid = cfg.group_width(cout)
        self.conv1 = nn.Conv2d(cin, mid, 1, 1, 0, bias=False)
        self.bn1 = nn.BatchNorm2d(mid, eps=cfg.bn_eps)
        self.conv2 = _conv3x3(mid, mid, stride, groups=cfg.cardinality)
        self.bn2 = nn.BatchNorm2d(mid, eps=cfg.bn_eps)
        self.conv3 = nn.Conv2d(mid, cout, 1, 1, 0, bias=False)
        self.bn3 = nn.BatchNorm2d(cout, eps=cfg.bn_eps)
        self.relu = nn.ReLU()
        self.downsample = _projection(cin, cout, stride, cfg, norm=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return self.relu(y + (self.downsample(x) if self.downsample is not None else x))


def _projection(cin: int, cout: int, stride: int, cfg: CifarResNetConfig, norm: bool) -> nn.Sequential | None:
    if cin == cout and stride == 1:
        return None
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, 1, stride, 0, bias=False)]
    if norm:
        layers.append(nn.BatchNorm2d(cout, eps=cfg.bn_eps))
    return nn.Sequential(*layers)


_BLOCK = {"basic": BasicBlock, "preact": PreActBlock, "grouped_bottleneck": GroupedBottleneck}


class CifarResNet(nn.Module):
    """[input BN] 3x3/1 stem conv [BN] [ReLU], stages, [final BN + ReLU], global average pool, fc."""

    def __init__(self, cfg: CifarResNetConfig):
        super().__init__()
        self.cfg = cfg
        self.data_bn = nn.BatchNorm2d(3, eps=cfg.bn_eps) if cfg.input_norm else None
        self.conv1 = _conv3x3(3, cfg.channels[0], 1)
        self.bn1 = nn.BatchNorm2d(cfg.channels[0], eps=cfg.bn_eps) if cfg.stem_norm else None
        self.relu = nn.ReLU()
        block, cin = _BLOCK[cfg.block], cfg.channels[0]
        for i, (n, cout) in enumerate(zip(cfg.layers, cfg.channels[1:])):
            blocks = [block(cin if j == 0 else cout, cout, 2 if (i > 0 and j == 0) else 1, cfg) for j in range(n)]
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))
            cin = cout
        self.final_bn = nn.BatchNorm2d(cin, eps=cfg.bn_eps) if cfg.preact else None
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, cfg.num_classes)

    @property
    def stages(self) -> list[nn.Sequential]:
        return [getattr(self, f"layer{i + 1}") for i in range(len(self.cfg.layers))]

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        if self.data_bn is not None:
            x = self.data_bn(x)
        x = self.conv1(x)
        if self.bn1 is not None:
            x = self.bn1(x)
        return self.relu(x) if self.cfg.stem_relu else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
        if self.final_bn is not None:
            x = self.relu(self.final_bn(x))
        return self.fc(torch.flatten(self.avgpool(x), 1))
