"""The float64 reference copy of a converted module (the third run of `verify`, which measures fp32
noise). Torch's CPU float64 path for depthwise convolutions has no fast kernel (one im2col per
channel: a MobileNet's depthwise layer runs ~20x slower than in float32), which made the reference
run most of a MobileNet's parity time. Those convolutions here run as a sum over kernel taps of
shifted inputs times per-channel weights, in float64: the same sums in another order, so the
reference moves by float64 rounding only (~1e-16 relative, far below the fp32 noise it measures)."""
from __future__ import annotations

import copy
import types

import torch
import torch.nn.functional as F
from torch import nn


def reference64(module: nn.Module) -> nn.Module:
    """A float64 deep copy of ``module`` whose depthwise 2-D convolutions take the tap-sum path
    (other grouped ones stay on torch's kernel, which beats an einsum per tap).
    Module paths and hooks are unchanged (only the instances' ``forward`` is replaced)."""
    out = copy.deepcopy(module).double()
    for sub in out.modules():
        if type(sub) is nn.Conv2d and sub.groups > 1 and sub.in_channels == sub.groups \
                and sub.padding_mode == "zeros" and not isinstance(sub.padding, str):
            sub.forward = types.MethodType(_grouped_forward, sub)
    return out


def _grouped_forward(self: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    if x.dtype != torch.float64:
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)
    return grouped_conv2d_taps(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)


def grouped_conv2d_taps(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, stride, padding,
                        dilation, groups: int) -> torch.Tensor:
    """``F.conv2d`` (zero padding) as a sum over the kh*kw kernel taps of strided views of the padded
    input, each contracted with that tap's [groups, out/groups, in/groups] weights (any groups;
    ``reference64`` uses it for depthwise ones only)."""
    (sh, sw), (ph, pw), (dh, dw) = (_pair(v) for v in (stride, padding, dilation))
    n, c, h, w = x.shape
    o, cg, kh, kw = weight.shape
    og = o // groups
    ho = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    wo = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    xp = F.pad(x, (pw, pw, ph, ph)).view(n, groups, cg, h + 2 * ph, w + 2 * pw)
    wg = weight.view(groups, og, cg, kh, kw)
    out = x.new_zeros(n, groups, og, ho, wo)
    for i in range(kh):
        for j in range(kw):
            tap = xp[..., i * dh: i * dh + sh * (ho - 1) + 1: sh, j * dw: j * dw + sw * (wo - 1) + 1: sw]
            if cg == 1:  # depthwise (og output channels per input channel): a broadcast multiply
                out.addcmul_(tap, wg[None, :, :, 0, i, j, None, None])
            else:
                out += torch.einsum("goc,ngchw->ngohw", wg[..., i, j], tap)
    out = out.reshape(n, o, ho, wo)
    return out if bias is None else out + bias.view(1, o, 1, 1)


def _pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))
