"""torchvision's DenseNet with each BatchNorm and the ReLU after it as one module (``BatchNormReLU``):
the same function and the same state-dict keys as ``torchvision.models.densenet*``, but a BN
layer's output is taken after its activation, as Paddle's ``BatchNorm(act="relu")`` gives it, so
parity pairs compare like with like."""
from __future__ import annotations

import torch
import torch.nn.functional as F
import torchvision
from torch import nn


class BatchNormReLU(nn.BatchNorm2d):
    """relu(batch_norm(x)); parameters and buffers named as nn.BatchNorm2d's."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(super().forward(x))


def _fused(bn: nn.BatchNorm2d) -> BatchNormReLU:
    out = BatchNormReLU(bn.num_features, eps=bn.eps, momentum=bn.momentum, affine=bn.affine,
                        track_running_stats=bn.track_running_stats, device=bn.weight.device)
    out.load_state_dict(bn.state_dict())
    return out


def fuse_bn_relu(net: torchvision.models.DenseNet) -> torchvision.models.DenseNet:
    """Every ``norm<k>`` with a sibling ``relu<k>`` becomes a BatchNormReLU and that ReLU an
    Identity; ``features.norm5`` too, whose ReLU is the F.relu in DenseNet.forward (relu is
    idempotent, so it is applied twice without changing a bit)."""
    for module in list(net.modules()):
        children = dict(module.named_children())
        for name, child in children.items():
            sibling = children.get(relu := "relu" + name.removeprefix("norm"))
            if name.startswith("norm") and isinstance(child, nn.BatchNorm2d) and isinstance(sibling, nn.ReLU):
                setattr(module, name, _fused(child))
                setattr(module, relu, nn.Identity())
    net.features.norm5 = _fused(net.features.norm5)
    return net


def densenet(depth: int, num_classes: int = 1000) -> torchvision.models.DenseNet:
    """torchvision.models.densenet<depth> (121, 161, 169, 201), BN and ReLU fused as above."""
    return fuse_bn_relu(getattr(torchvision.models, f"densenet{depth}")(weights=None, num_classes=num_classes))
