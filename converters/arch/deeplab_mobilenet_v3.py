"""DeepLabV3+ on MobileNetV3 large x1.0, in the two nets the two Paddle generations define.

"paddleseg": PaddleSeg 2.8's ``DeepLabV3P`` (converters/arch/deeplab.py's head, aspp_ratios
(1, 12, 24, 36)) on ``MobileNetV3_large_x1_0_os8``: the shared Paddle MobileNetV3 trunk
(converters/arch/mobilenet_v3.py) without its last conv, blocks 6 and 12 unstrided, the depthwise
convs of blocks 7-12 dilated 2 and of blocks 13-14 dilated 4 (PaddleSeg's table: block 6 itself is
not dilated). Taps: block 2's output (24 ch, 1/4) and block 14's (160 ch, 1/8).

"paddlex": PaddleSeg 0.x / PaddleX 1.x's static ``deeplabv3p`` with ``mobilenetv3_large`` as the
Cityscapes model of the PaddleX link was configured (OUTPUT_STRIDE 32, ASPP_WITH_SE, SE_USE_QSIGMOID,
ASPP_CONVS_FILTERS 128, no concat projection, no image-level branch, USE_SUM_MERGE, OUTPUT_IS_LOGITS),
a Lite R-ASPP rather than an ASPP:
- trunk: the segmentation MobileNetV3 whose last three blocks are halved (336/80, 480/80, 480/80)
  and whose last conv has 480 channels, at output stride 32; decoder tap: the depthwise output of
  block 5 (120 ch, 1/8), taken before its squeeze-excite;
- encoder: ``aspp0`` (bias-free 1x1 conv-BN-ReLU to 128) times a gate: average pool of kernel
  int((769 - 1) / 32 + 1) = 25 and stride (4, 5) without padding (POOLING_CROP_SIZE (769, 769),
  POOLING_STRIDE (4, 5)), a bias-free 1x1 conv, ``relu6(x + 3) * 0.16667`` (its "qsigmoid", the
  constant as written), resized back;
- decoder: the encoder output resized to the tap, a bias-free 1x1 conv to the classes, plus a
  bias-free 1x1 conv of the tap (``merge``): the sum is the logits (no ``logit`` conv);
- every resize is fluid's ``resize_bilinear`` default, align_corners True.
The 25x25 pool needs a 1/32 feature map of at least 25 cells: inputs of at least 769 per side."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .deeplab import DeepLabConfig, DeepLabV3P
from .mobilenet_v3 import LARGE, BlockCfg, MobileNetV3Backbone
from .paddle_seg import ConvBNAct, resize

# PaddleSeg 2.8 NET_CONFIG["large_os8"]: strides and depthwise dilations per block
OS8_STRIDES = (1, 2, 1, 2, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1)
OS8_DILATIONS = (1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 4, 4)
OS8_LOW, OS8_HIGH = 2, 14  # PaddleSeg's out_index 0 and 3
# PaddleSeg 0.x / PaddleX 1.x ``for_seg`` large table: the last three blocks at half width
STATIC_LARGE = LARGE[:12] + (BlockCfg(5, 336, 80, True, "hardswish", 2), BlockCfg(5, 480, 80, True, "hardswish", 1),
                             BlockCfg(5, 480, 80, True, "hardswish", 1))
STATIC_LAST, STATIC_LOW = 480, 5  # conv_last width; the block whose depthwise output feeds the decoder
STATIC_CHANNELS = 128  # ASPP_CONVS_FILTERS
POOL_CROP, POOL_STRIDE, OUTPUT_STRIDE = (769, 769), (4, 5), 32
QSIGMOID = 0.16667  # PaddleSeg 0.x's model_libs.qsigmoid multiplies by this, not 1/6


class MobileNetV3Features(nn.Module):
    """The trunk and its two taps, (low-level, deepest), as each net takes them."""

    def __init__(self, static: bool = False):
        super().__init__()
        if static:
            net = MobileNetV3Backbone("large", blocks=STATIC_LARGE, last=STATIC_LAST)
        else:
            net = MobileNetV3Backbone("large", strides=OS8_STRIDES, dilations=OS8_DILATIONS)
        self.stem, self.blocks = net.stem, net.blocks
        self.last = net.last if static else None  # PaddleSeg 2.8's trunk has no last conv
        self.static = static
        self.channels = ((self.blocks[STATIC_LOW].dw.bn.num_features, STATIC_LAST) if static else
                         (self.blocks[OS8_LOW].project.bn.num_features, self.blocks[OS8_HIGH].project.bn.num_features))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.stem(x)
        low = None
        for i, block in enumerate(self.blocks):
            if self.static and i == STATIC_LOW:  # run step by step to keep the depthwise output
                low = y = block.dw(block.expand(x))
                y = block.project(block.se(y) if block.se is not None else y)
                x = x + y if block.shortcut else y
            else:
                x = block(x)
                low = x if (i == OS8_LOW and not self.static) else low
        return low, (self.last(x) if self.static else x)


class LiteHead(nn.Module):
    """The static encoder (``aspp0`` x pooled gate) and sum-merge decoder; returns logits at the tap's size."""

    def __init__(self, high: int, low: int, num_classes: int, channels: int = STATIC_CHANNELS):
        super().__init__()
        self.kernel = tuple(int((c - 1.0) / OUTPUT_STRIDE + 1.0) for c in reversed(POOL_CROP))  # (h, w)
        self.pool = nn.Conv2d(high, channels, 1, bias=False)  # encoder/image_pool
        self.aspp0 = ConvBNAct(high, channels, 1, 1, 0, bias=False)
        self.project = nn.Conv2d(channels, num_classes, 1, bias=False)  # decoder
        self.merge = nn.Conv2d(low, num_classes, 1, bias=False)  # decoder/merge

    def forward(self, high: torch.Tensor, low: torch.Tensor) -> torch.Tensor:
        if high.shape[2] < self.kernel[0] or high.shape[3] < self.kernel[1]:
            raise ValueError(f"the static MobileNetV3 DeepLab pools {self.kernel[0]}x{self.kernel[1]} cells of its "
                             f"1/32 map, got {tuple(high.shape[2:])}: inputs must be at least {POOL_CROP[1]}x"
                             f"{POOL_CROP[0]}")
        gate = F.avg_pool2d(high, self.kernel, POOL_STRIDE)
        gate = resize(F.relu6(self.pool(gate) + 3.0) * QSIGMOID, high.shape[2:], True)
        y = resize(self.aspp0(high) * gate, low.shape[2:], True)
        return self.project(y) + self.merge(low)


class DeepLabV3PMobileNetV3(DeepLabV3P):
    """converters.arch.deeplab.DeepLabV3P ("paddleseg") or the static Lite R-ASPP net ("paddlex")."""

    def _build(self, cfg: DeepLabConfig) -> None:
        if hasattr(self, "head"):
            del self.head
        if not cfg.static:
            super()._build(cfg)
            return
        if not cfg.head:
            raise ValueError("the static MobileNetV3 DeepLab always has its encoder and decoder")
        for name in ("aspp", "decoder", "logit"):
            if hasattr(self, name):
                delattr(self, name)
        self.cfg = cfg
        self.backbone = self._backbone_factory(True)
        low, high = self.backbone.channels
        self.head = LiteHead(high, low, cfg.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.cfg.static:
            return super().forward(x)
        low, high = self.backbone(x)
        return resize(self.head(high, low), x.shape[2:], True)


def deeplab_mobilenet_v3(num_classes: int = 19) -> DeepLabV3PMobileNetV3:
    """PaddleSeg 2.8's net at output stride 8; ``set_numerics("paddlex")`` for the static one."""
    return DeepLabV3PMobileNetV3(MobileNetV3Features, DeepLabConfig(num_classes, ratios=(12, 24, 36)))
