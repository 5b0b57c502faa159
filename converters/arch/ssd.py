"""SSD (Liu et al.) on a ResNet backbone, with gluoncv's numerics: anchors in pixels (centre form),
box decoding in MXNet's operation order, per-class score thresholding and MXNet box_nms."""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .nms import box_nms
from .resnet import ResNet, ResNetConfig


@dataclass(frozen=True)
class SSDConfig:
    backbone: ResNetConfig
    feature_stages: tuple[int, ...]  # backbone stages whose outputs feed the heads (1-based)
    extra_filters: tuple[int, ...]  # one extra stride-2 block per entry
    sizes: tuple[float, ...]  # anchor sizes, one more than the number of feature maps
    ratios: tuple[tuple[float, ...], ...]
    steps: tuple[float, ...]
    num_classes: int  # foreground classes
    min_depth: int = 128  # narrowest 1x1 transition of the extra blocks
    reduce_ratio: float = 1.0  # gluoncv SSD default: transitions as wide as the block output
    stds: tuple[float, float, float, float] = (0.1, 0.1, 0.2, 0.2)
    score_thresh: float = 0.01
    nms_thresh: float = 0.45
    nms_topk: int = 400
    post_nms: int = 100


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
    """1x1 transition conv, BN, ReLU, then 3x3 stride-2 conv, BN, ReLU."""

    def __init__(self, cin: int, trans: int, cout: int):
        super().__init__()
        self.trans_conv = nn.Conv2d(cin, trans, 1, bias=False)
        self.trans_bn = nn.BatchNorm2d(trans, eps=1e-3)
        self.conv = nn.Conv2d(trans, cout, 3, 2, 1, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=1e-3)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn(self.conv(self.relu(self.trans_bn(self.trans_conv(x))))))


class SSD(nn.Module):
    """Eval-mode SSD returning gluoncv's ``(ids, scores, bboxes)``: (B, post_nms, 1|1|4), -1 padded.

    ``nms`` selects post-processing: "mxnet" (exact box_nms, default)."""

    def __init__(self, cfg: SSDConfig, nms: str = "mxnet"):
        super().__init__()
        if nms != "mxnet":
            raise ValueError(f"unknown nms variant {nms!r} (available: 'mxnet')")
        self.cfg = cfg
        self.backbone = ResNet(cfg.backbone)
        del self.backbone.fc, self.backbone.avgpool  # the detector uses the stages only
        cin = cfg.backbone.channels[cfg.feature_stages[-1]]
        extras = []
        for f in cfg.extra_filters:
            extras.append(ExtraBlock(cin, max(cfg.min_depth, int(round(f * cfg.reduce_ratio))), f))
            cin = f
        self.extras = nn.ModuleList(extras)
        widths = [cfg.backbone.channels[s] for s in cfg.feature_stages] + list(cfg.extra_filters)
        sizes = list(zip(cfg.sizes[:-1], cfg.sizes[1:]))
        self.anchor_generators = nn.ModuleList(
            AnchorGenerator(s, r, st) for s, r, st in zip(sizes, cfg.ratios, cfg.steps))
        k = [g.num_anchors for g in self.anchor_generators]
        self.class_predictors = nn.ModuleList(
            nn.Conv2d(c, a * (cfg.num_classes + 1), 3, 1, 1) for c, a in zip(widths, k))
        self.box_predictors = nn.ModuleList(nn.Conv2d(c, a * 4, 3, 1, 1) for c, a in zip(widths, k))
        self.box_decoder = BoxDecoder(cfg.stds)
        self.cls_decoder = PerClassDecoder(cfg.score_thresh)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats, x = [], self.backbone.stem(x)
        for i, stage in enumerate(self.backbone.stages, start=1):
            x = stage(x)
            if i in self.cfg.feature_stages:
                feats.append(x)
            if i == self.cfg.feature_stages[-1]:
                break
        for block in self.extras:
            x = block(x)
            feats.append(x)
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
        n_fg = ids.shape[-1]
        # class-major rows (id, score, box), as gluoncv concatenates them before box_nms
        rows = torch.cat([torch.cat([ids[..., i:i + 1], scores[..., i:i + 1], bboxes], -1)
                          for i in range(n_fg)], 1)
        cfg = self.cfg
        if 0 < cfg.nms_thresh < 1:
            rows = box_nms(rows, cfg.nms_thresh, cfg.score_thresh, cfg.nms_topk, coord_start=2,
                           score_index=1, id_index=0, force_suppress=False)
            if cfg.post_nms > 0:
                rows = rows[:, : cfg.post_nms]
        return rows[..., 0:1], rows[..., 1:2], rows[..., 2:6]
