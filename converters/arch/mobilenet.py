"""MobileNet v1 and v2 as configurable, framework-neutral PyTorch modules.

Own module rather than torchvision's: torchvision has no MobileNet v1, and its mobilenet_v2 rounds
widths to multiples of 8 (``_make_divisible``), scales the last 1x1 conv for every multiplier and
ends in a biased Linear, where these widths are plain ``int(c * multiplier)``, the last conv keeps
1280 channels unless the multiplier exceeds 1, and the classifier is a bias-free 1x1 conv.
PaddleClas's v2 differs in two switches: its t = 1 block keeps a 1x1 expansion conv, and its
classifier is a Linear with a bias (``expand_t1``, ``v2_classifier``)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import torch
from torch import nn

# MobileNet v1 depthwise-separable stack: (output width of the pointwise conv, depthwise stride)
V1_BLOCKS = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
             (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1))
# MobileNet v2 inverted residuals: (expansion t, output width c, repeats n, stride of the first)
V2_STAGES = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
             (6, 160, 3, 2), (6, 320, 1, 1))
V2_LAST = 1280


@dataclass(frozen=True)
class MobileNetConfig:
    version: int  # 1 | 2
    multiplier: float  # width multiplier; widths are int(c * multiplier) (truncation, no rounding)
    act: str  # "relu" (v1) | "relu6" (v2: min(max(x, 0), 6))
    num_classes: int = 1000
    bn_eps: float = 1e-5
    stem: int = 32  # stem width before the multiplier
    expand_t1: bool = False  # v2: a 1x1 expansion conv in t == 1 blocks too (PaddleClas; gluon has none)
    v2_classifier: str = "conv"  # v2: "conv" (gluon: bias-free 1x1 conv) | "linear" (PaddleClas: ``fc``)

    def width(self, c: int) -> int:
        return int(c * self.multiplier)

    def v1_blocks(self) -> Iterator[tuple[int, int, int]]:
        """(input width, output width, depthwise stride) of each depthwise-separable block."""
        cin = self.width(self.stem)
        for c, s in V1_BLOCKS:
            yield cin, self.width(c), s
            cin = self.width(c)

    def v2_blocks(self) -> Iterator[tuple[int, int, int, int]]:
        """(input width, output width, expansion, stride) of each inverted residual block."""
        cin = self.width(self.stem)
        for t, c, n, s in V2_STAGES:
            for j in range(n):
                yield cin, self.width(c), t, s if j == 0 else 1
                cin = self.width(c)

    @property
    def v2_last(self) -> int:
        """Width of the final 1x1 conv: only multipliers above 1 scale it."""
        return self.width(V2_LAST) if self.multiplier > 1.0 else V2_LAST


def _act(name: str) -> nn.Module:
    return {"relu": nn.ReLU, "relu6": nn.ReLU6}[name]()


class ConvBN(nn.Module):
    """Bias-free conv (padding k // 2), BatchNorm, then an activation or none."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, cfg: MobileNetConfig,
                 groups: int = 1, act: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=cfg.bn_eps)
        self.act = _act(cfg.act) if act else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class DepthwiseSeparable(nn.Module):
    """v1 block: 3x3 depthwise conv (groups = channels, carries the stride), 1x1 pointwise conv."""

    def __init__(self, cin: int, cout: int, stride: int, cfg: MobileNetConfig):
        super().__init__()
        self.dw = ConvBN(cin, cin, 3, stride, cfg, groups=cin)
        self.pw = ConvBN(cin, cout, 1, 1, cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pw(self.dw(x))


class InvertedResidual(nn.Module):
    """v2 block: 1x1 expansion (absent when t == 1), 3x3 depthwise, linear 1x1 projection (no
    activation); identity shortcut exactly when the stride is 1 and the widths agree."""

    def __init__(self, cin: int, cout: int, t: int, stride: int, cfg: MobileNetConfig):
        super().__init__()
        hidden = cin * t
        self.expand = ConvBN(cin, hidden, 1, 1, cfg) if t != 1 or cfg.expand_t1 else None
        self.dw = ConvBN(hidden, hidden, 3, stride, cfg, groups=hidden)
        self.project = ConvBN(hidden, cout, 1, 1, cfg, act=False)
        self.use_shortcut = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.dw(self.expand(x) if self.expand is not None else x))
        return y + x if self.use_shortcut else y


class MobileNet(nn.Module):
    """v1: stem 3x3/2 conv, 13 depthwise-separable blocks, global average pool, Linear.
    v2: stem 3x3/2 conv, 17 inverted residuals, 1x1 conv ``head``, global average pool, bias-free
    1x1 conv classifier, flatten."""

    def __init__(self, cfg: MobileNetConfig):
        super().__init__()
        self.cfg = cfg
        self.stem = ConvBN(3, cfg.width(cfg.stem), 3, 2, cfg)
        if cfg.version == 1:
            self.blocks = nn.Sequential(*(DepthwiseSeparable(i, o, s, cfg) for i, o, s in cfg.v1_blocks()))
            last = cfg.width(V1_BLOCKS[-1][0])
            self.head = None
        elif cfg.version == 2:
            self.blocks = nn.Sequential(*(InvertedResidual(i, o, t, s, cfg) for i, o, t, s in cfg.v2_blocks()))
            last = cfg.v2_last
            self.head = ConvBN(cfg.width(V2_STAGES[-1][1]), last, 1, 1, cfg)
        else:
            raise ValueError(f"MobileNet version must be 1 or 2, got {cfg.version}")
        self.pool = nn.AdaptiveAvgPool2d(1)
        if cfg.version == 1 or cfg.v2_classifier == "linear":
            self.fc = nn.Linear(last, cfg.num_classes)
        elif cfg.v2_classifier == "conv":
            self.classifier = nn.Conv2d(last, cfg.num_classes, 1, bias=False)
        else:
            raise ValueError(f"v2_classifier must be 'conv' or 'linear', got {cfg.v2_classifier!r}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.stem(x))
        if self.head is not None:
            x = self.head(x)
        x = self.pool(x)
        if hasattr(self, "fc"):
            return self.fc(torch.flatten(x, 1))
        return torch.flatten(self.classifier(x), 1)
