"""PP-OCRv4 text detector (mobile): PP-LCNetV3 backbone, RSE-FPN neck, DB head (probability map).

Read off the exported program (ch_PP-OCRv4_det_infer):
- the neck's squeeze-excite layers gate with hard_sigmoid slope 0.2 (the backbone's use 1/6) and
  add the input back (x + x * gate); their 1x1 and 3x3 convs are bias-free;
- the neck runs its lateral convs from the deepest level first, then adds the 2x nearest-upsampled
  coarser map top-down, then the 3x3 output convs again deepest first; the four 24-channel maps are
  upsampled x8, x4, x2 (nearest) and concatenated deepest first;
- the head is the DB "binarize" branch only: 3x3 conv + BN + ReLU, 2x2 stride-2 transposed conv
  with bias, BN + ReLU, another to one channel, sigmoid (the threshold branch is not exported).
Inputs must have H and W divisible by 32, as for the Paddle model (the top-down adds need it)."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .lcnet import LCNET_DET_075, LCNetConfig, LCNetV3
from .paddle_blocks import SqueezeExcite

RSE_SLOPE = 0.2


class RSEConv(nn.Module):
    """Bias-free conv followed by a shortcut squeeze-excite (x + x * gate)."""

    def __init__(self, cin: int, cout: int, kernel: int):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, padding=kernel // 2, bias=False)
        self.se = SqueezeExcite(cout, 4, RSE_SLOPE, shortcut=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.se(self.conv(x))


class RSEFPN(nn.Module):
    """Levels are indexed finest (stride 4) to coarsest (stride 32); see the module docstring for
    the order of operations."""

    def __init__(self, in_channels: list[int], channels: int = 96):
        super().__init__()
        self.lateral = nn.ModuleList(RSEConv(c, channels, 1) for c in in_channels)
        self.output = nn.ModuleList(RSEConv(channels, channels // 4, 3) for _ in in_channels)

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        n = len(feats)
        lat = [None] * n
        for i in reversed(range(n)):
            lat[i] = self.lateral[i](feats[i])
        for i in reversed(range(n - 1)):
            lat[i] = lat[i] + F.interpolate(lat[i + 1], scale_factor=2.0, mode="nearest")
        outs = [None] * n
        for i in reversed(range(n)):
            outs[i] = self.output[i](lat[i])
        # deepest first; level i is 2**i times coarser than level 0
        return torch.cat([F.interpolate(outs[i], scale_factor=float(2 ** i), mode="nearest") if i else outs[i]
                          for i in reversed(range(n))], dim=1)


class DBHead(nn.Module):
    """The binarize branch of DB: probability map at the input resolution."""

    def __init__(self, channels: int = 96, bn_eps: float = 1e-5):
        super().__init__()
        mid = channels // 4
        self.conv = nn.Conv2d(channels, mid, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(mid, eps=bn_eps)
        self.up1 = nn.ConvTranspose2d(mid, mid, 2, 2)
        self.bn2 = nn.BatchNorm2d(mid, eps=bn_eps)
        self.up2 = nn.ConvTranspose2d(mid, 1, 2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv(x)))
        x = F.relu(self.bn2(self.up1(x)))
        return torch.sigmoid(self.up2(x))


class PPOCRv4Det(nn.Module):
    """forward(x: (N, 3, H, W), H and W multiples of 32, BGR normalised) -> (N, 1, H, W) text
    probability."""

    def __init__(self, backbone: LCNetConfig = LCNET_DET_075, neck_channels: int = 96):
        super().__init__()
        self.backbone = LCNetV3(backbone)
        self.neck = RSEFPN(self.backbone.out_channels, neck_channels)
        self.head = DBHead(neck_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        if h % 32 or w % 32:
            raise ValueError(f"PP-OCRv4 det needs H and W divisible by 32, got {h}x{w}")
        return self.head(self.neck(self.backbone(x)))
