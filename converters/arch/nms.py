"""Non-maximum suppression with MXNet ``contrib.box_nms`` semantics (corner boxes).

Own code, not torchvision's nms/batched_nms: MXNet keeps only ``score > valid_thresh`` rows whose id is not
``background_id``, sorts once
across classes with a stable descending sort (ties: lower index first), cuts to ``topk`` *before*
suppression, suppresses on ``iou > thresh`` within a class, and returns the kept rows in score
order padded with -1; torchvision's tie order differs and batched_nms offsets coordinates per class,
which changes IoU rounding."""
from __future__ import annotations

import torch


def box_iou_mx(boxes: torch.Tensor) -> torch.Tensor:
    """Pairwise IoU in MXNet's operation order: clamped overlaps, areas 0 for inverted boxes."""
    l, t, r, b = boxes.unbind(-1)
    iw = (torch.minimum(r[:, None], r[None]) - torch.maximum(l[:, None], l[None])).clamp(min=0)
    ih = (torch.minimum(b[:, None], b[None]) - torch.maximum(t[:, None], t[None])).clamp(min=0)
    inter = iw * ih
    w, h = r - l, b - t
    area = torch.where((w < 0) | (h < 0), torch.zeros_like(w), w * h)
    return inter / ((area[:, None] + area[None]) - inter)


def greedy_keep(boxes: torch.Tensor, ids: torch.Tensor | None, thresh: float) -> torch.Tensor:
    """Indices (into ``boxes``, already in score order) that survive greedy suppression."""
    n = boxes.shape[0]
    if n == 0:
        return torch.zeros(0, dtype=torch.long)
    suppress = box_iou_mx(boxes) > thresh  # NaN IoU (zero union) never suppresses, as in MXNet
    if ids is not None:
        suppress &= ids[:, None].trunc() == ids[None].trunc()
    suppress = torch.triu(suppress, diagonal=1).numpy()
    alive = [True] * n
    for i in range(n):
        if alive[i]:
            for j in suppress[i].nonzero()[0]:
                alive[j] = False
    return torch.tensor([i for i in range(n) if alive[i]], dtype=torch.long)


def box_nms(data: torch.Tensor, overlap_thresh: float = 0.5, valid_thresh: float = 0.0,
            topk: int = -1, coord_start: int = 2, score_index: int = 1, id_index: int = -1,
            background_id: int = -1, force_suppress: bool = False) -> torch.Tensor:
    """Same contract as ``mx.nd.contrib.box_nms(..., in_format='corner', out_format='corner')``:
    input and output are (B, N, K); suppressed and padding rows are all -1."""
    if data.dim() != 3:
        raise ValueError(f"box_nms expects (batch, boxes, width), got {tuple(data.shape)}")
    if topk == 0:  # MXNet: topk < 1 after clamping means "no NMS", output = input
        return data.clone()
    out = torch.full_like(data, -1)
    for bi in range(data.shape[0]):
        rows = data[bi]
        scores = rows[:, score_index]
        valid = scores > valid_thresh
        if id_index >= 0:  # MXNet drops background rows (default id -1) whenever ids are given
            valid &= rows[:, id_index] != background_id
        idx = valid.nonzero().squeeze(1)
        order = torch.sort(scores[idx], descending=True, stable=True).indices
        idx = idx[order]
        if topk > 0:
            idx = idx[:topk]
        ids = rows[idx, id_index] if (id_index >= 0 and not force_suppress) else None
        kept = idx[greedy_keep(rows[idx, coord_start:coord_start + 4], ids, overlap_thresh)]
        out[bi, : kept.numel()] = rows[kept]
    return out
