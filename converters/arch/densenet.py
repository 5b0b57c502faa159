"""torchvision's DenseNet with each BatchNorm and the ReLU after it as one module
(``paddle_ops.BatchNormAct``): the same function and the same state-dict keys as
``torchvision.models.densenet*``, but a BN layer's output is taken after its activation, as
Paddle's ``BatchNorm(act="relu")`` gives it, so parity pairs compare like with like."""
from __future__ import annotations

import torchvision
from torch import nn

from .paddle_ops import as_bn_act, fold_bn_relu


def densenet(depth: int, num_classes: int = 1000) -> torchvision.models.DenseNet:
    """torchvision.models.densenet<depth> (121, 161, 169, 201), BN and ReLU folded. ``features.norm5``
    has no ReLU sibling (DenseNet.forward applies F.relu after it): it gets one too, and relu is
    idempotent, so the second application changes no bit."""
    net = fold_bn_relu(getattr(torchvision.models, f"densenet{depth}")(weights=None, num_classes=num_classes))
    net.features.norm5 = as_bn_act(net.features.norm5, nn.ReLU())
    return net
