"""PP-LCNetV3 as Paddle *exports* it (width rounding and squeeze-excite come from the shared
paddle_blocks library, as for MobileNetV3).

In training PP-LCNetV3's "learnable rep layers" hold several conv+BN branches; export folds them
into one conv with a bias, so an inference program (the only form PP-OCRv4 ships) has, per rep
layer: conv(+bias), a scalar affine ("lab"), then hard_swish and a second scalar affine. Facts
read from the v4 det/rec programs, each reproduced here:
- a rep layer with the square stride 2 has no activation (Paddle tests ``stride != 2``), while
  the rectangular strides (2, 1) and (1, 2) of the recogniser keep it;
- the stem is conv + BatchNorm with no activation;
- the squeeze-excite gate is hard_sigmoid with slope 0.1666667 (paddle.nn.Hardsigmoid's literal,
  float32 0.16666670143604279; float32(1/6) would be 0.1666666716), not 0.2; its convs have
  biases, reduction 4;
- widths are ``make_divisible(c * scale, 16)``; the detector's extra 1x1 output convs are
  ``int(c * scale)`` wide."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from .paddle_blocks import SqueezeExcite, make_divisible
from .paddle_ops import Affine, HardSwish

Stride = tuple[int, int]


def _pair(s: int | Stride) -> Stride:
    return (s, s) if isinstance(s, int) else tuple(s)


class ConvBN(nn.Module):
    """Bias-free conv then BatchNorm, no activation (the LCNetV3 stem)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int | Stride = 1, bn_eps: float = 1e-5):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, _pair(stride), (kernel - 1) // 2, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=bn_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))


class AffineHardSwish(nn.Module):
    """hard_swish followed by a scalar affine (PP-LCNetV3's ``Act``)."""

    def __init__(self):
        super().__init__()
        self.hswish = HardSwish()
        self.affine = Affine()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.affine(self.hswish(x))


class RepConv(nn.Module):
    """An exported learnable rep layer: folded conv with bias, scalar affine, activation unless the
    stride is the square 2 (see the module docstring)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int | Stride = 1, groups: int = 1):
        super().__init__()
        stride = _pair(stride)
        self.conv = nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, groups=groups, bias=True)
        self.lab = Affine()
        self.act = AffineHardSwish() if stride != (2, 2) else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.lab(self.conv(x)))


LCNET_SE_SLOPE = 0.1666667  # the programs' hard_sigmoid attr, bit for bit once stored as float32


class LCNetBlock(nn.Module):
    """Depthwise rep conv (carries the stride), optional squeeze-excite, pointwise rep conv."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int | Stride, se: bool):
        super().__init__()
        self.dw = RepConv(cin, cin, kernel, stride, groups=cin)
        self.se = SqueezeExcite(cin, 4, LCNET_SE_SLOPE) if se else nn.Identity()
        self.pw = RepConv(cin, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pw(self.se(self.dw(x)))


@dataclass(frozen=True)
class BlockCfg:
    kernel: int
    cin: int  # widths at scale 1
    cout: int
    stride: int | Stride
    se: bool


def _blocks(*rows) -> tuple[BlockCfg, ...]:
    return tuple(BlockCfg(*r) for r in rows)


# PP-LCNetV3 stages 2..6 at scale 1 (kernel, in, out, stride, SE); the det and rec variants differ
# only in strides. Read off the v4 programs (widths divided back by the scale).
DET_STAGES = (
    _blocks((3, 16, 32, 1, False)),
    _blocks((3, 32, 64, 2, False), (3, 64, 64, 1, False)),
    _blocks((3, 64, 128, 2, False), (3, 128, 128, 1, False)),
    _blocks((3, 128, 256, 2, False), *[(5, 256, 256, 1, False)] * 4),
    _blocks((5, 256, 512, 2, True), (5, 512, 512, 1, True), *[(5, 512, 512, 1, False)] * 2),
)
REC_STAGES = (
    _blocks((3, 16, 32, 1, False)),
    _blocks((3, 32, 64, 1, False), (3, 64, 64, 1, False)),
    _blocks((3, 64, 128, (2, 1), False), (3, 128, 128, 1, False)),
    _blocks((3, 128, 256, (1, 2), False), *[(5, 256, 256, 1, False)] * 4),
    _blocks((5, 256, 512, (2, 1), True), (5, 512, 512, 1, True), (5, 512, 512, (2, 1), False),
            (5, 512, 512, 1, False)),
)


@dataclass(frozen=True)
class LCNetConfig:
    stages: tuple[tuple[BlockCfg, ...], ...]
    scale: float
    stem: int = 16  # stem width at scale 1 (3x3, stride 2)
    # detector: one biased 1x1 conv per stage output from stage 3 on (widths at scale 1, int(c*scale))
    det_outs: tuple[int, ...] = ()
    # recogniser: plain average pool (kernel = stride, no padding) after the last stage
    final_pool: Stride | None = None

    def width(self, c: int) -> int:
        return make_divisible(c * self.scale, 16)


LCNET_DET_075 = LCNetConfig(DET_STAGES, 0.75, det_outs=(16, 24, 56, 480))
LCNET_REC_095 = LCNetConfig(REC_STAGES, 0.95, final_pool=(3, 2))


class LCNetV3(nn.Module):
    """Exported PP-LCNetV3. Blocks are numbered flat (``blocks.N``); ``stage_ends`` lists the block
    index that closes each stage. forward returns the last map (rec: pooled) or, with ``det_outs``,
    the list of 1x1-projected maps of stages 3..6 (strides 4, 8, 16, 32)."""

    def __init__(self, cfg: LCNetConfig):
        super().__init__()
        self.cfg = cfg
        self.stem = ConvBN(3, cfg.width(cfg.stem), 3, 2)
        blocks, ends = [], []
        for stage in cfg.stages:
            for b in stage:
                blocks.append(LCNetBlock(cfg.width(b.cin), cfg.width(b.cout), b.kernel, b.stride, b.se))
            ends.append(len(blocks) - 1)
        self.blocks = nn.ModuleList(blocks)
        self.stage_ends = tuple(ends)
        self.out_channels = [cfg.width(s[-1].cout) for s in cfg.stages]
        if cfg.det_outs:
            taps = self.out_channels[-len(cfg.det_outs):]
            self.det_outs = nn.ModuleList(nn.Conv2d(c, int(o * cfg.scale), 1)
                                          for c, o in zip(taps, cfg.det_outs))
            self.out_channels = [int(o * cfg.scale) for o in cfg.det_outs]
        else:
            self.det_outs = None

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        x = self.stem(x)
        feats = []
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in self.stage_ends:
                feats.append(x)
        if self.det_outs is not None:
            return [conv(f) for conv, f in zip(self.det_outs, feats[-len(self.det_outs):])]
        if self.cfg.final_pool is not None:
            x = F.avg_pool2d(x, self.cfg.final_pool)
        return x
