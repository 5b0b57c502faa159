"""Simple Baselines pose estimation (Xiao et al., 2018): a ResNet without pool and classifier,
three stride-2 transposed convs (each + BN + ReLU) and a 1x1 conv to one heatmap per joint.

Built on converters.arch.resnet.ResNet as a subclass, so the state-dict keys are the paper's own
PyTorch layout (``conv1``, ``bn1``, ``layer1``..``layer4``, ``deconv_layers.N``, ``final_layer``).
The keypoint helpers reproduce gluoncv's decoding (``get_max_pred``, ``heatmap_to_coord``)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from .resnet import ResNet, ResNetConfig

# kernel -> (padding, output_padding): every choice exactly doubles the map, out = 2 * in
DECONV_PADDING = {4: (1, 0), 3: (1, 1), 2: (0, 0)}


@dataclass(frozen=True)
class SimplePoseConfig:
    backbone: ResNetConfig
    num_joints: int = 17  # COCO keypoints
    deconv_filters: tuple[int, ...] = (256, 256, 256)
    deconv_kernels: tuple[int, ...] = (4, 4, 4)
    deconv_bias: bool = False  # each deconv is followed by BN
    final_kernel: int = 1  # 1 or 3 (padded to keep the size)
    bn_eps: float = 1e-5


def deconv_layers(cin: int, cfg: SimplePoseConfig) -> nn.Sequential:
    """[ConvTranspose2d(stride 2), BN, ReLU] per entry. torch's ConvTranspose2d weight is
    (in, out, kh, kw) and its output size (in-1)*s - 2p + k + output_padding: MXNet
    Deconvolution's layout and formula (``adj`` = output_padding)."""
    if len(cfg.deconv_filters) != len(cfg.deconv_kernels):
        raise ValueError("one kernel size per deconv layer")
    layers: list[nn.Module] = []
    for cout, k in zip(cfg.deconv_filters, cfg.deconv_kernels):
        pad, out_pad = DECONV_PADDING[k]
        layers += [nn.ConvTranspose2d(cin, cout, k, 2, pad, out_pad, bias=cfg.deconv_bias),
                   nn.BatchNorm2d(cout, eps=cfg.bn_eps), nn.ReLU()]
        cin = cout
    return nn.Sequential(*layers)


class SimplePose(ResNet):
    """(B, 3, H, W) -> heatmaps (B, joints, H/4, W/4): stride 32 down, three 2x deconvs up."""

    def __init__(self, cfg: SimplePoseConfig):
        super().__init__(cfg.backbone)
        del self.fc, self.avgpool  # features only
        self.pose_cfg = cfg
        self.deconv_layers = deconv_layers(cfg.backbone.channels[-1], cfg)
        pad = 1 if cfg.final_kernel == 3 else 0
        self.final_layer = nn.Conv2d(cfg.deconv_filters[-1], cfg.num_joints, cfg.final_kernel, 1, pad)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
        return self.final_layer(self.deconv_layers(x))


def max_pred(heatmaps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """gluoncv's get_max_pred: per joint, the first maximum of the flattened heatmap.

    Returns coords (B, J, 2) float32 as (x, y) heatmap cells, zeroed where the peak is not > 0,
    and maxvals (B, J, 1). Integer index arithmetic: MXNet's float32 ``idx % W`` and
    ``floor(idx / W)`` are exact for any map below 2**23 cells."""
    b, j, _, w = heatmaps.shape
    flat = heatmaps.reshape(b, j, -1)
    idx = flat.argmax(dim=2, keepdim=True)  # first maximum on ties, as MXNet's argmax
    maxvals = flat.gather(2, idx)
    coords = torch.cat([idx % w, torch.div(idx, w, rounding_mode="floor")], dim=2).to(torch.float32)
    return coords * (maxvals > 0).to(torch.float32), maxvals


def heatmap_to_coord(heatmaps: torch.Tensor, boxes: Sequence[Sequence[float]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Peaks in image pixels: heatmap i was cut from ``boxes[i]`` = (x0, y0, x1, y1) (the box
    gluoncv's detector_to_simple_pose returns), so cell (x, y) maps linearly onto the box:
    x0 + (x1 - x0) * x / W. Returns (coords (B, J, 2), maxvals (B, J, 1))."""
    coords, maxvals = max_pred(heatmaps)
    h, w = heatmaps.shape[2:]
    box = torch.as_tensor(boxes, dtype=torch.float64).reshape(-1, 1, 4)
    if box.shape[0] != coords.shape[0]:
        raise ValueError(f"{coords.shape[0]} heatmaps but {box.shape[0]} boxes")
    size = box[..., 2:] - box[..., :2]
    out = box[..., :2] + size * (coords.double() / torch.tensor([w, h], dtype=torch.float64))
    return out.to(torch.float32), maxvals
