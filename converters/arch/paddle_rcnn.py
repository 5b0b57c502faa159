"""Faster R-CNN (FPN, or C4) as PaddleDetection 2.6 (dygraph) and PaddleX 1.x (static) build it.

Pieces: converters.arch.resnet.ResNet as ppdet's ResNet (frozen BN = eval BN; "vd" = deep stem and
average-pool shortcuts), torchvision's FeaturePyramidNetwork + LastLevelMaxPool (ppdet's FPN: 1x1
laterals, nearest 2x top-down on inputs padded to 32, 3x3 outputs, P6 = max_pool(1, 2) of P5),
torchvision's RPNHead (one shared 3x3 conv + ReLU, A logits, 4A deltas), Paddle's proposal ops
(paddle_rcnn_ops), torchvision's roi_align, a TwoFC box head (C4: res5 on 14x14 RoIs + average
pool, ppdet's Res5Head; RPN and RoIs on res4 at stride 16), torchvision's BoxCoder((10, 10, 5, 5))
(= ppdet's delta2bbox), and Paddle's multiclass_nms (paddle_nms, 2-D R-CNN form).

``set_numerics``: "ppdet" = the dygraph ops (no +1 widths, RoIAlign aligned=True with adaptive
sampling, unrounded anchors at offset 0, eps in the level mapper, NMS normalized=True, boxes clipped
to [0, W]); "paddlex" = the static ops PaddleX 1.x ran (+1 widths, RoIAlign aligned=False with
sampling_ratio 2, Detectron's legacy anchors at offset 0.5, no eps, static box_coder decode without a
dw clamp, clip to [0, W - 1], NMS normalized=False, proposals scored by sigmoid probabilities, an
HRFPN's upsampling with align_corners True).

Input: one padded batch (B, 3, H, W); boxes are in network-input pixels (im_shape = (H, W), scale
factor 1). Output (ids, scores, boxes): (B, K, 1), (B, K, 1), (B, K, 4), K = keep_top_k, rows in
Paddle's order (label ascending, box index inside a label), padded with -1. Like ppdet's get_pred,
a box clipped to zero width or height keeps its row with id -1 ("ppdet" only)."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Callable

import torch
from torch import nn
from torchvision.models.detection._utils import BoxCoder
from torchvision.models.detection.rpn import RPNHead
from torchvision.ops import FeaturePyramidNetwork
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from . import paddle_rcnn_ops as ops
from .paddle_nms import multiclass_nms
from .resnet import ResNet, ResNetConfig


@dataclass(frozen=True)
class Numerics:
    pixel_offset: bool  # +1 box widths (proposals, NMS IoU, level areas)
    aligned: bool  # RoIAlign's half-pixel shift
    sampling_ratio: int  # RoIAlign grid (<= 0: adaptive)
    level_eps: float  # distribute_fpn_proposals' eps inside log2
    legacy_anchors: bool  # static anchor_generator vs ppdet AnchorGenerator
    static_decode: bool  # box_coder decode_center_size (+1/-1, no clamp) vs delta2bbox
    sigmoid_rpn: bool  # proposals ranked by sigmoid probabilities (static) or logits (ppdet)
    corner_resize: bool = False  # HRFPN's bilinear upsampling: align_corners True (static) or False


NUMERICS = {
    "ppdet": Numerics(False, True, 0, 1e-6, False, False, False),
    "paddlex": Numerics(True, False, 2, 0.0, True, True, True, True),
}


@dataclass(frozen=True)
class RCNNConfig:
    backbone: ResNetConfig | Any  # Any: the config ``body`` is called with
    num_classes: int = 80
    fpn: bool = True  # False: C4 (RPN and RoIs on res4, the res5 stage as the box head)
    fpn_channels: int = 256
    anchor_sizes: tuple[tuple[float, ...], ...] = ((32,), (64,), (128,), (256,), (512,))  # per level
    aspect_ratios: tuple[float, ...] = (0.5, 1.0, 2.0)
    pre_nms_top_n: int = 1000  # test proposals (ppdet and PaddleX FPN configs agree)
    post_nms_top_n: int = 1000
    rpn_nms_thresh: float = 0.7
    min_size: float = 0.0
    resolution: int = 7  # RoIAlign output (C4: 14, res5 halves it)
    head_channels: int = 1024  # TwoFCHead width (C4: res5's 2048)
    nms: dict = field(default_factory=lambda: {"score_threshold": 0.05, "nms_top_k": -1, "keep_top_k": 100,
                                               "nms_threshold": 0.5})
    # FPN nets on another backbone: body(backbone config) -> (backbone, neck), the neck mapping the
    # backbone's output to the five levels P2..P6 (HRNet + HRFPN: arch/hrfpn.py); None: ResNet + FPN
    body: Callable[[Any], tuple[nn.Module, nn.Module]] | None = None


class TwoFCHead(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.fc6 = nn.Linear(cin, cout)
        self.fc7 = nn.Linear(cout, cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.fc7(torch.relu(self.fc6(x.flatten(1)))))


class ClassLinear(nn.Linear):
    """The class-score and box-delta layers: ``static_source`` tells the converter's fix-ups that the
    checkpoint is PaddleX 1.x static (background class first, background box rows present)."""

    static_source = False


class RoIPooler(nn.Module):
    """distribute_fpn_proposals + per-level roi_align + restore order (no parameters). One map
    (C4, stride 16): plain roi_align, adaptive sampling in both numerics (ppdet passes no
    sampling_ratio there, PaddleX 1.x sets 0)."""

    def __init__(self, resolution: int):
        super().__init__()
        self.resolution = resolution
        self.numerics = NUMERICS["ppdet"]

    def forward(self, feats: list[torch.Tensor], rois: torch.Tensor) -> torch.Tensor:
        n = self.numerics
        if len(feats) == 1:
            levels = torch.full((rois.shape[0],), 4, dtype=torch.int64)
            return ops.multilevel_roi_align(feats, rois, levels, 4, self.resolution, 0, n.aligned)
        levels = ops.fpn_levels(rois, 2, 5, n.pixel_offset, n.level_eps)
        return ops.multilevel_roi_align(feats, rois, levels, 2, self.resolution, n.sampling_ratio, n.aligned)


class BoxDecoder(nn.Module):
    """Class-specific decode of the RoIs, clipped to the image: [N, C, 4]."""

    def __init__(self, num_classes: int):
        super().__init__()
        self.num_classes = num_classes
        self.coder = BoxCoder((10.0, 10.0, 5.0, 5.0))  # = ppdet delta2bbox (w = x2 - x1, dw clamp)
        self.numerics = NUMERICS["ppdet"]

    def forward(self, deltas: torch.Tensor, rois: torch.Tensor, im_hw: tuple[int, int]) -> torch.Tensor:
        h, w = im_hw
        if self.numerics.static_decode:
            boxes = static_decode(deltas.reshape(deltas.shape[0], -1, 4), rois)
            off = 1.0  # box_clip: [0, W - 1]
        else:
            boxes = self.coder.decode_single(deltas, rois.to(deltas.dtype)).reshape(deltas.shape[0], -1, 4)
            off = 0.0  # RCNNBox: [0, W]
        return torch.stack([boxes[..., 0].clamp(0, w - off), boxes[..., 1].clamp(0, h - off),
                            boxes[..., 2].clamp(0, w - off), boxes[..., 3].clamp(0, h - off)], dim=-1)


def static_decode(deltas: torch.Tensor, rois: torch.Tensor) -> torch.Tensor:
    """box_coder decode_center_size, variances (0.1, 0.1, 0.2, 0.2), box_normalized=False: +1
    widths, x2 - 1, no clamp of dw/dh. ``deltas`` [N, C, 4], ``rois`` [N, 4] -> [N, C, 4]."""
    pw = (rois[:, 2] - rois[:, 0] + 1)[:, None]
    ph = (rois[:, 3] - rois[:, 1] + 1)[:, None]
    px, py = rois[:, 0, None] + pw / 2, rois[:, 1, None] + ph / 2
    cx = 0.1 * deltas[..., 0] * pw + px
    cy = 0.1 * deltas[..., 1] * ph + py
    w = torch.exp(0.2 * deltas[..., 2]) * pw
    h = torch.exp(0.2 * deltas[..., 3]) * ph
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2 - 1, cy + h / 2 - 1], dim=-1)


class DetectionOutput(nn.Module):
    """multiclass_nms (2-D form) per image, ppdet's empty-box relabelling, -1 padding to K."""

    def __init__(self, nms: dict):
        super().__init__()
        self.nms = dict(nms)
        self.numerics = NUMERICS["ppdet"]

    def forward(self, boxes: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        rows, _ = multiclass_nms(boxes, scores, normalized=not self.numerics.pixel_offset, **self.nms)
        if not self.numerics.pixel_offset:  # ppdet get_pred: nonempty_bbox or id -1
            empty = (rows[:, 4] - rows[:, 2] <= 0) | (rows[:, 5] - rows[:, 3] <= 0)
            rows[empty, 0] = -1
        k = self.nms["keep_top_k"]
        out = torch.full((k, 6), -1.0, dtype=torch.float32)
        out[: rows.shape[0]] = rows[:k]
        return out.to(boxes.dtype)


class C5Head(nn.Module):
    """C4 box head: the backbone's res5 stage on the RoI features, then global average pooling."""

    def __init__(self, res5: nn.Module):
        super().__init__()
        self.res5 = res5

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.res5(x).mean(dim=(2, 3))


class Collect(nn.Module):
    """One image's proposals of all levels -> its RoIs (see paddle_rcnn_ops.collect); a module so
    parity can replay the source's RoIs here (the top-k over levels is a discrete choice that
    fp32 noise may reorder between near-tied scores)."""

    def __init__(self, top_n: int):
        super().__init__()
        self.top_n = top_n
        self.always_sort = False

    def forward(self, rois: list[torch.Tensor], scores: list[torch.Tensor]) -> torch.Tensor:
        return ops.collect(rois, scores, self.top_n, self.always_sort)


class PaddleFasterRCNN(nn.Module):
    def __init__(self, cfg: RCNNConfig):
        super().__init__()
        self.cfg = cfg
        anchors = len(cfg.aspect_ratios) * len(cfg.anchor_sizes[0])
        if cfg.body is not None:
            self.backbone, self.fpn = cfg.body(cfg.backbone)
        else:
            self.backbone = ResNet(cfg.backbone)
            self.backbone.fc = nn.Identity()  # no classifier in the detector
        if cfg.fpn:
            if cfg.body is None:
                self.fpn = FeaturePyramidNetwork(list(cfg.backbone.channels[1:]), cfg.fpn_channels,
                                                 extra_blocks=LastLevelMaxPool())
            self.rpn = RPNHead(cfg.fpn_channels, anchors)
            self.box_head = TwoFCHead(cfg.fpn_channels * cfg.resolution ** 2, cfg.head_channels)
        else:  # res5 moves from the backbone into the box head (ppdet's Res5Head)
            self.rpn = RPNHead(cfg.backbone.channels[3], anchors)
            res5 = self.backbone.layer4
            if cfg.backbone.avg_down:  # Res5Head is variant "b" in vd nets too: strided 1x1 shortcut
                res5 = ResNet(replace(cfg.backbone, avg_down=False, deep_stem=())).layer4
            self.box_head = C5Head(res5)
            self.backbone.layer4 = nn.Identity()
        self.collect = Collect(cfg.post_nms_top_n)
        self.roi_align = RoIPooler(cfg.resolution)
        self.score = ClassLinear(cfg.head_channels, cfg.num_classes + 1)  # background last
        self.delta = ClassLinear(cfg.head_channels, 4 * cfg.num_classes)
        self.cls_prob = nn.Softmax(dim=-1)
        self.decoder = BoxDecoder(cfg.num_classes)
        self.output = DetectionOutput(cfg.nms)
        self.numerics = NUMERICS["ppdet"]

    def set_numerics(self, name: str) -> None:
        if name not in NUMERICS:
            raise ValueError(f"unknown numerics {name!r} (use {', '.join(NUMERICS)})")
        self.numerics = n = NUMERICS[name]
        for m in (self.roi_align, self.decoder, self.output):
            m.numerics = n
        for m in (self.score, self.delta):
            m.static_source = name == "paddlex"
        self.collect.always_sort = n.pixel_offset  # static collect_fpn_proposals sorts always
        if hasattr(getattr(self, "fpn", None), "align_corners"):  # HRFPN (arch/hrfpn.py)
            self.fpn.align_corners = n.corner_resize

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        if self.cfg.body is not None:
            return list(self.fpn(self.backbone(x)))
        b = self.backbone
        y = b.stem(x)
        body = {}
        for i, stage in enumerate(b.stages[: 4 if self.cfg.fpn else 3]):
            y = stage(y)
            body[f"res{i + 2}"] = y
        return list(self.fpn(body).values()) if self.cfg.fpn else [y]  # P2..P6, or res4

    def anchors(self, level: int, height: int, width: int) -> torch.Tensor:
        make = ops.static_anchors if self.numerics.legacy_anchors else ops.ppdet_anchors
        stride = 2.0 ** (level + 2) if self.cfg.fpn else 16.0
        return make(self.cfg.anchor_sizes[level], self.cfg.aspect_ratios, stride, height, width)

    def proposals(self, feats: list[torch.Tensor], im_hw: tuple[int, int]) -> list[torch.Tensor]:
        logits, deltas = self.rpn(feats)
        n, cfg = self.numerics, self.cfg
        anchors = [self.anchors(i, f.shape[-2], f.shape[-1]) for i, f in enumerate(feats)]
        out = []
        for b in range(feats[0].shape[0]):
            rois, scores = [], []
            for lg, dl, an in zip(logits, deltas, anchors):
                s = torch.sigmoid(lg[b]) if n.sigmoid_rpn else lg[b]
                r, p = ops.generate_proposals(s, dl[b], an, im_hw, cfg.pre_nms_top_n, cfg.post_nms_top_n,
                                              cfg.rpn_nms_thresh, cfg.min_size, n.pixel_offset)
                rois.append(r)
                scores.append(p)
            out.append(self.collect(rois, scores))
        return out

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        im_hw = (x.shape[-2], x.shape[-1])
        feats = self.features(x)
        rows = []
        for b, rois in enumerate(self.proposals(feats, im_hw)):
            pooled = self.roi_align([f[b:b + 1] for f in feats[:4]], rois)
            h = self.box_head(pooled)
            prob = self.cls_prob(self.score(h))
            boxes = self.decoder(self.delta(h), rois, im_hw)
            rows.append(self.output(boxes, prob[:, :-1]))
        rows = torch.stack(rows)
        return rows[..., 0:1], rows[..., 1:2], rows[..., 2:6]
