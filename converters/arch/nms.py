"""Non-maximum suppression with MXNet ``contrib.box_nms`` semantics (corner boxes).

Own code, not torchvision's nms/batched_nms: MXNet keeps only ``score > valid_thresh`` rows whose id is not
``background_id``, sorts once
across classes with a stable descending sort (ties: lower index first), cuts to ``topk`` *before*
suppression, suppresses on ``iou > thresh`` within a class, and returns the kept rows in score
order padded with -1; torchvision's tie order differs and batched_nms offsets coordinates per class,
which changes IoU rounding."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn


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


NMS_VARIANTS = ("mxnet", "torchvision", "naive")


def _tv_nms(rows: torch.Tensor, thresh: float, valid_thresh: float, topk: int, force: bool) -> torch.Tensor:
    """The torchvision-style port: same filter and pre-NMS topk, suppression by batched_nms (its own
    sort, its own IoU arithmetic on class-offset boxes, keeps iou <= thresh)."""
    from torchvision.ops import batched_nms
    rows = rows[(rows[:, 1] > valid_thresh) & (rows[:, 0] != -1)]
    rows = rows[torch.argsort(rows[:, 1], descending=True)]
    if topk > 0:
        rows = rows[:topk]
    groups = torch.zeros_like(rows[:, 0]) if force else rows[:, 0]
    return rows[batched_nms(rows[:, 2:6], rows[:, 1], groups.long(), thresh)]


def _naive_nms(rows: torch.Tensor, thresh: float, force: bool, limit: int) -> torch.Tensor:
    """The hand-written python port: per class, greedy NMS over every positive row (no valid_thresh,
    no pre-NMS topk), classes merged by score, cut to ``limit`` after NMS. Walked in global score
    order, stopping at ``limit`` kept rows: the same result as suppressing every class in full and
    then cutting (a row's fate depends only on higher-scored rows of its class), without the
    O(N^2) work on detectors that emit tens of thousands of unthresholded rows (YOLO)."""
    rows = rows[(rows[:, 1] > 0) & (rows[:, 0] != -1)]
    rows = rows[torch.sort(rows[:, 1], descending=True, stable=True).indices]
    data = rows.numpy()
    kept: list[int] = []
    by_class: dict[float, list[int]] = {}
    for i, (cls, _, l, t, r, b) in enumerate(data):
        mates = by_class.setdefault(-1.0 if force else float(cls), [])
        if mates:
            k = data[mates, 2:6]
            iw = np.maximum(np.minimum(r, k[:, 2]) - np.maximum(l, k[:, 0]), 0)
            ih = np.maximum(np.minimum(b, k[:, 3]) - np.maximum(t, k[:, 1]), 0)
            inter = iw * ih
            area = lambda w, h: np.where((w < 0) | (h < 0), 0, w * h)  # noqa: E731  (MXNet's rule)
            union = area(r - l, b - t) + area(k[:, 2] - k[:, 0], k[:, 3] - k[:, 1]) - inter
            with np.errstate(invalid="ignore", divide="ignore"):
                if np.any(inter / union > thresh):
                    continue
        mates.append(i)
        kept.append(i)
        if 0 < limit == len(kept):
            break
    return rows[kept]


class DetectionNMS(nn.Module):
    """A detector's last stage: (B, N, 6) rows [id, score, x1, y1, x2, y2] -> (ids, scores, boxes) of
    shape (B, K, 1|1|4), -1 padded, K = post_nms (N if post_nms <= 0 or NMS is off).

    ``variant`` picks the post-processing: "mxnet" (gluoncv's box_nms + slice, exact, default),
    "torchvision" (torchvision.ops.batched_nms), "naive" (per-class python NMS, topk after NMS): the
    choices ports make, kept switchable so their effect on detections can be measured."""

    def __init__(self, thresh: float, valid_thresh: float, topk: int, post_nms: int,
                 force_suppress: bool = False, variant: str = "mxnet"):
        super().__init__()
        self.thresh, self.valid_thresh, self.topk, self.post_nms = thresh, valid_thresh, topk, post_nms
        self.force_suppress = force_suppress
        self.variant = variant

    @property
    def variant(self) -> str:
        return self._variant

    @variant.setter
    def variant(self, name: str) -> None:
        if name not in NMS_VARIANTS:
            raise ValueError(f"unknown nms variant {name!r} (available: {', '.join(NMS_VARIANTS)})")
        self._variant = name

    def extra_repr(self) -> str:
        return (f"variant={self.variant!r}, thresh={self.thresh}, valid_thresh={self.valid_thresh}, "
                f"topk={self.topk}, post_nms={self.post_nms}, force_suppress={self.force_suppress}")

    def forward(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if not 0 < self.thresh < 1:  # gluoncv skips NMS (and the post_nms cut) outside (0, 1)
            return rows[..., 0:1], rows[..., 1:2], rows[..., 2:6]
        if self.variant == "mxnet":
            out = box_nms(rows, self.thresh, self.valid_thresh, self.topk, coord_start=2, score_index=1,
                          id_index=0, force_suppress=self.force_suppress)
        else:
            out = torch.full_like(rows, -1)
            for b in range(rows.shape[0]):
                kept = (_tv_nms(rows[b], self.thresh, self.valid_thresh, self.topk, self.force_suppress)
                        if self.variant == "torchvision" else
                        _naive_nms(rows[b], self.thresh, self.force_suppress, self.post_nms))
                out[b, : kept.shape[0]] = kept
        if self.post_nms > 0:
            out = out[:, : self.post_nms]
        return out[..., 0:1], out[..., 1:2], out[..., 2:6]


def set_nms(module: nn.Module, variant: str) -> nn.Module:
    """Switch every DetectionNMS inside ``module`` to ``variant``; an error if there is none."""
    found = [m for m in module.modules() if isinstance(m, DetectionNMS)]
    if not found:
        raise ValueError(f"{type(module).__name__} has no detection post-processing to switch")
    for m in found:
        m.variant = variant
    return module
