"""Blocks shared by the PaddleSeg / PaddleX segmentation nets (fast_scnn.py, deeplab.py).

Own code where Paddle's arithmetic differs from torch's built-ins:
- ``SameConv2d``: Paddle's ``padding="same"`` pads ceil-style and puts the odd pixel at the bottom /
  right (pad_before = total // 2), input-size dependent for stride 2; torch's ``padding="same"``
  refuses strides above 1.
- ``resize``: bilinear with the switch the two Paddle generations differ in: ``fluid.layers.
  resize_bilinear`` defaults to align_corners=True, PaddleSeg 2.x passes align_corners=False.
- ``resize_asym``: Paddle's bilinear with align_corners False and align_mode 1 (PaddleX 1.x's
  static HRNet fusion): source index = output index * in / out, no half-pixel shift; torch's
  interpolate has no such mode."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

BN_EPS = 1e-5  # paddle.nn.BatchNorm2D and fluid.layers.batch_norm default epsilon


def resize(x: torch.Tensor, size, align_corners: bool) -> torch.Tensor:
    return F.interpolate(x, size=tuple(int(s) for s in size), mode="bilinear", align_corners=align_corners)


def resize_asym(x: torch.Tensor, size) -> torch.Tensor:
    """Bilinear, align_mode 1: along each axis out[k] = lerp(in[i], in[min(i + 1, n - 1)], t) with
    i + t = k * n / m (a float32 ratio, as Paddle's kernel computes it)."""
    out = x
    for axis, m in ((-2, int(size[0])), (-1, int(size[1]))):
        n = out.shape[axis]
        src = torch.arange(m, dtype=torch.float32, device=x.device) * torch.tensor(n / m, dtype=torch.float32)
        lo = src.floor().long().clamp(0, n - 1)
        hi = (lo + 1).clamp(max=n - 1)
        t = (src - lo).to(x.dtype).view((-1, 1) if axis == -2 else (-1,))
        out = out.index_select(axis, lo) * (1 - t) + out.index_select(axis, hi) * t
    return out


class SameConv2d(nn.Conv2d):
    """Conv2d with Paddle's "same" padding: out = ceil(in / stride), the odd pixel padded after."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1, bias: bool = True):
        super().__init__(cin, cout, kernel, stride, 0, groups=groups, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for size, k, s in zip(reversed(x.shape[2:]), reversed(self.kernel_size), reversed(self.stride)):
            total = max((math.ceil(size / s) - 1) * s + k - size, 0)
            pads += [total // 2, total - total // 2]
        return super().forward(F.pad(x, pads) if any(pads) else x)


def conv2d(cin: int, cout: int, kernel: int, stride: int = 1, padding: int | str = "same", *,
           dilation: int = 1, groups: int = 1, bias: bool = True) -> nn.Conv2d:
    """A Paddle conv: ``padding`` an int (symmetric) or "same" (Paddle's rule)."""
    if padding == "same":
        if dilation != 1:
            raise ValueError("padding 'same' with dilation is not used by these nets")
        if stride == 1 and kernel % 2:  # symmetric then: a plain conv
            return nn.Conv2d(cin, cout, kernel, 1, kernel // 2, groups=groups, bias=bias)
        return SameConv2d(cin, cout, kernel, stride, groups, bias)
    return nn.Conv2d(cin, cout, kernel, stride, padding, dilation, groups=groups, bias=bias)


class ConvBNAct(nn.Module):
    """conv, BatchNorm, then ReLU / ReLU6 / nothing (``act`` "relu" | "relu6" | None)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, padding: int | str = "same", *,
                 dilation: int = 1, groups: int = 1, bias: bool = True, act: str | None = "relu"):
        super().__init__()
        self.conv = conv2d(cin, cout, kernel, stride, padding, dilation=dilation, groups=groups, bias=bias)
        self.bn = nn.BatchNorm2d(cout, eps=BN_EPS)
        self.act = {"relu": nn.ReLU(), "relu6": nn.ReLU6(), None: nn.Identity()}[act]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class SeparableConvBNAct(nn.Module):
    """Depthwise conv-BN (ReLU after it only in the static nets: ``dw_act``), pointwise conv-BN-ReLU.
    PaddleSeg 2.x's ``SeparableConvBNReLU`` has biased convs and no ReLU after the depthwise BN;
    the static ``separate_conv`` has bias-free convs and a ReLU after both BNs."""

    def __init__(self, cin: int, cout: int, stride: int = 1, dilation: int = 1, *, bias: bool, dw_act: bool,
                 padding: int | str | None = None):
        super().__init__()
        pad = dilation if padding is None else padding
        self.depthwise = ConvBNAct(cin, cin, 3, stride, pad, dilation=dilation, groups=cin, bias=bias,
                                   act="relu" if dw_act else None)
        self.pointwise = ConvBNAct(cin, cout, 1, 1, 0, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))
