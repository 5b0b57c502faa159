"""PaddleClas's MobileNetV3 ImageNet classifier on the shared Paddle MobileNetV3 backbone
(converters/arch/mobilenet_v3.py): backbone, global average pool, a bias-free 1x1 conv to 1280,
hard_swish, Paddle's inference-time dropout, Linear.

Paddle's ``Dropout(p, mode="downscale_in_infer")`` (and the static ``dropout`` op's default
``downgrade_in_infer``) keeps training activations unscaled and instead multiplies by (1 - p) at
inference: an eval-mode scale of 0.8 in front of the classifier, which ``nn.Dropout`` (identity in
eval) would silently drop."""
from __future__ import annotations

import torch
from torch import nn

from .mobilenet_v3 import MobileNetV3Backbone
from .paddle_ops import DownscaleInInfer, HardSwish


class MobileNetV3Classifier(nn.Module):
    def __init__(self, arch: str = "large", scale: float = 1.0, num_classes: int = 1000,
                 expand: int = 1280, dropout: float = 0.2):
        super().__init__()
        self.backbone = MobileNetV3Backbone(arch, scale)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.last_conv = nn.Conv2d(self.backbone.out_channels, expand, 1, bias=False)  # not scaled
        self.act = HardSwish()
        self.dropout = DownscaleInInfer(dropout)
        self.fc = nn.Linear(expand, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.last_conv(self.pool(self.backbone(x))))
        return self.fc(torch.flatten(self.dropout(x), 1))
