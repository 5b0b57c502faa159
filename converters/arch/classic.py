"""Classic ImageNet classifiers where a torchvision module is not the same network.

AlexNet: own module because torchvision's puts its two Dropouts before fc6 and fc7, while the
gluon network (the original "one weird trick" layout) drops the outputs of fc6 and fc7, i.e. before
fc7 and the classifier; and torchvision adds an AdaptiveAvgPool2d((6, 6)) that the source does not
have. In eval mode both differences vanish at a 224x224 input (Dropout is the identity, the pool is
the identity on a 6x6 map), so the state dict is torchvision-compatible by a key rename.
PaddleClas's AlexNet (``paddle=True``) has torchvision's Dropout places (before fc6 and fc7, so
torchvision's keys) but Paddle's ``downscale_in_infer`` mode: x * (1 - p) at inference, where
torch's Dropout is the identity; its trained weights expect those two 0.5 scales."""
from __future__ import annotations

import torch
from torch import nn

from .paddle_ops import DownscaleInInfer


class AlexNet(nn.Module):
    """Five convs (ReLU after each, 3x3/2 floor-mode max pools after the 1st, 2nd and 5th), then
    flatten (NCHW C-major) -> Linear, ReLU, Dropout, Linear, ReLU, Dropout, Linear. ``features``
    keys are torchvision's; the classifier's Linears are at 0, 3, 6 (torchvision: 1, 4, 6).
    ``paddle``: Dropout (Paddle's inference scale) before fc6 and fc7, Linears at 1, 4, 6."""

    def __init__(self, num_classes: int = 1000, dropout: float = 0.5, paddle: bool = False) -> None:
        super().__init__()
        widths = (64, 192, 384, 256, 256)
        convs = [nn.Conv2d(3, 64, 11, stride=4, padding=2), nn.Conv2d(64, 192, 5, padding=2),
                 *(nn.Conv2d(cin, cout, 3, padding=1) for cin, cout in zip(widths[1:], widths[2:]))]
        layers: list[nn.Module] = []
        for i, conv in enumerate(convs):
            layers += [conv, nn.ReLU()]
            if i in (0, 1, 4):
                layers.append(nn.MaxPool2d(3, stride=2))  # MXNet 'valid' == torch floor mode
        self.features = nn.Sequential(*layers)
        fc6, fc7, fc8 = nn.Linear(256 * 6 * 6, 4096), nn.Linear(4096, 4096), nn.Linear(4096, num_classes)
        if paddle:
            self.classifier = nn.Sequential(DownscaleInInfer(dropout), fc6, nn.ReLU(),
                                            DownscaleInInfer(dropout), fc7, nn.ReLU(), fc8)
        else:
            self.classifier = nn.Sequential(fc6, nn.ReLU(), nn.Dropout(dropout),
                                            fc7, nn.ReLU(), nn.Dropout(dropout), fc8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


ALEXNET_TO_TORCHVISION = {"classifier.0.": "classifier.1.", "classifier.3.": "classifier.4."}


def alexnet_torchvision_key(key: str) -> str:
    """Our AlexNet state-dict key -> torchvision.models.AlexNet's."""
    for ours, theirs in ALEXNET_TO_TORCHVISION.items():
        if key.startswith(ours):
            return theirs + key[len(ours):]
    return key
