"""Faster R-CNN (Ren et al.), gluoncv's single-scale (C4) layout: ResNet stages 1-3 as shared
features, an RPN on them, RoIAlign of each proposal, stage 4 as the per-RoI head, global average
pool, class and class-specific box predictors, then gluoncv's eval post-processing: softmax, per-class
score threshold, box decoding against the proposals, and one box_nms per (image, class)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torchvision.ops import roi_align

from .nms import DetectionNMS
from .resnet import ResNet, ResNetConfig
from .rpn import RPN, CornerBoxDecoder
from .ssd import PerClassDecoder


@dataclass(frozen=True)
class FasterRCNNConfig:
    backbone: ResNetConfig
    num_classes: int  # foreground classes
    stride: int = 16  # of the stage-3 features the RPN and RoIAlign read
    anchor_sizes: tuple[float, ...] = (32, 64, 128, 256, 512)  # gluoncv: scales (2..32) x base_size 16
    anchor_ratios: tuple[float, ...] = (0.5, 1, 2)
    rpn_channels: int = 1024
    rpn_nms_thresh: float = 0.7
    rpn_pre_nms: int = 6000  # eval counts (rpn_test_pre_nms / rpn_test_post_nms)
    rpn_post_nms: int = 300
    rpn_min_size: float = 16
    clip: float | None = None  # cap on decoded log-size offsets (RPN and R-CNN), None = off
    roi_size: tuple[int, int] = (14, 14)
    roi_sample_ratio: int = 2
    box_stds: tuple[float, float, float, float] = (0.1, 0.1, 0.2, 0.2)
    score_thresh: float = 0.01  # MultiPerClassDecoder's default
    nms_thresh: float = 0.3
    nms_topk: int = 400  # per class (each class is its own box_nms batch row)
    valid_thresh: float = 1e-4
    force_nms: bool = False


class RoIAlign(nn.Module):
    """(features, rois (K, 5) [batch, x1, y1, x2, y2]) -> (K, C, *size). torchvision's roi_align with
    aligned=False and a fixed sampling_ratio *is* MXNet contrib.ROIAlign (bit for bit on random
    inputs, parity/tests/test_faster_rcnn.py), so it is used as is."""

    def __init__(self, size: tuple[int, int], spatial_scale: float, sampling_ratio: int):
        super().__init__()
        self.size, self.spatial_scale, self.sampling_ratio = tuple(size), spatial_scale, sampling_ratio

    def forward(self, feat: torch.Tensor, rois: torch.Tensor) -> torch.Tensor:
        return roi_align(feat, rois, self.size, self.spatial_scale, self.sampling_ratio, aligned=False)


class PerClassNMS(DetectionNMS):
    """gluoncv's R-CNNs call box_nms with the classes as its batch: rows (B, C, N, 6) get one NMS
    per (image, class) block (topk per class, -1 padding per block) and come out as (B, C*N, 1|1|4)
    in class-block order. 3-D rows (B, N, 6) behave as in DetectionNMS (force_nms: one block)."""

    def forward(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if rows.dim() != 4:
            return super().forward(rows)
        b, c, n, k = rows.shape
        outs = super().forward(rows.reshape(b * c, n, k))
        return tuple(o.reshape(b, -1, o.shape[-1]) for o in outs)


class FasterRCNN(nn.Module):
    """Eval-mode Faster R-CNN returning gluoncv's ``(ids, scores, bboxes)`` of shape
    (B, C * rpn_post_nms, 1|1|4): per class, its kept detections in score order, -1 padded."""

    def __init__(self, cfg: FasterRCNNConfig):
        super().__init__()
        if not 0 < cfg.nms_thresh < 1:  # gluoncv's R-CNN calls box_nms unguarded; DetectionNMS skips it
            raise ValueError(f"nms_thresh must be in (0, 1), got {cfg.nms_thresh}")
        self.cfg = cfg
        self.backbone = ResNet(cfg.backbone)
        del self.backbone.fc, self.backbone.avgpool  # stages only: features = 1-3, per-RoI head = 4
        cin, width = cfg.backbone.channels[3], cfg.backbone.channels[4]
        self.rpn = RPN(cin, cfg.rpn_channels, cfg.stride, cfg.anchor_sizes, cfg.anchor_ratios, cfg.clip,
                       cfg.rpn_nms_thresh, cfg.rpn_pre_nms, cfg.rpn_post_nms, cfg.rpn_min_size)
        self.roi_align = RoIAlign(cfg.roi_size, 1.0 / cfg.stride, cfg.roi_sample_ratio)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.class_predictor = nn.Linear(width, cfg.num_classes + 1)
        self.box_predictor = nn.Linear(width, cfg.num_classes * 4)
        self.cls_decoder = PerClassDecoder(cfg.score_thresh)
        self.box_decoder = CornerBoxDecoder(cfg.box_stds, cfg.clip)
        # post_nms 0: gluoncv's FasterRCNN stores post_nms but never cuts its output
        self.nms = PerClassNMS(cfg.nms_thresh, cfg.valid_thresh, cfg.nms_topk, 0, force_suppress=cfg.force_nms)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.backbone.stem(x)
        for stage in self.backbone.stages[:3]:
            x = stage(x)
        return x

    def top_features(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.backbone.layer4(pooled)

    def head(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Proposals (B, R, 4), class logits (B, R, C+1) and box offsets (B, C, R, 4)."""
        feat = self.features(x)
        _, boxes = self.rpn(feat, (x.shape[2], x.shape[3]))
        b, r = boxes.shape[:2]
        batch = torch.arange(b, dtype=boxes.dtype, device=boxes.device).repeat_interleave(r)[:, None]
        pooled = self.roi_align(feat, torch.cat([batch, boxes.reshape(-1, 4)], 1))
        top = torch.flatten(self.avgpool(self.top_features(pooled)), 1)
        cls = self.class_predictor(top).reshape(b, r, -1)
        box = self.box_predictor(top).reshape(b, r, self.cfg.num_classes, 4).transpose(1, 2)
        return boxes, cls, box

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        boxes, cls, box = self.head(x)
        ids, scores = self.cls_decoder(torch.softmax(cls, dim=-1))  # (B, R, C) each
        rows = []
        for i in range(x.shape[0]):  # gluoncv decodes image by image: (C, R, 4) against (1, R, 4)
            bbox = self.box_decoder(box[i], boxes[i : i + 1])
            rows.append(torch.cat([ids[i].T[..., None], scores[i].T[..., None], bbox], -1))
        rows = torch.stack(rows)  # (B, C, R, 6): class-major, as gluoncv transposes them
        if self.cfg.force_nms:  # one block per image: suppression across classes
            rows = rows.reshape(rows.shape[0], 1, -1, 6)
        return self.nms(rows)
