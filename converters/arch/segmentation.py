"""Semantic segmentation on a dilated ResNet (output stride 8): an FCN, PSPNet (pyramid pooling) or
DeepLabV3 (ASPP) head on stage 4, an auxiliary FCN head on stage 3, both upsampled to the input.

``forward`` returns ``(main, aux)`` logits, each (B, classes, H, W): gluoncv's eval-mode tuple.

Upsampling is bilinear with corner alignment: MXNet's ``contrib.BilinearResize2D`` (every resize in
these nets) samples output pixel ``i`` at input position ``i * (in - 1) / (out - 1)``, which is
torch's ``align_corners=True``; ``align_corners=False`` shifts every sample (tested against MXNet)."""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .resnet import ResNet, ResNetConfig

HEADS = ("fcn", "psp", "deeplab")


def resize_bilinear(x: torch.Tensor, size: tuple[int, int] | torch.Size) -> torch.Tensor:
    """MXNet ``contrib.BilinearResize2D(x, height, width)`` (its default align_corners=True)."""
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=True)


@dataclass(frozen=True)
class SegConfig:
    backbone: ResNetConfig  # dilated: stages 3 and 4 at stride 1
    head: str  # "fcn" | "psp" | "deeplab"
    num_classes: int
    aux: bool = True  # auxiliary FCN head on stage 3 (a second output)
    bn_eps: float = 1e-5
    dropout: float = 0.1  # before each classifier conv (identity in eval)
    psp_bins: tuple[int, ...] = (1, 2, 3, 6)  # PSP: adaptive-pool grid of each pyramid branch
    psp_width: int = 512  # PSP: width of the conv after the pyramid
    aspp_rates: tuple[int, ...] = (12, 24, 36)  # DeepLab: dilations of the 3x3 ASPP branches
    aspp_width: int = 256
    aspp_dropout: float = 0.5  # after the ASPP projection (identity in eval)


def _conv_bn_relu(cin: int, cout: int, k: int, eps: float, dilation: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, k, 1, dilation * (k // 2), dilation=dilation, bias=False),
            nn.BatchNorm2d(cout, eps=eps), nn.ReLU()]


class ConvHead(nn.Sequential):
    """3x3 conv, BN, ReLU, dropout, 1x1 classifier conv (with bias): gluoncv's FCN head, and the
    last block of its PSP and DeepLab heads."""

    def __init__(self, cin: int, mid: int, num_classes: int, eps: float, dropout: float):
        super().__init__(*_conv_bn_relu(cin, mid, 3, eps), nn.Dropout(dropout), nn.Conv2d(mid, num_classes, 1))


class PoolBranch(nn.Sequential):
    """Adaptive average pool to ``bins`` x ``bins``, 1x1 conv, BN, ReLU, then bilinear resize back
    to the input's size (PSP's pyramid levels; DeepLab's image-pooling branch with bins=1)."""

    def __init__(self, cin: int, cout: int, bins: int, eps: float):
        super().__init__(nn.AdaptiveAvgPool2d(bins), *_conv_bn_relu(cin, cout, 1, eps))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return resize_bilinear(super().forward(x), x.shape[-2:])


class PyramidPooling(nn.Module):
    """The input, concatenated with one pooled branch (width cin / 4) per pyramid level."""

    def __init__(self, cin: int, bins: tuple[int, ...], eps: float):
        super().__init__()
        self.branches = nn.ModuleList(PoolBranch(cin, cin // 4, b, eps) for b in bins)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, *(b(x) for b in self.branches)], dim=1)


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling: a 1x1 branch, one dilated 3x3 branch per rate and an
    image-pooling branch, concatenated, then a 1x1 projection (conv, BN, ReLU, dropout)."""

    def __init__(self, cin: int, width: int, rates: tuple[int, ...], eps: float, dropout: float):
        super().__init__()
        self.branches = nn.ModuleList([nn.Sequential(*_conv_bn_relu(cin, width, 1, eps)),
                                       *(nn.Sequential(*_conv_bn_relu(cin, width, 3, eps, r)) for r in rates),
                                       PoolBranch(cin, width, 1, eps)])
        n = len(self.branches)
        self.project = nn.Sequential(*_conv_bn_relu(n * width, width, 1, eps), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(torch.cat([b(x) for b in self.branches], dim=1))


def build_head(cfg: SegConfig, cin: int) -> nn.Module:
    n, eps = cfg.num_classes, cfg.bn_eps
    if cfg.head == "fcn":
        return ConvHead(cin, cin // 4, n, eps, cfg.dropout)
    if cfg.head == "psp":
        return nn.Sequential(OrderedDict(
            pyramid=PyramidPooling(cin, cfg.psp_bins, eps),
            classifier=ConvHead(cin * 2, cfg.psp_width, n, eps, cfg.dropout)))
    if cfg.head == "deeplab":
        return nn.Sequential(OrderedDict(
            aspp=ASPP(cin, cfg.aspp_width, cfg.aspp_rates, eps, cfg.aspp_dropout),
            classifier=ConvHead(cfg.aspp_width, cfg.aspp_width, n, eps, cfg.dropout)))
    raise ValueError(f"unknown segmentation head {cfg.head!r} (use one of {', '.join(HEADS)})")


class SegmentationNet(nn.Module):
    """Dilated ResNet backbone, ``head`` on stage 4, optional ``aux_head`` (FCN) on stage 3; both
    outputs are resized to the input size."""

    def __init__(self, cfg: SegConfig):
        super().__init__()
        self.cfg = cfg
        self.backbone = ResNet(cfg.backbone)
        del self.backbone.fc, self.backbone.avgpool  # the stages only
        c3, c4 = cfg.backbone.channels[3], cfg.backbone.channels[4]
        self.head = build_head(cfg, c4)
        self.aux_head = ConvHead(c3, c3 // 4, cfg.num_classes, cfg.bn_eps, cfg.dropout) if cfg.aux else None

    def features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Stage-3 and stage-4 feature maps."""
        b = self.backbone
        c3 = b.layer3(b.layer2(b.layer1(b.stem(x))))
        return c3, b.layer4(c3)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        size = x.shape[-2:]
        c3, c4 = self.features(x)
        out = (resize_bilinear(self.head(c4), size),)
        if self.aux_head is not None:
            out += (resize_bilinear(self.aux_head(c3), size),)
        return out
