"""PaddleDetection's HRFPN neck on HRNet's four branches, and the HRNet + HRFPN body of a Faster
R-CNN (arch/paddle_rcnn.py's pluggable ``body``).

HRFPN: branches 2..4 upsampled bilinearly by 2, 4, 8 (align_corners False) to the first's size,
concatenated (15w channels), a bias-free 1x1 reduction to 256, average pools of kernel = stride 2^k
for the coarser levels (P2..P6), then one bias-free 3x3 conv per level (no sharing). PaddleX 1.x's
static HRFPN (``fluid.layers.resize_bilinear`` to the first branch's size) upsamples with
align_corners True, its default: ``align_corners`` (set by paddle_rcnn's "paddlex" numerics). Own module:
torchvision has no HRFPN (its FeaturePyramidNetwork is the top-down lateral FPN)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .hrnet import HRNetBody, HRNetConfig


class HRFPN(nn.Module):
    def __init__(self, in_channels: tuple[int, ...] = (18, 36, 72, 144), out_channels: int = 256, levels: int = 5):
        super().__init__()
        self.reduction = nn.Conv2d(sum(in_channels), out_channels, 1, bias=False)
        self.fpn_convs = nn.ModuleList(nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
                                       for _ in range(levels))
        self.align_corners = False

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        # ppdet passes scale_factor, not a size: the output is floor(in * 2^i) and the sampling
        # grid uses 1 / 2^i, which torch does too when given the factor
        if self.align_corners:  # static: resized to the first map's size, corners aligned
            up = [F.interpolate(x, size=xs[0].shape[-2:], mode="bilinear", align_corners=True) for x in xs[1:]]
        else:
            up = [F.interpolate(x, scale_factor=2 ** i, mode="bilinear", align_corners=False)
                  for i, x in enumerate(xs) if i > 0]
        y = self.reduction(torch.cat([xs[0], *up], 1))
        levels = [y] + [F.avg_pool2d(y, 2 ** k, 2 ** k) for k in range(1, len(self.fpn_convs))]
        return [conv(t) for conv, t in zip(self.fpn_convs, levels)]


def hrnet_hrfpn(cfg: HRNetConfig) -> tuple[nn.Module, nn.Module]:
    """(backbone, neck) for paddle_rcnn: HRNet's trunk (ppdet pads symmetrically and fuses by
    nearest upsampling, as PaddleClas) and HRFPN giving P2..P6."""
    return HRNetBody(cfg), HRFPN(tuple(cfg.channels(4)))
