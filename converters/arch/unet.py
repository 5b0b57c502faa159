"""U-Net as PaddleSeg 2.x ("paddleseg", ``paddleseg.models.UNet`` with use_deconv False) and the
PaddleSeg 0.x / PaddleX 1.x static program ("paddlex", upsample_mode "bilinear") define it.

Encoder: two 3x3 conv-BN-ReLU at 64, then four (2x2/2 max pool, two 3x3 conv-BN-ReLU) to 128, 256,
512, 512. Decoder: four steps of (bilinear resize to the skip's size, concatenate [up, skip], two 3x3
conv-BN-ReLU) to 256, 128, 64, 64; a 3x3 classifier conv. The two generations differ only in
conv biases (PaddleSeg 2.x: every conv; static: none) and the resize (align_corners False / True),
so ``set_numerics`` rebuilds the bias-free convs before loading and switches the resize."""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from .paddle_seg import ConvBNAct, resize

NUMERICS = ("paddleseg", "paddlex")
DOWN = ((64, 128), (128, 256), (256, 512), (512, 512))
UP = ((512, 256), (256, 128), (128, 64), (64, 64))  # (input width, output width); concat doubles the input


@dataclass(frozen=True)
class UNetConfig:
    num_classes: int = 81
    numerics: str = "paddleseg"


class DoubleConv(nn.Sequential):
    def __init__(self, cin: int, cout: int, bias: bool):
        super().__init__(ConvBNAct(cin, cout, 3, 1, 1, bias=bias), ConvBNAct(cout, cout, 3, 1, 1, bias=bias))


class UNet(nn.Module):
    def __init__(self, cfg: UNetConfig = UNetConfig()):
        super().__init__()
        self._build(cfg)

    def _build(self, cfg: UNetConfig) -> None:
        if cfg.numerics not in NUMERICS:
            raise ValueError(f"UNet numerics must be one of {NUMERICS}, got {cfg.numerics!r}")
        self.cfg = cfg
        bias = cfg.numerics == "paddleseg"
        self.inc = DoubleConv(3, 64, bias)
        self.down = nn.ModuleList(DoubleConv(i, o, bias) for i, o in DOWN)
        self.up = nn.ModuleList(DoubleConv(2 * i, o, bias) for i, o in UP)
        self.logit = nn.Conv2d(64, cfg.num_classes, 3, 1, 1, bias=bias)

    def set_numerics(self, name: str) -> None:
        """"paddleseg" or "paddlex": rebuilds the (untrained) layers; call it before loading weights."""
        if name != self.cfg.numerics:
            self._build(replace(self.cfg, numerics=name))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        corners = self.cfg.numerics == "paddlex"
        x = self.inc(x)
        skips = []
        for block in self.down:
            skips.append(x)
            x = block(F.max_pool2d(x, 2, 2))
        for block, skip in zip(self.up, reversed(skips)):
            x = block(torch.cat([resize(x, skip.shape[2:], corners), skip], 1))
        return self.logit(x)
