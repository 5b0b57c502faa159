"""VGG16 with atrous fc6/fc7 convolutions: the SSD paper's base network, as gluoncv builds it.

Own module rather than torchvision's vgg16: the detector needs caffe-scaled input (gluoncv
multiplies the ImageNet-normalised image back by std*255 per channel), max pools that round up
(MXNet ``pooling_convention='full'`` = ``ceil_mode=True``: 75 -> 38 at 300 px), a stride-1 3x3
pool after the fifth stage, fc6/fc7 replaced by a dilation-6 3x3 conv and a 1x1 conv, and a
learned per-channel L2 normalisation of conv4_3 (SSD's ``Normalize``); none of these exist there.
Module names mirror gluon's sequences (``stages.<s>.<k>``: conv at even k, ReLU at odd k)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn


@dataclass(frozen=True)
class VGGAtrousConfig:
    layers: tuple[int, ...] = (2, 2, 3, 3, 3)  # 3x3 convs per stage (VGG16)
    filters: tuple[int, ...] = (64, 128, 256, 512, 512)
    fc_width: int = 1024  # the atrous fc6 (3x3, dilation 6) and fc7 (1x1) convs
    fc_dilation: int = 6
    norm_stage: int = 3  # 0-based stage whose output is L2-normalised and tapped (conv4_3)
    norm_eps: float = 1e-5  # gluoncv Normalize default, inside the square root
    norm_init: float = 20.0  # initial scale (a checkpoint overrides it)

    @property
    def out_channels(self) -> tuple[int, int]:
        return self.filters[self.norm_stage], self.fc_width


def caffe_input_scale() -> np.ndarray:
    """gluoncv's ``init_scale`` constant: the ImageNet std (as float32) times 255, per channel, so
    the normalised input returns to caffe's 0..255 range minus the mean."""
    std = np.array([0.229, 0.224, 0.225], dtype=np.float32)
    return (std * np.float32(255)).reshape(1, 3, 1, 1)


class InputScale(nn.Module):
    """x * per-channel constant; a module of its own so parity can pair its output."""

    def __init__(self, scale: np.ndarray):
        super().__init__()
        self.register_buffer("scale", torch.tensor(np.asarray(scale, dtype=np.float32)))  # honours a device context

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale


class L2Norm(nn.Module):
    """MXNet L2Normalization(mode='channel'): x / sqrt(sum_c x^2 + eps), then a learned scale per
    channel (SSD's Normalize layer on conv4_3)."""

    def __init__(self, channels: int, init: float, eps: float):
        super().__init__()
        self.eps = eps
        self.scale = nn.Parameter(torch.full((1, channels, 1, 1), float(init)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x / torch.sqrt((x * x).sum(dim=1, keepdim=True) + self.eps) * self.scale


def _stage(cin: int, cout: int, n: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(n):
        layers += [nn.Conv2d(cin if i == 0 else cout, cout, 3, 1, 1), nn.ReLU()]
    return nn.Sequential(*layers)


class VGGAtrous(nn.Module):
    """Returns the two SSD taps: [L2-normalised conv4_3, fc7]."""

    def __init__(self, cfg: VGGAtrousConfig):
        super().__init__()
        self.cfg = cfg
        self.init_scale = InputScale(caffe_input_scale())
        stages, cin = [], 3
        for n, f in zip(cfg.layers, cfg.filters):
            stages.append(_stage(cin, f, n))
            cin = f
        fc = cfg.fc_width
        stages.append(nn.Sequential(nn.Conv2d(cin, fc, 3, 1, cfg.fc_dilation, dilation=cfg.fc_dilation), nn.ReLU(),
                                    nn.Conv2d(fc, fc, 1), nn.ReLU()))
        self.stages = nn.ModuleList(stages)
        self.pool = nn.MaxPool2d(2, 2, ceil_mode=True)  # MXNet 'full' convention rounds up
        self.pool5 = nn.MaxPool2d(3, 1, 1, ceil_mode=True)  # keeps the size: fc6 sees stride 16
        self.norm4 = L2Norm(cfg.filters[cfg.norm_stage], cfg.norm_init, cfg.norm_eps)

    @property
    def out_channels(self) -> tuple[int, int]:
        return self.cfg.out_channels

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.init_scale(x)
        last = len(self.cfg.layers) - 1
        taps = []
        for i, stage in enumerate(self.stages[:-1]):
            x = stage(x)
            if i == self.cfg.norm_stage:
                taps.append(self.norm4(x))
            x = self.pool(x) if i < last else self.pool5(x)
        taps.append(self.stages[-1](x))
        return taps
