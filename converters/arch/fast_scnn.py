"""Fast-SCNN (Poudel et al. 2019) as PaddleSeg 2.x ("paddleseg") and PaddleSeg 0.x / PaddleX 1.x
static ("paddlex") define it. ``set_numerics`` switches between the two; they differ in layers,
not only in arithmetic, so the switch rebuilds the (still untrained) layers before loading:

| part                      | paddleseg 2.8                                 | static (PaddleX 1.x link)              |
|---------------------------|-----------------------------------------------|----------------------------------------|
| stem conv 3x3/2           | "same" padding (0 before, 1 after), bias      | padding 0, no bias                     |
| separable convs           | biased, no ReLU after the depthwise BN        | bias-free, ReLU after both BNs         |
| bottleneck activations    | ReLU                                          | ReLU6                                  |
| pyramid pooling convs     | biased; 3x3 projection                        | bias-free; 1x1 projection              |
| pyramid concat order      | x, bins 6, 3, 2, 1                            | x, bins 1, 2, 3, 6                     |
| fusion "dwconv"           | depthwise 3x3 (no bias)                       | dense 1x1 (no bias)                    |
| bilinear resizes          | align_corners False (the pyramid's True)      | align_corners True everywhere          |

The auxiliary heads are training-only; the eval forward returns the main logits at input size."""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from .paddle_seg import ConvBNAct, SeparableConvBNAct, resize

NUMERICS = ("paddleseg", "paddlex")


@dataclass(frozen=True)
class FastSCNNConfig:
    num_classes: int = 19
    numerics: str = "paddleseg"

    @property
    def static(self) -> bool:
        return self.numerics == "paddlex"


class Bottleneck(nn.Module):
    """MobileNetV2 inverted residual: 1x1 expand x6, 3x3 depthwise, linear 1x1; bias-free convs."""

    def __init__(self, cin: int, cout: int, stride: int, act: str, t: int = 6):
        super().__init__()
        hidden = cin * t
        self.expand = ConvBNAct(cin, hidden, 1, 1, 0, bias=False, act=act)
        self.dw = ConvBNAct(hidden, hidden, 3, stride, 1, groups=hidden, bias=False, act=act)
        self.project = ConvBNAct(hidden, cout, 1, 1, 0, bias=False, act=None)
        self.use_shortcut = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.dw(self.expand(x)))
        return x + y if self.use_shortcut else y


class PyramidPooling(nn.Module):
    """Adaptive average pools to 1, 2, 3, 6 cells, a 1x1 conv-BN-ReLU each (128 -> 32), resized
    back and concatenated with the input, then the projection to 128."""

    BINS = (1, 2, 3, 6)

    def __init__(self, channels: int, static: bool):
        super().__init__()
        inter = channels // len(self.BINS)
        self.stages = nn.ModuleList(ConvBNAct(channels, inter, 1, 1, 0, bias=not static) for _ in self.BINS)
        k = 1 if static else 3
        self.project = ConvBNAct(channels + inter * len(self.BINS), channels, k, 1, k // 2, bias=not static)
        self.static = static

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = [resize(stage(F.adaptive_avg_pool2d(x, b)), x.shape[2:], True)
                  for b, stage in zip(self.BINS, self.stages)]
        return self.project(torch.cat([x, *(pooled if self.static else pooled[::-1])], 1))


class FastSCNN(nn.Module):
    def __init__(self, cfg: FastSCNNConfig = FastSCNNConfig()):
        super().__init__()
        self._build(cfg)

    def _build(self, cfg: FastSCNNConfig) -> None:
        if cfg.numerics not in NUMERICS:
            raise ValueError(f"FastSCNN numerics must be one of {NUMERICS}, got {cfg.numerics!r}")
        self.cfg, s = cfg, cfg.static
        sep = dict(bias=not s, dw_act=s, padding=1)
        # learning to downsample: 1/2, 1/4, 1/8
        self.stem = ConvBNAct(3, 32, 3, 2, 0 if s else "same", bias=not s)
        self.down1 = SeparableConvBNAct(32, 48, 2, **sep)
        self.down2 = SeparableConvBNAct(48, 64, 2, **sep)
        # global feature extractor: 1/16, 1/32, 1/32
        act = "relu6" if s else "relu"
        blocks, cin = [], 64
        for cout, stride in ((64, 2), (96, 2), (128, 1)):
            blocks += [Bottleneck(cin, cout, stride, act), *(Bottleneck(cout, cout, 1, act) for _ in range(2))]
            cin = cout
        self.bottlenecks = nn.Sequential(*blocks)
        self.ppm = PyramidPooling(128, s)
        # feature fusion at 1/8
        self.fuse_dw = ConvBNAct(128, 128, 1, 1, 0, bias=False) if s else \
            ConvBNAct(128, 128, 3, 1, 1, groups=128, bias=False)
        self.fuse_low = ConvBNAct(128, 128, 1, 1, 0, act=None)
        self.fuse_high = ConvBNAct(64, 128, 1, 1, 0, act=None)
        # classifier
        self.cls1 = SeparableConvBNAct(128, 128, 1, **sep)
        self.cls2 = SeparableConvBNAct(128, 128, 1, **sep)
        self.logit = nn.Conv2d(128, cfg.num_classes, 1)

    def set_numerics(self, name: str) -> None:
        """"paddleseg" (PaddleSeg 2.x dygraph) or "paddlex" (the static 1.x net): new layers, so call
        it before loading weights (the pipeline does)."""
        if name != self.cfg.numerics:
            self._build(replace(self.cfg, numerics=name))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        corners = self.cfg.static
        high = self.down2(self.down1(self.stem(x)))
        low = self.ppm(self.bottlenecks(high))
        low = self.fuse_low(self.fuse_dw(resize(low, high.shape[2:], corners)))
        y = F.relu(self.fuse_high(high) + low)
        return resize(self.logit(self.cls2(self.cls1(y))), x.shape[2:], corners)
