"""SSD (Liu et al.) with gluoncv's numerics, one module for every backbone (ResNet v1, MobileNet v1,
VGG16 atrous): anchors in pixels (centre form), box decoding in MXNet's operation order, per-class
score thresholding, and the shared DetectionNMS (MXNet box_nms) as the last stage."""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Union

import numpy as np
import torch
from torch import nn

from .mobilenet import MobileNet, MobileNetConfig
from .nms import DetectionNMS
from .resnet import ResNet, ResNetConfig
from .vgg_atrous import VGGAtrous, VGGAtrousConfig

BackboneConfig = Union[ResNetConfig, MobileNetConfig, VGGAtrousConfig]


@dataclass(frozen=True)
class ExtraSpec:
    """One extra layer: 1x1 transition conv, then a ``kernel`` conv (ReLU after each)."""

    trans: int  # transition width
    out: int
    kernel: int = 3
    stride: int = 2
    padding: int = 1


def expander_extras(filters: tuple[int, ...], reduce_ratio: float = 1.0, min_depth: int = 128) -> tuple[ExtraSpec, ...]:
    """gluoncv FeatureExpander's extra layers: a transition max(min_depth, round(f * reduce_ratio))
    wide, then a 3x3 stride-2 conv with ``f`` filters."""
    return tuple(ExtraSpec(max(min_depth, int(round(f * reduce_ratio))), f) for f in filters)


@dataclass(frozen=True)
class SSDConfig:
    backbone: BackboneConfig
    # backbone outputs that feed the heads: ResNet stages (1-based), MobileNet v1 blocks (0-based);
    # the VGG base has its two fixed taps (conv4_3 normalised, fc7): ()
    taps: tuple[int, ...]
    extras: tuple[ExtraSpec, ...]
    sizes: tuple[float, ...]  # anchor sizes, one more than the number of feature maps
    ratios: tuple[tuple[float, ...], ...]
    steps: tuple[float, ...]
    num_classes: int  # foreground classes
    # FeatureExpander: bias-free convs, each followed by a raw symbol BatchNorm (eps 1e-3); the VGG
    # extractor's extras: biased convs, no BN
    extra_bn: bool = True
    stds: tuple[float, float, float, float] = (0.1, 0.1, 0.2, 0.2)
    score_thresh: float = 0.01  # MultiPerClassDecoder
    nms_thresh: float = 0.45
    nms_valid_thresh: float = 0.01  # box_nms valid_thresh (a separate constant in gluoncv)
    nms_topk: int = 400
    post_nms: int = 100

    @property
    def extra_filters(self) -> tuple[int, ...]:
        return tuple(e.out for e in self.extras)


@functools.lru_cache(maxsize=64)
def anchor_grid(h: int, w: int, sizes: tuple[float, float], ratios: tuple[float, ...],
                step: float, offsets: tuple[float, float] = (0.5, 0.5)) -> np.ndarray:
    """(h*w*A, 4) anchors as (cx, cy, w, h) in input pixels; row-major over cells, then anchors:
    size_min, sqrt(size_min*size_max), then size_min at each further ratio. float64 then float32,
    as gluoncv computes them in numpy and stores them as a float32 constant."""
    s0, s1 = sizes[0], float(np.sqrt(sizes[0] * sizes[1]))
    cy = (np.arange(h, dtype=np.float64) + offsets[0]) * step
    cx = (np.arange(w, dtype=np.float64) + offsets[1]) * step
    wh = [(s0, s0), (s1, s1)] + [(s0 * np.sqrt(r), s0 / np.sqrt(r)) for r in ratios[1:]]
    grid = np.zeros((h, w, len(wh), 4), dtype=np.float64)
    grid[..., 0] = cx[None, :, None]
    grid[..., 1] = cy[:, None, None]
    grid[..., 2:] = np.asarray(wh)
    out = grid.reshape(-1, 4).astype(np.float32)
    out.setflags(write=False)  # cached: callers must copy, never edit in place
    return out


class AnchorGenerator(nn.Module):
    def __init__(self, sizes: tuple[float, float], ratios: tuple[float, ...], step: float):
        super().__init__()
        self.sizes, self.ratios, self.step = sizes, tuple(ratios), step

    @property
    def num_anchors(self) -> int:
        return len(self.ratios) + 1

    def forward(self, feat: torch.Tensor) -> torch.Tensor:
        a = anchor_grid(feat.shape[2], feat.shape[3], self.sizes, self.ratios, self.step)
        return torch.tensor(a, device=feat.device).unsqueeze(0)  # a copy: the grid is cached


class BoxDecoder(nn.Module):
    """Centre-form anchors + normalised offsets -> corner boxes (MXNet box_decode, no clip)."""

    def __init__(self, stds: tuple[float, float, float, float]):
        super().__init__()
        self.stds = stds

    def forward(self, rel: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
        ax, ay, aw, ah = anchors.unbind(-1)
        px, py, pw, ph = rel.unbind(-1)
        ox = px * self.stds[0] * aw + ax
        oy = py * self.stds[1] * ah + ay
        ow = torch.exp(pw * self.stds[2]) * aw * 0.5
        oh = torch.exp(ph * self.stds[3]) * ah * 0.5
        return torch.stack([ox - ow, oy - oh, ox + ow, oy + oh], dim=-1)


class PerClassDecoder(nn.Module):
    """Softmax probabilities -> (class ids, scores) per foreground class; below threshold: id -1,
    score 0 (gluoncv MultiPerClassDecoder)."""

    def __init__(self, thresh: float):
        super().__init__()
        self.thresh = thresh

    def forward(self, probs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        scores = probs[..., 1:]
        ids = torch.arange(scores.shape[-1], dtype=scores.dtype).expand_as(scores)
        keep = scores > self.thresh
        return torch.where(keep, ids, -torch.ones_like(ids)), torch.where(keep, scores,
                                                                          torch.zeros_like(scores))


class ExtraBlock(nn.Module):
    """1x1 transition conv [+ BN], ReLU, then a kxk conv [+ BN], ReLU. With BN the convs have no
    bias and the BNs use MXNet's symbol default eps 1e-3; without, the convs carry a bias."""

    def __init__(self, cin: int, spec: ExtraSpec, bn: bool):
        super().__init__()
        self.trans_conv = nn.Conv2d(cin, spec.trans, 1, bias=not bn)
        self.trans_bn = nn.BatchNorm2d(spec.trans, eps=1e-3) if bn else nn.Identity()
        self.conv = nn.Conv2d(spec.trans, spec.out, spec.kernel, spec.stride, spec.padding, bias=not bn)
        self.bn = nn.BatchNorm2d(spec.out, eps=1e-3) if bn else nn.Identity()
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn(self.conv(self.relu(self.trans_bn(self.trans_conv(x))))))


class ResNetTaps(ResNet):
    """The ResNet's stem and stages up to the last tap (no pool, no classifier); returns the
    outputs of the tapped stages (1-based)."""

    def __init__(self, cfg: ResNetConfig, taps: tuple[int, ...]):
        super().__init__(cfg)
        del self.fc, self.avgpool
        self.taps = taps

    @property
    def out_channels(self) -> tuple[int, ...]:
        return tuple(self.cfg.channels[s] for s in self.taps)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats, x = [], self.stem(x)
        for i, stage in enumerate(self.stages[: self.taps[-1]], start=1):
            x = stage(x)
            if i in self.taps:
                feats.append(x)
        return feats


class MobileNetTaps(MobileNet):
    """MobileNet v1's stem and blocks up to the last tap (no pool, no classifier); returns the
    outputs of the tapped blocks (0-based; each ends in its pointwise ReLU)."""

    def __init__(self, cfg: MobileNetConfig, taps: tuple[int, ...]):
        if cfg.version != 1:
            raise ValueError("SSD taps are defined for MobileNet v1 only")
        super().__init__(cfg)
        del self.fc, self.pool
        self.taps = taps

    @property
    def out_channels(self) -> tuple[int, ...]:
        return tuple(self.blocks[t].pw.conv.out_channels for t in self.taps)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats, x = [], self.stem(x)
        for i, block in enumerate(self.blocks[: self.taps[-1] + 1]):
            x = block(x)
            if i in self.taps:
                feats.append(x)
        return feats


def build_backbone(cfg: SSDConfig) -> nn.Module:
    """The feature extractor: a module returning its tapped feature maps, with ``out_channels``."""
    b = cfg.backbone
    if isinstance(b, ResNetConfig):
        return ResNetTaps(b, cfg.taps)
    if isinstance(b, MobileNetConfig):
        return MobileNetTaps(b, cfg.taps)
    if isinstance(b, VGGAtrousConfig):
        if cfg.taps:
            raise ValueError("the VGG atrous base has fixed taps; leave SSDConfig.taps empty")
        return VGGAtrous(b)
    raise TypeError(f"no SSD backbone for {type(b).__name__}")


class SSD(nn.Module):
    """Eval-mode SSD returning gluoncv's ``(ids, scores, bboxes)``: (B, post_nms, 1|1|4), -1 padded.

    ``nms`` picks the post-processing variant of the DetectionNMS stage ("mxnet": exact box_nms)."""

    def __init__(self, cfg: SSDConfig, nms: str = "mxnet"):
        super().__init__()
        self.cfg = cfg
        self.backbone = build_backbone(cfg)
        widths = list(self.backbone.out_channels)
        extras = []
        for spec in cfg.extras:
            extras.append(ExtraBlock(widths[-1], spec, cfg.extra_bn))
            widths.append(spec.out)
        self.extras = nn.ModuleList(extras)
        if not len(widths) == len(cfg.steps) == len(cfg.ratios) == len(cfg.sizes) - 1:
            raise ValueError(f"{len(widths)} feature maps, {len(cfg.steps)} steps, {len(cfg.ratios)} ratio "
                             f"sets and {len(cfg.sizes)} sizes do not agree")
        sizes = list(zip(cfg.sizes[:-1], cfg.sizes[1:]))
        self.anchor_generators = nn.ModuleList(
            AnchorGenerator(s, r, st) for s, r, st in zip(sizes, cfg.ratios, cfg.steps))
        k = [g.num_anchors for g in self.anchor_generators]
        self.class_predictors = nn.ModuleList(
            nn.Conv2d(c, a * (cfg.num_classes + 1), 3, 1, 1) for c, a in zip(widths, k))
        self.box_predictors = nn.ModuleList(nn.Conv2d(c, a * 4, 3, 1, 1) for c, a in zip(widths, k))
        self.box_decoder = BoxDecoder(cfg.stds)
        self.cls_decoder = PerClassDecoder(cfg.score_thresh)
        self.nms = DetectionNMS(cfg.nms_thresh, cfg.nms_valid_thresh, cfg.nms_topk, cfg.post_nms, variant=nms)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = list(self.backbone(x))
        for block in self.extras:
            feats.append(block(feats[-1]))
        return feats

    def head(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Raw class logits (B, N, C+1), box offsets (B, N, 4) and anchors (1, N, 4)."""
        feats = self.features(x)
        b, c = x.shape[0], self.cfg.num_classes + 1
        cls = torch.cat([p(f).permute(0, 2, 3, 1).reshape(b, -1)
                         for f, p in zip(feats, self.class_predictors)], 1).reshape(b, -1, c)
        box = torch.cat([p(f).permute(0, 2, 3, 1).reshape(b, -1)
                         for f, p in zip(feats, self.box_predictors)], 1).reshape(b, -1, 4)
        anchors = torch.cat([g(f) for f, g in zip(feats, self.anchor_generators)], 1)
        return cls, box, anchors

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        cls, box, anchors = self.head(x)
        bboxes = self.box_decoder(box, anchors)
        ids, scores = self.cls_decoder(torch.softmax(cls, dim=-1))
        # class-major rows (id, score, box), as gluoncv concatenates them before box_nms
        rows = torch.cat([torch.cat([ids[..., i:i + 1], scores[..., i:i + 1], bboxes], -1)
                          for i in range(ids.shape[-1])], 1)
        return self.nms(rows)
