"""Mask R-CNN (FPN, or C4) as PaddleDetection 2.6 (dygraph) and PaddleX 1.x (static) build it: the
Faster R-CNN of paddle_rcnn plus a mask branch on the final detections.

Mask branch: RoIAlign 14x14 of each detection's box (FPN: on P2-P5 by the same level rule as the
box head; C4: on res4, then the box head's res5 stage), ppdet's MaskFeat (FPN: four 3x3 convs + ReLU;
C4: none) and a 2x2 stride-2 transposed conv + ReLU, a 1x1 ``mask_fcn_logits`` conv (one channel per
class), the detection's own class channel, sigmoid. The body stays the parent's: ``features`` and
the box head are inherited, so another body (HRNet + HRFPN) plugs in the same way.

Output: (ids, scores, boxes, masks): the parent's three, and (B, K, M, M) mask probabilities
(M = 28 FPN, 14 C4) on the same rows, -1 on padding rows. ``paste_masks`` is ppdet's MaskPostProcess
(grid_sample of each mask onto the image, threshold >= 0.5), kept outside the module: a full-size
mask per row is (K, H, W) and only evaluation needs it."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .paddle_nms import multiclass_nms
from .paddle_rcnn import DetectionOutput, PaddleFasterRCNN, RCNNConfig, RoIPooler


@dataclass(frozen=True)
class MaskConfig:
    rcnn: RCNNConfig
    mask_convs: int = 4  # MaskFeat's 3x3 convs (C4: 0)
    mask_channels: int = 256
    mask_roi: int = 14  # RoIAlign output of the mask branch (C4: res5 halves it, the deconv doubles it)


class MaskDetectionOutput(DetectionOutput):
    """The parent's NMS rows, and the unpadded rows before ppdet's empty-box relabelling: the mask
    head takes each detection's own class (ppdet runs it on the NMS output, before get_pred)."""

    def forward(self, boxes: torch.Tensor, scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        rows, _ = multiclass_nms(boxes, scores, normalized=not self.numerics.pixel_offset, **self.nms)
        k = self.nms["keep_top_k"]
        rows = rows[:k]
        out = rows.clone()
        if not self.numerics.pixel_offset:  # ppdet get_pred: nonempty_bbox or id -1
            empty = (out[:, 4] - out[:, 2] <= 0) | (out[:, 5] - out[:, 3] <= 0)
            out[empty, 0] = -1
        padded = torch.full((k, 6), -1.0, dtype=torch.float32)
        padded[: out.shape[0]] = out
        return padded.to(boxes.dtype), rows.to(boxes.dtype)  # NMS rows come back float32


class ClassConv(nn.Conv2d):
    """The mask logits: ``static_source`` tells the fix-ups that the checkpoint is PaddleX 1.x static
    (a background channel first)."""

    static_source = False


class MaskHead(nn.Module):
    """ppdet MaskFeat + mask_fcn_logits: [N, C, R, R] -> per-class logits [N, classes, 2R, 2R]."""

    def __init__(self, cin: int, channels: int, convs: int, num_classes: int):
        super().__init__()
        layers: list[nn.Module] = []
        for i in range(convs):
            layers += [nn.Conv2d(cin if i == 0 else channels, channels, 3, padding=1), nn.ReLU()]
        self.convs = nn.Sequential(*layers)
        self.deconv = nn.ConvTranspose2d(channels if convs else cin, channels, 2, stride=2)
        self.logits = ClassConv(channels, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits(torch.relu(self.deconv(self.convs(x))))


class PaddleMaskRCNN(PaddleFasterRCNN):
    def __init__(self, cfg: MaskConfig):
        super().__init__(cfg.rcnn)
        self.mask_cfg = cfg
        self.output = MaskDetectionOutput(cfg.rcnn.nms)
        self.mask_rois = nn.Identity()  # the boxes the mask branch crops: parity replays the source's
        self.mask_roi_align = RoIPooler(cfg.mask_roi)
        cin = cfg.rcnn.fpn_channels if cfg.rcnn.fpn else cfg.rcnn.head_channels
        self.mask_head = MaskHead(cin, cfg.mask_channels, cfg.mask_convs, cfg.rcnn.num_classes)
        self.mask_prob = nn.Sigmoid()

    def set_numerics(self, name: str) -> None:
        super().set_numerics(name)
        self.mask_roi_align.numerics = self.numerics
        self.mask_head.logits.static_source = name == "paddlex"

    def masks(self, feats: list[torch.Tensor], rows: torch.Tensor) -> torch.Tensor:
        """Mask probabilities [n, M, M] of one image's NMS rows [n, 6] (class channel ``rows[:, 0]``)."""
        boxes = self.mask_rois(rows[:, 2:6])
        pooled = self.mask_roi_align(feats, boxes)
        if not self.cfg.fpn:  # ppdet share_bbox_feat: the box head's res5 on the 14x14 RoIs
            pooled = self.box_head.res5(pooled)
        logits = self.mask_head(pooled)
        picked = logits[torch.arange(rows.shape[0]), rows[:, 0].long()]
        return self.mask_prob(picked)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        im_hw = (x.shape[-2], x.shape[-1])
        feats = self.features(x)
        k = self.cfg.nms["keep_top_k"]
        m = 2 * self.mask_cfg.mask_roi if self.cfg.fpn else self.mask_cfg.mask_roi
        rows, masks = [], []
        for b, rois in enumerate(self.proposals(feats, im_hw)):
            level_feats = [f[b:b + 1] for f in feats[:4]]
            pooled = self.roi_align(level_feats, rois)
            h = self.box_head(pooled)
            prob = self.cls_prob(self.score(h))
            boxes = self.decoder(self.delta(h), rois, im_hw)
            padded, kept = self.output(boxes, prob[:, :-1])
            mask = x.new_full((k, m, m), -1.0)
            if kept.shape[0]:
                mask[: kept.shape[0]] = self.masks(level_feats, kept)
            rows.append(padded)
            masks.append(mask)
        rows = torch.stack(rows)
        return rows[..., 0:1], rows[..., 1:2], rows[..., 2:6], torch.stack(masks)


def paste_probs(masks: torch.Tensor, boxes: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """ppdet's paste_mask for one image: each [M, M] probability map sampled at the pixel centres
    (j + 0.5) of a ``height`` x ``width`` image mapped onto its box (x1, y1, x2, y2) by
    (p - x1) / (x2 - x1) * 2 - 1, bilinear, zeros outside, align_corners False (torch's grid_sample
    is paddle's: same formula) -> float [N, H, W]. Own code because ppdet's paste is not
    torchvision's (Detectron's expand-and-resize paste_masks_in_image)."""
    n = masks.shape[0]
    if n == 0:
        return torch.zeros((0, height, width), dtype=torch.float32)
    b = boxes.to(torch.float32)
    x0, y0, x1, y1 = (b[:, i:i + 1] for i in range(4))
    gy = ((torch.arange(height, dtype=torch.float32) + 0.5)[None] - y0) / (y1 - y0) * 2 - 1  # [N, H]
    gx = ((torch.arange(width, dtype=torch.float32) + 0.5)[None] - x0) / (x1 - x0) * 2 - 1  # [N, W]
    grid = torch.stack([gx[:, None, :].expand(n, height, width), gy[:, :, None].expand(n, height, width)], dim=3)
    return F.grid_sample(masks[:, None].to(torch.float32), grid, mode="bilinear", padding_mode="zeros",
                         align_corners=False)[:, 0]


def paste_masks(masks: torch.Tensor, boxes: torch.Tensor, height: int, width: int,
                threshold: float = 0.5) -> torch.Tensor:
    """ppdet's MaskPostProcess for one image: paste_probs >= ``threshold`` -> int32 [N, H, W]."""
    return (paste_probs(masks, boxes, height, width) >= threshold).to(torch.int32)
