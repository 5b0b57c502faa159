"""Region proposal network (Ren et al.) with gluoncv's eval numerics: Detectron-style anchors on a
stride grid, MXNet ``box_decode`` on corner anchors, proposals clipped to the image, small ones
dropped, then MXNet ``box_nms`` over every anchor (class-agnostic) and a fixed-length cut."""
from __future__ import annotations

import functools

import numpy as np
import torch
from torch import nn

from .nms import box_nms


def base_anchors(stride: int, sizes: tuple[float, ...], ratios: tuple[float, ...]) -> np.ndarray:
    """(len(ratios) * len(sizes), 4) corner anchors around the first cell, ratio-major: the
    ``stride``-wide window (0, 0, stride-1, stride-1) is reshaped to each ratio (widths rounded,
    area kept), then scaled by ``size / stride``; widths and heights count pixels (+1)."""
    def window(w, h, cx, cy):  # corners from "pixel-count" widths around a centre
        return np.stack([cx - 0.5 * (w - 1), cy - 0.5 * (h - 1), cx + 0.5 * (w - 1), cy + 0.5 * (h - 1)], -1)

    c = 0.5 * (stride - 1)
    area = float(stride * stride)
    out = []
    for r in ratios:
        w = np.round(np.sqrt(area / r))  # numpy rounds half to even, as gluoncv's numpy does
        h = np.round(w * r)
        for s in sizes:
            k = s / stride
            out.append(window(w * k, h * k, c, c))
    return np.asarray(out, dtype=np.float64)


@functools.lru_cache(maxsize=32)
def anchor_grid(h: int, w: int, stride: int, sizes: tuple[float, ...], ratios: tuple[float, ...]) -> np.ndarray:
    """(h*w*A, 4) float32 corner anchors: the base anchors shifted by (x, y) * stride for every cell,
    row-major over cells, then anchors; computed in float64 and stored as float32, as gluoncv does."""
    base = base_anchors(stride, sizes, ratios)
    ys, xs = np.meshgrid(np.arange(h) * stride, np.arange(w) * stride, indexing="ij")
    shift = np.stack([xs, ys, xs, ys], -1).reshape(-1, 1, 4)
    out = (shift + base[None]).reshape(-1, 4).astype(np.float32)
    out.setflags(write=False)  # cached: callers copy
    return out


class RPNAnchorGenerator(nn.Module):
    def __init__(self, stride: int, sizes: tuple[float, ...], ratios: tuple[float, ...]):
        super().__init__()
        self.stride, self.sizes, self.ratios = stride, tuple(sizes), tuple(ratios)

    @property
    def num_anchors(self) -> int:
        return len(self.sizes) * len(self.ratios)

    def forward(self, feat: torch.Tensor) -> torch.Tensor:
        a = anchor_grid(feat.shape[2], feat.shape[3], self.stride, self.sizes, self.ratios)
        return torch.tensor(a, device=feat.device).to(feat.dtype).unsqueeze(0)


class CornerBoxDecoder(nn.Module):
    """MXNet ``contrib.box_decode(format='corner')`` in its operation order: corner anchors to
    centre form (widths without +1), offsets times ``stds``, log-size offsets capped at ``clip``
    when clip > 0, corner boxes out. rel (..., N, 4) with anchors (1, N, 4) broadcast."""

    def __init__(self, stds: tuple[float, float, float, float], clip: float | None):
        super().__init__()
        self.stds = tuple(stds)
        self.clip = clip if clip is not None and clip > 0 else None  # gluoncv: None -> -1 -> off

    def forward(self, rel: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
        x1, y1, x2, y2 = anchors.unbind(-1)
        aw, ah = x2 - x1, y2 - y1
        ax, ay = x1 + aw * 0.5, y1 + ah * 0.5
        px, py, pw, ph = rel.unbind(-1)
        s0, s1, s2, s3 = self.stds
        ox = px * s0 * aw + ax
        oy = py * s1 * ah + ay
        dw, dh = pw * s2, ph * s3
        if self.clip is not None:
            dw, dh = dw.clamp(max=self.clip), dh.clamp(max=self.clip)
        ow = torch.exp(dw) * aw * 0.5
        oh = torch.exp(dh) * ah * 0.5
        return torch.stack([ox - ow, oy - oh, ox + ow, oy + oh], dim=-1)


class RPNProposal(nn.Module):
    """Anchors + scores + offsets -> (B, A, 5) rows [score, x1, y1, x2, y2] before NMS: decoded
    (stds 1), clipped to [0, W] x [0, H] (the image size itself, not W-1), and rows whose width or
    height + 1 is below ``min_size`` set to all -1 so NMS drops them."""

    def __init__(self, clip: float | None, min_size: float):
        super().__init__()
        self.box_decoder = CornerBoxDecoder((1.0, 1.0, 1.0, 1.0), clip)
        self.min_size = min_size

    def forward(self, anchors: torch.Tensor, scores: torch.Tensor, offsets: torch.Tensor,
                image_hw: tuple[int, int]) -> torch.Tensor:
        roi = self.box_decoder(offsets, anchors).clamp(min=0)
        h, w = image_hw
        roi = torch.minimum(roi, roi.new_tensor([w, h, w, h]))
        x1, y1, x2, y2 = roi.unbind(-1)
        invalid = ((x2 - x1 + 1.0) < self.min_size) | ((y2 - y1 + 1.0) < self.min_size)
        rows = torch.cat([scores, roi], -1)
        return torch.where(invalid[..., None], torch.full_like(rows, -1), rows)


class RPN(nn.Module):
    """3x3 conv + ReLU, 1x1 objectness (sigmoid) and 1x1 box offsets per anchor; eval-mode
    proposals: box_nms(IoU > nms_thresh, class-agnostic, top ``pre_nms`` before suppression),
    then the first ``post_nms`` rows, -1 padded. Returns (scores (B, post, 1), boxes (B, post, 4))."""

    def __init__(self, cin: int, channels: int, stride: int, sizes: tuple[float, ...],
                 ratios: tuple[float, ...], clip: float | None, nms_thresh: float, pre_nms: int,
                 post_nms: int, min_size: float):
        super().__init__()
        self.anchor_generator = RPNAnchorGenerator(stride, sizes, ratios)
        a = self.anchor_generator.num_anchors
        self.conv = nn.Conv2d(cin, channels, 3, 1, 1)
        self.relu = nn.ReLU()
        self.score = nn.Conv2d(channels, a, 1)
        self.loc = nn.Conv2d(channels, a * 4, 1)
        self.region_proposer = RPNProposal(clip, min_size)
        # gluoncv clamps both counts to >= 1 and post to <= pre
        self.nms_thresh, self.pre_nms = nms_thresh, max(1, pre_nms)
        self.post_nms = min(max(1, post_nms), self.pre_nms)

    def forward(self, feat: torch.Tensor, image_hw: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        b = feat.shape[0]
        anchors = self.anchor_generator(feat)
        x = self.relu(self.conv(feat))
        scores = torch.sigmoid(self.score(x).permute(0, 2, 3, 1).reshape(b, -1, 1))
        offsets = self.loc(x).permute(0, 2, 3, 1).reshape(b, -1, 4)
        return self.select(self.region_proposer(anchors, scores, offsets, image_hw))

    def select(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Pre-NMS rows (B, A, 5) -> the kept proposals' scores (B, post, 1) and boxes (B, post, 4)."""
        kept = box_nms(rows, self.nms_thresh, valid_thresh=0.0, topk=self.pre_nms, coord_start=1,
                       score_index=0, id_index=-1, force_suppress=True)[:, : self.post_nms]
        return kept[..., :1], kept[..., 1:]
