"""DeepLabV3+ as PaddleSeg 2.x ("paddleseg", ``paddleseg.models.DeepLabV3P``) and PaddleSeg 0.x /
PaddleX 1.x's static program ("paddlex") define it, on a backbone returning (low-level, deepest).

PaddleSeg 2.x head: ASPP of a 1x1 conv-BN-ReLU, three separable 3x3 convs dilated 6, 12, 18 and an
image pool (global mean, bias-free 1x1 conv-BN-ReLU, resized back), concatenated in that order,
then a 1x1 conv-BN-ReLU to 256 (Dropout: identity in eval). Decoder: the low-level feature through
a 1x1 conv-BN-ReLU to 48, the ASPP output resized to it and concatenated before it, two separable
convs, a 1x1 classifier; logits resized to the input. Its convs carry biases (the image pool's
not), its separable convs have no ReLU after the depthwise BN, resizes use align_corners False.

The static net (``set_numerics("paddlex")``, which rebuilds the untrained layers before loading):
- bias-free convs (the classifier keeps its bias), ReLU after the depthwise BNs too;
- the image pool comes FIRST in the concatenation;
- fluid ``dropout(0.9)`` after the ASPP projection, "downgrade_in_infer": x * 0.1 at inference;
- MobileNetV2 at output stride 16 (the stride of stage 6, block 13, becomes 1, no dilation) and
  the decoder's low-level input is the depthwise output of block 2 (144 ch at 1/4), not block 2's
  output (24 ch);
- Xception65: PaddleSeg 2.x's trunk (output stride 16) again, but the decoder's low-level input is
  entry block 2's second separable conv (256 ch at 1/4), not entry block 1's output (128 ch);
- every bilinear resize has align_corners True (``fluid.layers.resize_bilinear``'s default);
- PaddleSeg 0.x's Cityscapes MobileNetV2 model was trained with ENCODER_WITH_ASPP and ENABLE_DECODER
  False: no ASPP, no decoder, the classifier on the backbone's 320 channels (``head=False``).
The classifier is ``logit`` in every form."""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .mobilenet import MobileNet, MobileNetConfig
from .paddle_ops import DownscaleInInfer
from .paddle_seg import ConvBNAct, SeparableConvBNAct, resize
from .xception import Xception, XceptionConfig

NUMERICS = ("paddleseg", "paddlex")

# PaddleSeg 2.x MobileNetV2 = PaddleClas's (the t = 1 block keeps its expansion conv), without
# the last 1x1 conv and classifier; DeepLabV3+ takes stage 2's output (24 ch, 1/4) and stage 7's (320, 1/32)
MOBILENET_V2 = MobileNetConfig(2, 1.0, "relu6", bn_eps=1e-5, expand_t1=True, v2_classifier="linear")
V2_LOW, V2_HIGH = 2, 16  # flat block indices of those two outputs
V2_OS32 = 13  # the block whose stride 2 takes the trunk from 1/16 to 1/32


class MobileNetV2Features(nn.Module):
    """converters.arch.mobilenet's MobileNet v2 trunk (stem + 17 blocks), returning two taps: the
    output of block ``V2_LOW`` (PaddleSeg 2.x) or its depthwise conv's output (static), and the last
    block's output at output stride 32 (PaddleSeg 2.x) or 16 (static)."""

    def __init__(self, static: bool = False, cfg: MobileNetConfig = MOBILENET_V2):
        super().__init__()
        net = MobileNet(cfg)
        self.stem, self.blocks = net.stem, net.blocks[:V2_HIGH + 1]
        self.static = static
        low = self.blocks[V2_LOW]
        if static:
            self.blocks[V2_OS32].dw.conv.stride = (1, 1)
        self.channels = (low.dw.bn.num_features if static else low.project.bn.num_features,
                         self.blocks[V2_HIGH].project.bn.num_features)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.stem(x)
        low = None
        for i, block in enumerate(self.blocks):
            if i == V2_LOW and self.static:  # the block run step by step to keep its depthwise output
                low = block.dw(block.expand(x))
                y = block.project(low)
                x = x + y if block.use_shortcut else y
            else:
                x = block(x)
                low = x if i == V2_LOW else low
        return low, x


class XceptionFeatures(nn.Module):
    """converters.arch.xception's DeepLab Xception (PaddleClas = PaddleSeg 2.x definition) at output
    stride 16, as PaddleSeg 2.x's ``Xception*_deeplab`` builds it: exit block 1 unstrided (its third
    separable conv and its shortcut), exit block 2 dilated 2 as in the classifier. Taps: entry block
    1's output (128 ch, 1/4) and the exit flow's (2048 ch, 1/16). No dropout / pool / Linear.
    ``static``: the same trunk (PaddleX 1.x / PaddleSeg 0.x strides and dilations are these), but the
    low-level tap is entry block 2's second separable conv (its pointwise BN output, 256 ch, still at
    1/4: the block strides in its third), the static program's ``decode_points=2``.
    PaddleSeg's BN layers output before the ReLU (a separate activation layer), where PaddleClas's
    ``BatchNorm(act="relu")`` includes it: the BNs here are plain and the ReLUs run in ``forward``,
    so each BN's output is comparable with PaddleSeg's."""

    def __init__(self, static: bool = False, middle_blocks: int = 16):
        super().__init__()
        net = Xception(XceptionConfig(middle_blocks))
        for name in ("conv1", "bn1", "conv2", "bn2", "entry", "middle", "exit1", "exit2"):
            setattr(self, name, getattr(net, name))
        self.exit1.sep3.depthwise.stride = self.exit1.shortcut_conv.stride = (1, 1)
        for bn in (self.bn1, self.bn2, *(b for sep in self._exit2_seps() for b in (sep.bn_depth, sep.bn_point))):
            bn.act = None
        self.static = static
        low = self.entry[1].sep2 if static else self.entry[0].sep3
        self.channels = (low.bn_point.num_features, self.exit2.sep3.bn_point.num_features)

    def _exit2_seps(self):
        return self.exit2.sep1, self.exit2.sep2, self.exit2.sep3

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = F.relu(self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))))
        low = x = self.entry[0](x)
        if self.static:  # entry block 2 run step by step to keep its second separable conv's output
            b = self.entry[1]
            low = b.sep2(F.relu(b.sep1(F.relu(x))))
            x = b.sep3(F.relu(low)) + b.shortcut_bn(b.shortcut_conv(x))
        else:
            x = self.entry[1](x)
        for block in (*self.entry[2:], *self.middle, self.exit1):
            x = block(x)
        for sep in self._exit2_seps():  # exit block 2: ReLU after every BN, no shortcut
            x = F.relu(sep.bn_point(sep.pointwise(F.relu(sep.bn_depth(sep.depthwise(x))))))
        return low, x


@dataclass(frozen=True)
class DeepLabConfig:
    num_classes: int = 19
    ratios: tuple[int, ...] = (6, 12, 18)  # PaddleSeg's aspp_ratios (1, 6, 12, 18): the 1 is the 1x1 branch
    channels: int = 256
    numerics: str = "paddleseg"
    head: bool = True  # ASPP + decoder; False: the classifier straight on the backbone (static only)

    @property
    def static(self) -> bool:
        return self.numerics == "paddlex"


class ASPP(nn.Module):
    def __init__(self, cin: int, cfg: DeepLabConfig):
        super().__init__()
        c, st = cfg.channels, cfg.static
        self.branches = nn.ModuleList([ConvBNAct(cin, c, 1, 1, 0, bias=not st)] + [
            SeparableConvBNAct(cin, c, 1, r, bias=not st, dw_act=st) for r in cfg.ratios])
        self.pool = ConvBNAct(cin, c, 1, 1, 0, bias=False)
        self.project = ConvBNAct(c * (len(cfg.ratios) + 2), c, 1, 1, 0, bias=not st)
        self.drop = DownscaleInInfer(0.9) if st else nn.Identity()
        self.static = st

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # run in the source's order (static: image pool first), as an exported program aligns by op order
        def pool() -> list[torch.Tensor]:
            return [resize(self.pool(x.mean((2, 3), keepdim=True)), x.shape[2:], self.static)]
        if self.static:
            parts = pool() + [b(x) for b in self.branches]
        else:
            parts = [b(x) for b in self.branches] + pool()
        return self.drop(self.project(torch.cat(parts, 1)))


class Decoder(nn.Module):
    def __init__(self, low_channels: int, cfg: DeepLabConfig):
        super().__init__()
        c, st = cfg.channels, cfg.static
        self.reduce = ConvBNAct(low_channels, 48, 1, 1, 0, bias=not st)
        self.sep1 = SeparableConvBNAct(c + 48, c, bias=not st, dw_act=st)
        self.sep2 = SeparableConvBNAct(c, c, bias=not st, dw_act=st)
        self.static = st

    def forward(self, x: torch.Tensor, low: torch.Tensor) -> torch.Tensor:
        low = self.reduce(low)
        x = torch.cat([resize(x, low.shape[2:], self.static), low], 1)
        return self.sep2(self.sep1(x))


class DeepLabV3P(nn.Module):
    """``backbone(static)`` builds the trunk; its ``channels`` are (low-level, deepest) widths."""

    def __init__(self, backbone: Callable[[bool], nn.Module], cfg: DeepLabConfig = DeepLabConfig()):
        super().__init__()
        self._backbone_factory = backbone
        self._build(cfg)

    def _build(self, cfg: DeepLabConfig) -> None:
        if cfg.numerics not in NUMERICS:
            raise ValueError(f"DeepLabV3P numerics must be one of {NUMERICS}, got {cfg.numerics!r}")
        if not (cfg.head or cfg.static):
            raise ValueError("PaddleSeg 2.x's DeepLabV3P always has its ASPP and decoder")
        for name in ("aspp", "decoder"):  # a rebuild without the head drops them
            if hasattr(self, name):
                delattr(self, name)
        self.cfg = cfg
        self.backbone = self._backbone_factory(cfg.static)
        low, high = self.backbone.channels
        if cfg.head:
            self.aspp = ASPP(high, cfg)
            self.decoder = Decoder(low, cfg)
        self.logit = nn.Conv2d(cfg.channels if cfg.head else high, cfg.num_classes, 1)

    def set_numerics(self, name: str) -> None:
        """"paddleseg" or "paddlex": rebuilds the (untrained) layers; call it before loading weights."""
        if name != self.cfg.numerics:
            self._build(replace(self.cfg, numerics=name))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        low, high = self.backbone(x)
        y = self.decoder(self.aspp(high), low) if self.cfg.head else high
        return resize(self.logit(y), x.shape[2:], self.cfg.static)


def deeplab_mobilenet_v2(num_classes: int = 19, head: bool = True) -> DeepLabV3P:
    return DeepLabV3P(MobileNetV2Features, DeepLabConfig(num_classes, head=head))


def deeplab_xception65(num_classes: int = 19) -> DeepLabV3P:
    return DeepLabV3P(XceptionFeatures, DeepLabConfig(num_classes))
