"""Xception as DeepLab's ImageNet backbone (PaddleClas's ``Xception41_deeplab`` / ``Xception65_deeplab``).

Entry flow: 3x3/2 conv 32 and 3x3 conv 64 (each conv-BN-ReLU), then blocks of three separable
convs (depthwise 3x3 + BN, pointwise 1x1 + BN), each preceded by a ReLU, the third one strided,
with a 1x1 strided conv-BN shortcut. Middle flow: the same blocks at 728 channels with an identity
shortcut. Exit flow: one more projecting block, then a block without shortcut whose separable
convs dilate by 2 and apply ReLU after each BN instead of before. Head: Paddle's inference dropout
(x * 0.5), global average pool, Linear.

Convs pad (k // 2) * dilation on every side as torch does; none of the TF-style asymmetric
("SAME") padding other Xception ports carry. BN epsilon 1e-3."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .paddle_ops import BatchNormAct, DownscaleInInfer


@dataclass(frozen=True)
class XceptionConfig:
    middle_blocks: int  # 8 (Xception41) or 16 (Xception65)
    entry: tuple[int, ...] = (128, 256, 728)  # each entry block's width, stride 2 each
    exit1: tuple[int, int, int] = (728, 1024, 1024)
    exit2: tuple[int, int, int] = (1536, 1536, 2048)
    bn_eps: float = 1e-3
    dropout: float = 0.5
    num_classes: int = 1000


def _bn(channels: int, eps: float, relu: bool = False) -> BatchNormAct:
    """Paddle's BatchNorm(act="relu" or None): the layer's output is after the activation."""
    return BatchNormAct(channels, nn.ReLU() if relu else None, eps=eps)


class SeparableConv(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, dilation: int, eps: float, relu: bool):
        super().__init__()
        self.depthwise = nn.Conv2d(cin, cin, 3, stride, dilation, dilation, groups=cin, bias=False)
        self.bn_depth = _bn(cin, eps, relu)
        self.pointwise = nn.Conv2d(cin, cout, 1, bias=False)
        self.bn_point = _bn(cout, eps, relu)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn_point(self.pointwise(self.bn_depth(self.depthwise(x))))


class XceptionBlock(nn.Module):
    """Three separable convs, the last with ``stride``. ``shortcut``: "conv" (1x1 strided conv-BN),
    "identity" or "none". ``relu_inside``: ReLU after each BN (exit block 2) rather than before
    each separable conv; the shortcut always takes the block's input as it came (no ReLU)."""

    def __init__(self, cin: int, widths: tuple[int, int, int], stride: int, eps: float, *,
                 shortcut: str = "conv", dilation: int = 1, relu_inside: bool = False):
        super().__init__()
        if shortcut not in ("conv", "identity", "none"):
            raise ValueError(f"shortcut must be conv, identity or none, got {shortcut!r}")
        ins = (cin, *widths[:2])
        self.sep1, self.sep2, self.sep3 = (
            SeparableConv(i, o, stride if k == 2 else 1, dilation, eps, relu_inside)
            for k, (i, o) in enumerate(zip(ins, widths)))
        self.relu_inside, self.shortcut = relu_inside, shortcut
        if shortcut == "conv":
            self.shortcut_conv = nn.Conv2d(cin, widths[-1], 1, stride, bias=False)
            self.shortcut_bn = _bn(widths[-1], eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        for sep in (self.sep1, self.sep2, self.sep3):
            y = sep(y if self.relu_inside else F.relu(y))  # not in place: the shortcut reads x
        if self.shortcut == "conv":
            return y + self.shortcut_bn(self.shortcut_conv(x))
        return y + x if self.shortcut == "identity" else y


class Xception(nn.Module):
    def __init__(self, cfg: XceptionConfig):
        super().__init__()
        eps = cfg.bn_eps
        self.conv1 = nn.Conv2d(3, 32, 3, 2, 1, bias=False)
        self.bn1 = _bn(32, eps, relu=True)
        self.conv2 = nn.Conv2d(32, 64, 3, 1, 1, bias=False)
        self.bn2 = _bn(64, eps, relu=True)
        ins = (64, *cfg.entry[:-1])
        self.entry = nn.ModuleList(XceptionBlock(i, (w, w, w), 2, eps) for i, w in zip(ins, cfg.entry))
        m = cfg.entry[-1]
        self.middle = nn.ModuleList(XceptionBlock(m, (m, m, m), 1, eps, shortcut="identity")
                                    for _ in range(cfg.middle_blocks))
        self.exit1 = XceptionBlock(m, cfg.exit1, 2, eps)
        self.exit2 = XceptionBlock(cfg.exit1[-1], cfg.exit2, 1, eps, shortcut="none", dilation=2, relu_inside=True)
        self.drop = DownscaleInInfer(cfg.dropout)
        self.fc = nn.Linear(cfg.exit2[-1], cfg.num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn2(self.conv2(self.bn1(self.conv1(x))))
        for block in (*self.entry, *self.middle, self.exit1, self.exit2):
            x = block(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.adaptive_avg_pool2d(self.drop(self.features(x)), 1)
        return self.fc(torch.flatten(x, 1))
