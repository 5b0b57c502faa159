"""Modulated deformable convolution (DCNv2) as Paddle builds it (ppdet's ResNet ``dcn_v2_stages``,
PaddleDetection 0.x / PaddleX 1.x ``_conv_norm(dcn_v2=True)``): a plain conv ``conv_offset`` (with
bias) predicts 3*k*k channels from the input; the first 2*k*k are the offsets, (dy, dx) interleaved
per kernel point, the last k*k pass a sigmoid and become the modulation mask; the deformable conv
itself has no bias.

torchvision.ops.deform_conv2d computes the same thing: its offset layout is Paddle's (dy, dx) per
kernel point, its mask is per kernel point, and it samples bilinearly with zeros outside the map
(checked against paddle.vision.ops.deform_conv2d in parity/tests/test_ppyolo.py)."""
from __future__ import annotations

import torch
from torch import nn
from torchvision.ops import deform_conv2d


class ModulatedDeformConv2d(nn.Module):
    """``weight`` (out, in, k, k), no bias; ``conv_offset`` Conv2d(in, 3*k*k, k, stride, k // 2)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1):
        super().__init__()
        self.stride, self.padding, self.kernel = stride, kernel // 2, kernel
        self.weight = nn.Parameter(torch.empty(cout, cin, kernel, kernel))
        nn.init.kaiming_uniform_(self.weight, a=5 ** 0.5)
        self.conv_offset = nn.Conv2d(cin, 3 * kernel * kernel, kernel, stride, kernel // 2)
        nn.init.zeros_(self.conv_offset.weight)  # as Paddle initialises it: a plain conv at start
        nn.init.zeros_(self.conv_offset.bias)

    @classmethod
    def like(cls, conv: nn.Conv2d) -> "ModulatedDeformConv2d":
        """A DCNv2 with the geometry of a square, ungrouped, undilated, bias-free ``conv``."""
        k = conv.kernel_size[0]
        if (conv.groups != 1 or conv.bias is not None or conv.dilation != (1, 1) or conv.kernel_size != (k, k)
                or conv.padding != (k // 2, k // 2) or conv.stride[0] != conv.stride[1]):
            raise ValueError(f"no DCNv2 equivalent for {conv}")
        return cls(conv.in_channels, conv.out_channels, k, conv.stride[0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        om = self.conv_offset(x)
        kk = self.kernel * self.kernel
        offset, mask = om[:, : 2 * kk], torch.sigmoid(om[:, 2 * kk:])
        return deform_conv2d(x, offset, self.weight, stride=self.stride, padding=self.padding, mask=mask)

    def extra_repr(self) -> str:
        o, i, k, _ = self.weight.shape
        return f"{i}, {o}, kernel_size={k}, stride={self.stride}, padding={self.padding}"
