"""MobileNetV3 as Paddle builds it (PaddleClas classifiers, PP-OCR's direction classifier): the
block library every Paddle MobileNetV3 shares, plus the PP-OCR text-direction classifier.

Paddle specifics kept here: the squeeze-excite gate is Paddle's hard_sigmoid (slope 0.2, offset
0.5, not torch's 1/6), hard_swish is written out (paddle_ops), widths are scaled with
``make_divisible(c * scale, 8)`` and every block has its expansion conv, even when it does not
widen (torchvision's MobileNetV3 drops it there)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from .paddle_blocks import ConvBNAct, SqueezeExcite, make_divisible


@dataclass(frozen=True)
class BlockCfg:
    kernel: int
    expand: int  # mid width at scale 1
    out: int  # output width at scale 1
    se: bool
    act: str  # "relu" | "hardswish"
    stride: int | tuple[int, int]


# (kernel, expansion, output, SE, activation, stride) at scale 1, as in the MobileNetV3 paper
LARGE = tuple(BlockCfg(*c) for c in (
    (3, 16, 16, False, "relu", 1), (3, 64, 24, False, "relu", 2), (3, 72, 24, False, "relu", 1),
    (5, 72, 40, True, "relu", 2), (5, 120, 40, True, "relu", 1), (5, 120, 40, True, "relu", 1),
    (3, 240, 80, False, "hardswish", 2), (3, 200, 80, False, "hardswish", 1),
    (3, 184, 80, False, "hardswish", 1), (3, 184, 80, False, "hardswish", 1),
    (3, 480, 112, True, "hardswish", 1), (3, 672, 112, True, "hardswish", 1),
    (5, 672, 160, True, "hardswish", 2), (5, 960, 160, True, "hardswish", 1),
    (5, 960, 160, True, "hardswish", 1)))
SMALL = tuple(BlockCfg(*c) for c in (
    (3, 16, 16, True, "relu", 2), (3, 72, 24, False, "relu", 2), (3, 88, 24, False, "relu", 1),
    (5, 96, 40, True, "hardswish", 2), (5, 240, 40, True, "hardswish", 1),
    (5, 240, 40, True, "hardswish", 1), (5, 120, 48, True, "hardswish", 1),
    (5, 144, 48, True, "hardswish", 1), (5, 288, 96, True, "hardswish", 2),
    (5, 576, 96, True, "hardswish", 1), (5, 576, 96, True, "hardswish", 1)))
LAST_CONV = {"large": 960, "small": 576}  # the 1x1 conv after the blocks, at scale 1
CONFIGS = {"large": LARGE, "small": SMALL}


class InvertedResidual(nn.Module):
    """expand 1x1 -> depthwise kxk (carries the stride) -> optional SE -> linear 1x1 projection;
    identity shortcut iff stride 1 and equal widths."""

    def __init__(self, cin: int, mid: int, cout: int, kernel: int, stride, se: bool, act: str,
                 dilation: int = 1):
        super().__init__()
        self.expand = ConvBNAct(cin, mid, 1, act=act)
        self.dw = ConvBNAct(mid, mid, kernel, stride, groups=mid, act=act, dilation=dilation)
        self.se = SqueezeExcite(mid) if se else None
        self.project = ConvBNAct(mid, cout, 1)
        self.shortcut = stride in (1, (1, 1)) and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.dw(self.expand(x))
        if self.se is not None:
            y = self.se(y)
        y = self.project(y)
        return x + y if self.shortcut else y


class MobileNetV3Backbone(nn.Module):
    """Stem (3x3 stride 2, 16 x scale, hard_swish), the blocks, the last 1x1 conv (BN, hard_swish).
    ``strides`` overrides the blocks' strides (PP-OCR's text models stride (2, 1) to keep width),
    ``dilations`` their depthwise dilations (segmentation trunks at output stride 8); ``blocks`` and
    ``last`` replace the arch's table and last width (PaddleSeg 0.x's halved segmentation trunk)."""

    def __init__(self, arch: str = "large", scale: float = 1.0,
                 strides: Sequence[int | tuple[int, int]] | None = None, *,
                 dilations: Sequence[int] | None = None, blocks: Sequence[BlockCfg] | None = None,
                 last: int | None = None):
        super().__init__()
        cfg = CONFIGS[arch] if blocks is None else tuple(blocks)
        for what, given in (("strides", strides), ("dilations", dilations)):
            if given is not None and len(given) != len(cfg):
                raise ValueError(f"{arch}: {len(cfg)} block {what} expected, got {len(given)}")
        width = make_divisible(16 * scale)
        self.stem = ConvBNAct(3, width, 3, 2, act="hardswish")
        layers = []
        for i, b in enumerate(cfg):
            out = make_divisible(b.out * scale)
            stride = strides[i] if strides is not None else b.stride
            layers.append(InvertedResidual(width, make_divisible(b.expand * scale), out, b.kernel, stride,
                                           b.se, b.act, dilations[i] if dilations is not None else 1))
            width = out
        self.blocks = nn.Sequential(*layers)
        self.out_channels = make_divisible((LAST_CONV[arch] if last is None else last) * scale)
        self.last = ConvBNAct(width, self.out_channels, 1, act="hardswish")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.last(self.blocks(self.stem(x)))


# PP-OCR text models stride the small net's 1st, 2nd, 4th and 9th blocks by (2, 1) only
OCR_SMALL_STRIDES = ((2, 1), (2, 1), 1, (2, 1), 1, 1, 1, 1, (2, 1), 1, 1)


class TextDirectionClassifier(nn.Module):
    """PP-OCR's text-line direction classifier (0 or 180 degrees): MobileNetV3 small x0.35 with
    text strides, a 2x2 max pool, global average pool, Linear, softmax. Input (N, 3, 48, 192)."""

    def __init__(self, scale: float = 0.35, classes: int = 2):
        super().__init__()
        self.backbone = MobileNetV3Backbone("small", scale, OCR_SMALL_STRIDES)
        self.maxpool = nn.MaxPool2d(2, 2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(self.backbone.out_channels, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.pool(self.maxpool(self.backbone(x))).flatten(1)
        return torch.softmax(self.fc(y), dim=1)
