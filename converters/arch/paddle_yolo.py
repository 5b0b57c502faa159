"""YOLOv3 as PaddleDetection 2.x (dygraph) and PaddleX 1.x (static) run it: a backbone (DarkNet-53,
MobileNet v1/v3, ResNet, configured from converters/arch), the YOLOv3 FPN neck (per output a
five-conv detection block and a 3x3 ``tip``; a 1x1 transition, nearest 2x upsample and concat into
the next, finer output), a 1x1 predictor per output, Paddle's ``yolo_box`` decoding and Paddle's
``multiclass_nms`` (converters/arch/paddle_nms.py).

Own decoding, not gluoncv's (arch/yolo.py): ``yolo_box`` maps boxes to image pixels through
``img_size / grid`` (not the stride), has ``scale_x_y``, clips to ``size - 1``, zeroes boxes and
scores below ``conf_thresh``, and orders boxes anchor-major; and Paddle's NMS groups rows by label.

``set_numerics``: "ppdet" (PaddleDetection 2.6: yolo_box conf_thresh 0.005, NMS normalized=True) or
"paddlex" (PaddleX 1.x static: conf_thresh = NMS score threshold 0.01, NMS normalized=False, i.e.
+1 pixel widths). Both decode to the network input's pixels (img_size = input (H, W)), where
PaddleX 1.x passes the original image size, so its boxes come out in original-image pixels."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from .darknet import ConvBNLeaky, DarkNet, DarkNetConfig
from .mobilenet import MobileNet, MobileNetConfig
from .mobilenet_v3 import MobileNetV3Backbone
from .paddle_nms import multiclass_nms
from .resnet import ResNet, ResNetConfig
from .yolo import DetectionBlock

ANCHORS = ((10, 13), (16, 30), (33, 23), (30, 61), (62, 45), (59, 119), (116, 90), (156, 198), (373, 326))
ANCHOR_MASKS = ((6, 7, 8), (3, 4, 5), (0, 1, 2))  # deepest output (stride 32) first


@dataclass(frozen=True)
class PostProcess:
    conf_thresh: float  # yolo_box: boxes with sigmoid(objectness) below it get zero box and scores
    normalized: bool  # multiclass_nms: False adds 1 to widths/heights in the IoU
    score_threshold: float = 0.01
    nms_top_k: int = 1000
    keep_top_k: int = 100
    nms_threshold: float = 0.45


NUMERICS = {
    # ppdet configs/yolov3/_base_/*.yml: YOLOBox conf_thresh 0.005; MultiClassNMS class default normalized
    "ppdet": PostProcess(conf_thresh=0.005, normalized=True),
    # PaddleX 1.x yolo_v3.py: yolo_box(conf_thresh=nms.score_threshold), MultiClassNMS(normalized=False)
    "paddlex": PostProcess(conf_thresh=0.01, normalized=False),
}


@dataclass(frozen=True)
class MobileNetV3Config:
    """arch/mobilenet_v3.MobileNetV3Backbone's arguments (it has no config record of its own)."""

    arch: str = "large"
    scale: float = 1.0


@dataclass(frozen=True)
class PaddleYOLOConfig:
    backbone: Any  # DarkNetConfig | MobileNetConfig (v1) | ResNetConfig | MobileNetV3Config
    # backbone body modules run before the stride-8, -16 and -32 maps are taken (see _Backbone)
    cuts: tuple[int, int, int]
    num_classes: int = 80
    anchors: tuple[tuple[int, int], ...] = ANCHORS
    anchor_masks: tuple[tuple[int, ...], ...] = ANCHOR_MASKS
    downsample: int = 32  # stride of the deepest output; each further output halves it
    scale_x_y: float = 1.0
    clip_bbox: bool = True
    bn_eps: float = 1e-5  # paddle.nn.BatchNorm2D and the static batch_norm op
    numerics: str = "ppdet"


class _Backbone(nn.Module):
    """A classification net from converters/arch minus its pool and classifier; ``forward`` returns
    the maps after body modules ``cuts`` (strides 8, 16, 32)."""

    def __init__(self, cfg: PaddleYOLOConfig):
        super().__init__()
        b = cfg.backbone
        if isinstance(b, DarkNetConfig):
            self.net, self.body = DarkNet(b), "stages"
        elif isinstance(b, MobileNetConfig) and b.version == 1:
            self.net, self.body = MobileNet(b), "blocks"
        elif isinstance(b, ResNetConfig):
            self.net, self.body = ResNet(b), None
        elif isinstance(b, MobileNetV3Config):
            self.net, self.body = MobileNetV3Backbone(b.arch, b.scale), "blocks"
        else:
            raise ValueError(f"unsupported YOLOv3 backbone {b!r}")
        for unused in ("pool", "fc", "avgpool", "last"):  # MobileNetV3's last 1x1 conv: not in the detector
            if hasattr(self.net, unused):
                delattr(self.net, unused)
        self.cuts = cfg.cuts

    def _stem_and_body(self):
        if self.body is None:  # ResNet: stem is conv1-bn1-relu-maxpool, the body its stages
            return self.net.stem, self.net.stages
        return self.net.stem, list(getattr(self.net, self.body))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        stem, body = self._stem_and_body()
        x, out, start = stem(x), [], 0
        for cut in self.cuts:
            for module in body[start:cut]:
                x = module(x)
            out.append(x)
            start = cut
        return out

    def out_channels(self) -> list[int]:
        _, body = self._stem_and_body()
        convs = [[m for m in body[c - 1].modules() if isinstance(m, nn.Conv2d)][-1] for c in self.cuts]
        return [c.out_channels for c in convs]


class YOLOBox(nn.Module):
    """Paddle's ``yolo_box`` over all outputs, deepest first: raw maps (B, A*(5+C), H, W) ->
    boxes (B, M, 4) in ``img_size`` pixels and scores (B, C, M), M = sum of A*H*W, anchor-major then
    row-major per output, outputs concatenated. Float32 in the kernel's operation order."""

    def __init__(self, cfg: PaddleYOLOConfig, conf_thresh: float):
        super().__init__()
        self.num_classes, self.scale, self.clip = cfg.num_classes, cfg.scale_x_y, cfg.clip_bbox
        self.conf_thresh = conf_thresh
        self.downsample = cfg.downsample
        self.anchors = [[cfg.anchors[i] for i in mask] for mask in cfg.anchor_masks]

    def level(self, x: torch.Tensor, anchors, ratio: int, img_h: int, img_w: int):
        b, _, gh, gw = x.shape
        a = len(anchors)
        p = x.reshape(b, a, 5 + self.num_classes, gh, gw)
        scale32 = np.float32(self.scale)  # a float attribute; the kernel's bias is computed in double from it
        scale = torch.tensor(float(scale32), dtype=x.dtype)
        bias = torch.tensor(float(np.float32(-0.5 * (float(scale32) - 1.0))), dtype=x.dtype)
        gy, gx = torch.meshgrid(torch.arange(gh, dtype=x.dtype), torch.arange(gw, dtype=x.dtype), indexing="ij")
        aw = torch.tensor([w for w, _ in anchors], dtype=x.dtype).reshape(1, a, 1, 1)
        ah = torch.tensor([h for _, h in anchors], dtype=x.dtype).reshape(1, a, 1, 1)
        cx = (gx + torch.sigmoid(p[:, :, 0]) * scale + bias) * img_w / gw
        cy = (gy + torch.sigmoid(p[:, :, 1]) * scale + bias) * img_h / gh
        w = torch.exp(p[:, :, 2]) * aw * img_w / (ratio * gw)
        h = torch.exp(p[:, :, 3]) * ah * img_h / (ratio * gh)
        boxes = torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=-1)
        if self.clip:  # "v > 0 ? v : 0" keeps the kernel's NaN handling (NaN -> 0 / size - 1)
            zero = torch.zeros((), dtype=x.dtype)
            x1, y1, x2, y2 = boxes.unbind(-1)
            boxes = torch.stack([torch.where(x1 > 0, x1, zero), torch.where(y1 > 0, y1, zero),
                                 torch.where(x2 < img_w - 1, x2, zero + (img_w - 1)),
                                 torch.where(y2 < img_h - 1, y2, zero + (img_h - 1))], dim=-1)
        conf = torch.sigmoid(p[:, :, 4])
        scores = conf.unsqueeze(2) * torch.sigmoid(p[:, :, 5:])  # (B, A, C, H, W)
        keep = ~(conf < self.conf_thresh)  # the kernel skips (leaves 0) where conf < conf_thresh
        return (boxes.reshape(b, -1, 4), scores.permute(0, 2, 1, 3, 4).reshape(b, self.num_classes, -1),
                keep.reshape(b, -1))

    def forward(self, outputs: list[torch.Tensor], img_size: tuple[int, int]):
        """-> boxes (B, M, 4), scores (B, C, M), keep (B, M): the conf_thresh test, not yet applied
        (so that parity measures the fp32 noise of continuous values, not of threshold flips)."""
        levels = [self.level(x, anchors, self.downsample // 2 ** i, *img_size)
                  for i, (x, anchors) in enumerate(zip(outputs, self.anchors))]
        return tuple(torch.cat(parts, dim=-1 if k == 1 else 1) for k, parts in enumerate(zip(*levels)))


class Tap(nn.Module):
    """Identity whose output the parity suite captures (pre-NMS boxes / scores)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class MultiClassNMS(nn.Module):
    """Paddle's multiclass_nms per image (3-D form) -> (ids, scores, boxes): (B, keep_top_k, 1|1|4),
    rows in Paddle's order (label ascending, score order inside a label), padded with -1."""

    def __init__(self, post: PostProcess):
        super().__init__()
        self.post = post

    def forward(self, boxes: torch.Tensor, scores: torch.Tensor):
        """boxes (B, M, 4), scores (B, C, M)."""
        p = self.post
        return per_image_rows(lambda bx, sc: multiclass_nms(
            bx, sc, score_threshold=p.score_threshold, nms_top_k=p.nms_top_k, keep_top_k=p.keep_top_k,
            nms_threshold=p.nms_threshold, normalized=p.normalized)[0], boxes, scores, p.keep_top_k)


def per_image_rows(nms, boxes: torch.Tensor, scores: torch.Tensor, keep_top_k: int):
    """``nms(boxes[b], scores[b])`` -> (n, 6) rows per image, padded with -1 to ``keep_top_k`` and
    split into (ids, scores, boxes): (B, keep_top_k, 1|1|4)."""
    out = torch.full((boxes.shape[0], keep_top_k, 6), -1.0, dtype=torch.float32)
    for b in range(boxes.shape[0]):
        rows = nms(boxes[b], scores[b])
        out[b, : rows.shape[0]] = rows[:keep_top_k]
    return out[..., :1], out[..., 1:2], out[..., 2:]


class PaddleYOLOv3(nn.Module):
    """Eval-mode YOLOv3 -> (ids, scores, boxes) (B, 100, 1|1|4), boxes in input pixels."""

    def __init__(self, cfg: PaddleYOLOConfig):
        super().__init__()
        self.cfg = cfg
        self.backbone = _Backbone(cfg)
        feats = self.backbone.out_channels()[::-1]  # deepest first
        cell = DarkNetConfig(bn_eps=cfg.bn_eps, leaky_slope=0.1)  # conv-BN-LeakyReLU(0.1) units
        widths = [512 // 2 ** i for i in range(3)]
        cins = [feats[0]] + [widths[i - 1] // 2 + feats[i] for i in (1, 2)]  # transition out ++ finer map
        self.yolo_blocks = nn.ModuleList(DetectionBlock(c, w, cell) for c, w in zip(cins, widths))
        self.transitions = nn.ModuleList(ConvBNLeaky(widths[i], widths[i] // 2, 1, 1, cell) for i in range(2))
        self.yolo_outputs = nn.ModuleList(
            nn.Conv2d(2 * w, len(m) * (5 + cfg.num_classes), 1) for w, m in zip(widths, cfg.anchor_masks))
        self.box_out, self.score_out = Tap(), Tap()
        self.set_numerics(cfg.numerics)

    def set_numerics(self, name: str) -> None:
        if name not in NUMERICS:
            raise ValueError(f"YOLOv3 numerics must be one of {sorted(NUMERICS)}, got {name!r}")
        self.numerics = name
        self.decode = YOLOBox(self.cfg, NUMERICS[name].conf_thresh).train(self.training)  # keep eval mode
        self.nms = MultiClassNMS(NUMERICS[name]).train(self.training)

    def head(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Raw predictor maps, deepest first."""
        feats = self.backbone(x)[::-1]
        tips, route = [], None
        # ppdet's order: the neck's three tips (transitions included), then the predictors; an exported
        # program lists its layers in this order, and program alignment follows execution order
        for i, feat in enumerate(feats):
            if i > 0:  # Paddle concatenates the upsampled route first
                feat = torch.cat([route, feat], dim=1)
            route, tip = self.yolo_blocks[i](feat)
            tips.append(tip)
            if i < len(feats) - 1:
                route = self.transitions[i](route).repeat_interleave(2, 2).repeat_interleave(2, 3)  # nearest 2x
        return [output(tip) for output, tip in zip(self.yolo_outputs, tips)]

    def forward(self, x: torch.Tensor):
        boxes, scores, keep = self.decode(self.head(x), tuple(x.shape[-2:]))
        boxes, scores = self.box_out(boxes), self.score_out(scores)
        zero = torch.zeros((), dtype=boxes.dtype)  # yolo_box leaves boxes and scores 0 below conf_thresh
        return self.nms(torch.where(keep.unsqueeze(-1), boxes, zero), torch.where(keep.unsqueeze(1), scores, zero))
