"""Paddle operations whose arithmetic differs from torch's built-ins; used by every Paddle family.

Each is written out so the converted model computes what Paddle computes, not a near relative:
- ``hard_sigmoid``: clip(slope * x + offset, 0, 1), slope 0.2 by default. torch's ``hardsigmoid``
  is relu6(x + 3) / 6, i.e. slope 1/6: a different function, not a rounding difference.
- ``hard_swish``: x * clip(x + offset, 0, threshold) / scale (3, 6, 6 by default, as torch).
- ``Affine``: PP-LCNetV3's learnable affine block, scale * x + bias with one scalar each.
- ``BatchNormAct``: the legacy ``BatchNorm(act=...)`` layer, whose output is already activated: a
  parity capture of that layer must meet the activated value on the torch side too.
- ``DownscaleInInfer``: Dropout in "downscale_in_infer" mode, x * (1 - p) at inference, where
  torch's Dropout is the identity.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn


class HardSigmoid(nn.Module):
    """Paddle's hard_sigmoid, in Paddle's order of operations. ``slope`` is rounded to float32 as
    Paddle stores it: PP-LCNetV3 passes the literal 0.1666667 (float32 0.16666670143604279, not
    float32(1/6) = 0.1666666716), so pass the program's value, not 1/6."""

    def __init__(self, slope: float = 0.2, offset: float = 0.5):
        super().__init__()
        self.slope, self.offset = float(np.float32(slope)), float(offset)  # no tensor: builds on meta too

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.clamp(x * self.slope + self.offset, 0.0, 1.0)

    def extra_repr(self) -> str:
        return f"slope={self.slope}, offset={self.offset}"


class HardSwish(nn.Module):
    def __init__(self, offset: float = 3.0, threshold: float = 6.0, scale: float = 6.0):
        super().__init__()
        self.offset, self.threshold, self.scale = offset, threshold, scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.clamp(x + self.offset, 0.0, self.threshold) / self.scale


class Affine(nn.Module):
    """scale * x + bias with scalar parameters (PP-LCNetV3's LearnableAffineBlock)."""

    def __init__(self, scale: float = 1.0, bias: float = 0.0):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor([scale]))
        self.bias = nn.Parameter(torch.tensor([bias]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * x + self.bias


class BatchNormAct(nn.BatchNorm2d):
    """BatchNorm2d with the activation in its forward (state-dict keys unchanged); ``act`` None: plain."""

    def __init__(self, num_features: int, act: nn.Module | None = None, eps: float = 1e-5):
        super().__init__(num_features, eps=eps)
        self.act = act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = super().forward(x)
        return x if self.act is None else self.act(x)


def fold_bn_relu(net: nn.Module) -> nn.Module:
    """In place: every exact BatchNorm2d child directly followed by a ReLU sibling (registration
    order, which is execution order in the torchvision nets this serves) becomes a BatchNormAct
    holding that ReLU, and the ReLU an Identity. The same function, the same state-dict keys."""
    for module in list(net.modules()):
        children = list(module.named_children())
        for (name, child), (next_name, after) in zip(children, children[1:]):
            if type(child) is nn.BatchNorm2d and isinstance(after, nn.ReLU):
                setattr(module, name, as_bn_act(child, nn.ReLU()))
                setattr(module, next_name, nn.Identity())
    return net


def as_bn_act(bn: nn.BatchNorm2d, act: nn.Module) -> BatchNormAct:
    out = BatchNormAct(bn.num_features, act, eps=bn.eps).to(bn.weight.device)
    out.load_state_dict(bn.state_dict())
    return out


class DownscaleInInfer(nn.Module):
    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * (1.0 - self.p)

    def extra_repr(self) -> str:
        return f"p={self.p}"
