"""Paddle's R-CNN proposal ops in torch, each in both conventions: PaddleDetection 2.6 dygraph
("ppdet": no +1 widths) and PaddleX 1.x static ("paddlex": +1 widths, Detectron's legacy anchors).

Why own code at all (torchvision has anchors, proposals and a level mapper): torchvision's
AnchorGenerator rounds its cell anchors and centres them at 0, neither Paddle convention; its RPN
sorts per level and runs batched NMS with its own tie order and no +1 IoU; its LevelMapper has no +1
area. Where torchvision's op *is* Paddle's (nms on pre-ordered boxes, roi_align) it is used."""
from __future__ import annotations

import math

import torch
import torchvision

BBOX_CLIP = math.log(1000.0 / 16.0)  # Paddle's kBBoxClipDefault: dw, dh clamp before exp


def ppdet_anchors(sizes, ratios, stride: float, height: int, width: int) -> torch.Tensor:
    """ppdet AnchorGenerator (offset 0) for one level: [H * W * A, 4], position-major, then size-major,
    ratio-minor. Cell anchors are +-w/2, +-h/2 with w = sqrt(size^2 / ratio), h = ratio * w,
    unrounded, computed in Python floats and stored as float32, as ppdet does."""
    cells = []
    for size in sizes:
        for r in ratios:
            w = math.sqrt(size ** 2.0 / r)
            h = r * w
            cells.append([-w / 2.0, -h / 2.0, w / 2.0, h / 2.0])
    cell = torch.tensor(cells, dtype=torch.float32)
    sx = torch.arange(0, width * stride, stride, dtype=torch.float32)[:width]
    sy = torch.arange(0, height * stride, stride, dtype=torch.float32)[:height]
    yy, xx = torch.meshgrid(sy, sx, indexing="ij")
    shifts = torch.stack([xx.reshape(-1), yy.reshape(-1)] * 2, dim=1)
    return (shifts[:, None, :] + cell[None]).reshape(-1, 4)


def static_anchors(sizes, ratios, stride: float, height: int, width: int,
                   offset: float = 0.5) -> torch.Tensor:
    """The static ``anchor_generator`` op (Detectron's legacy rule): centre idx * stride + offset *
    (stride - 1); base_w = round(sqrt(stride^2 / ratio)), base_h = round(base_w * ratio), scaled by
    size / stride; box = centre -+ (w - 1) / 2. Ratio-major, size-minor."""
    cells = []
    for r in ratios:
        base_w = math.floor(math.sqrt(stride * stride / r) + 0.5)  # C++ round: halves away from 0
        base_h = math.floor(base_w * r + 0.5)  # (Python's round(22.5) would give 22)
        for size in sizes:
            w, h = size / stride * base_w, size / stride * base_h
            cells.append([-0.5 * (w - 1), -0.5 * (h - 1), 0.5 * (w - 1), 0.5 * (h - 1)])
    cell = torch.tensor(cells, dtype=torch.float32)
    sx = torch.arange(width, dtype=torch.float32) * stride + offset * (stride - 1)
    sy = torch.arange(height, dtype=torch.float32) * stride + offset * (stride - 1)
    yy, xx = torch.meshgrid(sy, sx, indexing="ij")
    shifts = torch.stack([xx.reshape(-1), yy.reshape(-1)] * 2, dim=1)
    return (shifts[:, None, :] + cell[None]).reshape(-1, 4)


def ordered_nms(boxes: torch.Tensor, threshold: float, pixel_offset: bool) -> torch.Tensor:
    """Greedy NMS over ``boxes`` already in processing order (keep if IoU <= threshold against all
    kept): torchvision's nms fed strictly decreasing rank scores, so it keeps our order. The +1 IoU
    of ``pixel_offset`` is torchvision's IoU on boxes grown by 1 at x2/y2 (same areas and
    intersections, except for boxes less than 1 px apart, which Paddle counts as disjoint)."""
    if boxes.numel() == 0:
        return torch.zeros(0, dtype=torch.int64)
    b = boxes.float()
    if pixel_offset:
        b = b + torch.tensor([0.0, 0.0, 1.0, 1.0])
    rank = torch.arange(b.shape[0], 0, -1, dtype=torch.float32)
    return torchvision.ops.nms(b, rank, threshold)


def decode_proposals(anchors: torch.Tensor, deltas: torch.Tensor, pixel_offset: bool) -> torch.Tensor:
    """generate_proposals' BoxCoder (variances 1): dw, dh clamped at log(1000/16); +1 widths and
    x2 - 1 when ``pixel_offset``."""
    off = 1.0 if pixel_offset else 0.0
    w = anchors[:, 2] - anchors[:, 0] + off
    h = anchors[:, 3] - anchors[:, 1] + off
    cx, cy = anchors[:, 0] + 0.5 * w, anchors[:, 1] + 0.5 * h
    px, py = deltas[:, 0] * w + cx, deltas[:, 1] * h + cy
    pw = torch.exp(torch.clamp(deltas[:, 2], max=BBOX_CLIP)) * w
    ph = torch.exp(torch.clamp(deltas[:, 3], max=BBOX_CLIP)) * h
    return torch.stack([px - pw / 2, py - ph / 2, px + pw / 2 - off, py + ph / 2 - off], dim=1)


def generate_proposals(scores: torch.Tensor, deltas: torch.Tensor, anchors: torch.Tensor,
                       im_hw: tuple[int, int], pre_nms_top_n: int, post_nms_top_n: int,
                       nms_thresh: float, min_size: float, pixel_offset: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """paddle.vision.ops.generate_proposals for one image and one level: ``scores`` [A, H, W],
    ``deltas`` [4A, H, W], ``anchors`` [H * W * A, 4]. Top ``pre_nms_top_n`` by score, decode, clip
    to the image ([0, W - 1] with pixel_offset, else [0, W]), drop boxes under max(min_size, 1)
    (and, with pixel_offset, centres outside the image), NMS, keep ``post_nms_top_n``. No box
    left: one zero box with score 0, as the kernel returns. Returns (rois [R, 4], scores [R])."""
    s = scores.permute(1, 2, 0).reshape(-1)
    d = deltas.permute(1, 2, 0).reshape(-1, 4)
    # descending; the kernel's nth_element/sort leaves ties in an unspecified order: lower index first
    order = torch.sort(s, descending=True, stable=True).indices
    if 0 < pre_nms_top_n < s.numel():
        order = order[:pre_nms_top_n]
    s, boxes = s[order], decode_proposals(anchors[order].to(d.dtype), d[order], pixel_offset)
    off = 1.0 if pixel_offset else 0.0
    h, w = im_hw
    boxes = torch.stack([boxes[:, 0].clamp(0, w - off), boxes[:, 1].clamp(0, h - off),
                         boxes[:, 2].clamp(0, w - off), boxes[:, 3].clamp(0, h - off)], dim=1)
    ws, hs = boxes[:, 2] - boxes[:, 0] + off, boxes[:, 3] - boxes[:, 1] + off
    keep = (ws >= max(min_size, 1.0)) & (hs >= max(min_size, 1.0))
    if pixel_offset:
        keep &= (boxes[:, 0] + ws / 2 <= w) & (boxes[:, 1] + hs / 2 <= h)
    boxes, s = boxes[keep], s[keep]
    if boxes.shape[0] == 0:
        return boxes.new_zeros((1, 4)), s.new_zeros((1,))
    kept = ordered_nms(boxes, nms_thresh, pixel_offset)
    if 0 < post_nms_top_n < kept.numel():
        kept = kept[:post_nms_top_n]
    return boxes[kept], s[kept]


def collect(rois: list[torch.Tensor], scores: list[torch.Tensor], top_n: int,
            always_sort: bool) -> torch.Tensor:
    """Proposals of all levels -> the image's RoIs. ppdet (RPNHead._gen_proposal): concatenated in
    level order, and only when there are more than ``top_n`` the top ``top_n`` by paddle.topk (score
    order). Static collect_fpn_proposals (``always_sort``): always sorted by score, top ``top_n``."""
    r, s = torch.cat(rois), torch.cat(scores)
    if always_sort or r.shape[0] > top_n:
        order = torch.sort(s, descending=True, stable=True).indices[:top_n]
        r = r[order]
    return r


def fpn_levels(rois: torch.Tensor, min_level: int, max_level: int, pixel_offset: bool,
               eps: float = 1e-6, refer_level: int = 4, refer_scale: int = 224) -> torch.Tensor:
    """distribute_fpn_proposals' level per RoI, computed in float32 as the kernel does:
    floor(log2(sqrt(area) / 224 + eps) + 4) clamped to the levels; area 0 for inverted boxes, +1
    widths with ``pixel_offset``. The Paddle 1.x kernel (static graphs) has eps = 0."""
    b = rois.float()
    off = 1.0 if pixel_offset else 0.0
    w, h = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
    area = torch.where((w < 0) | (h < 0), torch.zeros_like(w), (w + off) * (h + off))
    scale = torch.sqrt(area)
    lvl = torch.floor(torch.log2(scale / refer_scale + eps) + refer_level)
    lvl = torch.nan_to_num(lvl, neginf=float(min_level))
    return lvl.clamp(min_level, max_level).to(torch.int64)


def multilevel_roi_align(feats: list[torch.Tensor], rois: torch.Tensor, levels: torch.Tensor,
                         min_level: int, output_size: int, sampling_ratio: int, aligned: bool) -> torch.Tensor:
    """RoIAlign of each RoI on its level's map (one image), back in the RoIs' order (restore_index).
    torchvision's roi_align is Paddle's kernel (same bilinear, border and adaptive-grid rules;
    sampling_ratio <= 0 is adaptive in both)."""
    out = rois.new_zeros((rois.shape[0], feats[0].shape[1], output_size, output_size))
    for k, feat in enumerate(feats):
        pick = torch.nonzero(levels == min_level + k).reshape(-1)
        if pick.numel() == 0:
            continue
        boxes = torch.cat([rois.new_zeros((pick.numel(), 1)), rois[pick]], dim=1)
        out[pick] = torchvision.ops.roi_align(feat, boxes.to(feat.dtype), output_size,
                                              spatial_scale=1.0 / 2 ** (min_level + k),
                                              sampling_ratio=sampling_ratio, aligned=aligned)
    return out
