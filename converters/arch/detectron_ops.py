"""Detectron's legacy box numerics in torch, each behind a switch (``plus_one``/``legacy``) so the
same torchvision model runs either Detectron's conventions (default) or torchvision's.

Why own code: torchvision's BoxCoder, clip, NMS IoU and LevelMapper measure a box as x2 - x1;
Detectron measures x2 - x1 + 1 everywhere (pixel-index boxes) and clips to [0, W - 1]; its anchor
generator rounds base widths (np.round) and centres cells at (stride - 1) / 2. Where torchvision's
op is Detectron's (roi_align with aligned=False, bicubic heatmap resize, mask pasting) it is used."""
from __future__ import annotations

import math

import torch
import torchvision
from torchvision.models.detection._utils import BoxCoder

BBOX_XFORM_CLIP = math.log(1000.0 / 16.0)  # Detectron's cfg.BBOX_XFORM_CLIP (= torchvision's)


class DetectronBoxCoder(BoxCoder):
    """torchvision's BoxCoder; ``plus_one`` decodes as Detectron's bbox_transform: widths x2 - x1 + 1,
    centres x1 + 0.5 w, predicted x2 = cx + 0.5 w - 1."""

    def __init__(self, weights: tuple[float, float, float, float], plus_one: bool = True):
        super().__init__(weights, bbox_xform_clip=BBOX_XFORM_CLIP)
        self.plus_one = plus_one

    def decode_single(self, rel_codes: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        if not self.plus_one:
            return super().decode_single(rel_codes, boxes)
        boxes = boxes.to(rel_codes.dtype)
        w = boxes[:, 2] - boxes[:, 0] + 1.0
        h = boxes[:, 3] - boxes[:, 1] + 1.0
        cx, cy = boxes[:, 0] + 0.5 * w, boxes[:, 1] + 0.5 * h
        wx, wy, ww, wh = self.weights
        dx, dy = rel_codes[:, 0::4] / wx, rel_codes[:, 1::4] / wy
        dw = torch.clamp(rel_codes[:, 2::4] / ww, max=self.bbox_xform_clip)
        dh = torch.clamp(rel_codes[:, 3::4] / wh, max=self.bbox_xform_clip)
        px, py = dx * w[:, None] + cx[:, None], dy * h[:, None] + cy[:, None]
        pw, ph = torch.exp(dw) * w[:, None], torch.exp(dh) * h[:, None]
        out = torch.stack([px - 0.5 * pw, py - 0.5 * ph, px + 0.5 * pw - 1.0, py + 0.5 * ph - 1.0], dim=2)
        return out.flatten(1)


def clip_boxes(boxes: torch.Tensor, hw: tuple[int, int], plus_one: bool) -> torch.Tensor:
    """Clip to [0, W - 1] x [0, H - 1] (Detectron's clip_boxes / clip_tiled_boxes) or [0, W] (torchvision)."""
    h, w = hw
    off = 1.0 if plus_one else 0.0
    x = boxes[..., 0::2].clamp(min=0, max=w - off)
    y = boxes[..., 1::2].clamp(min=0, max=h - off)
    return torch.stack((x, y), dim=-1).reshape(boxes.shape)


def batched_nms(boxes: torch.Tensor, scores: torch.Tensor, idxs: torch.Tensor, thresh: float,
                plus_one: bool) -> torch.Tensor:
    """torchvision's batched_nms; with ``plus_one`` the IoU is Detectron's (w = x2 - x1 + 1):
    growing x2, y2 by 1 gives exactly those intersections and areas."""
    if plus_one:
        boxes = boxes + torch.tensor([0.0, 0.0, 1.0, 1.0], dtype=boxes.dtype, device=boxes.device)
    return torchvision.ops.batched_nms(boxes, scores, idxs, thresh)


def cell_anchors(stride: int, cells: list[tuple[float, float]], legacy: bool) -> torch.Tensor:
    """One level's cell anchors for (size, aspect ratio = h / w) pairs, in the given order.
    ``legacy``: Detectron's generate_anchors: base box [0, 0, stride - 1, stride - 1], for a ratio
    ws = round(sqrt(stride^2 / ratio)), hs = round(ws * ratio) (numpy rounding: half to even),
    scaled by size / stride, box = centre -+ 0.5 (w - 1) around (stride - 1) / 2. Else
    torchvision's AnchorGenerator rule: round(-+w / 2), w = size / sqrt(ratio), centred at 0."""
    out = []
    for size, ratio in cells:
        if legacy:
            ws = float(torch.round(torch.tensor(math.sqrt(stride * stride / ratio), dtype=torch.float64)))
            hs = float(torch.round(torch.tensor(ws * ratio, dtype=torch.float64)))
            ws, hs = ws * size / stride, hs * size / stride
            c = 0.5 * (stride - 1)
            out.append([c - 0.5 * (ws - 1), c - 0.5 * (hs - 1), c + 0.5 * (ws - 1), c + 0.5 * (hs - 1)])
        else:
            hr = math.sqrt(ratio)
            w, h = size / hr, size * hr
            out.append([round(-w / 2), round(-h / 2), round(w / 2), round(h / 2)])
    return torch.tensor(out, dtype=torch.float32)


def fpn_levels(boxes: torch.Tensor, k_min: int, k_max: int, plus_one: bool) -> torch.Tensor:
    """FPN level per RoI: floor(4 + log2(sqrt(area) / 224 + 1e-6)) clamped, Detectron's
    map_rois_to_fpn_levels (area with +1 widths); torchvision's LevelMapper adds eps outside the
    log2 and uses x2 - x1."""
    off = 1.0 if plus_one else 0.0
    area = (boxes[:, 2] - boxes[:, 0] + off) * (boxes[:, 3] - boxes[:, 1] + off)
    s = torch.sqrt(area)
    if plus_one:
        lvl = torch.floor(4 + torch.log2(s / 224 + 1e-6))
    else:
        lvl = torch.floor(4 + torch.log2(s / 224) + 1e-6)
    return lvl.clamp(k_min, k_max).to(torch.int64)


def bilinear_upsample_weight(channels: int, factor: int) -> torch.Tensor:
    """Detectron's BilinearInterpolation filter as its checkpoints store it (``kps_score_w``): a
    ConvTranspose weight [C, C, 2f, 2f] (stride f, pad f // 2), channel c only to c, taps
    1 - |i - (f - 0.5)| / f."""
    k = 2 * factor
    t = 1 - torch.abs(torch.arange(k, dtype=torch.float64) - (factor - 0.5)) / factor
    out = torch.zeros(channels, channels, k, k, dtype=torch.float32)
    out[range(channels), range(channels)] = (t[:, None] * t[None, :]).to(torch.float32)
    return out
