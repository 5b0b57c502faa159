"""PP-YOLO (PaddleDetection 2.x ``PPYOLOFPN`` + ``YOLOv3Head(iou_aware)``, PaddleX 1.x
``paddlex.det.PPYOLO``) in eval mode: a ResNet backbone (converters/arch/resnet.py) whose listed
stages' 3x3 convs are DCNv2 (converters/arch/dcn.py); per output a detection block of CoordConv /
conv-BN-LeakyReLU(0.1) units, with SPP (max-pools 5, 9, 13 concatenated after the map, then a 1x1
unit) inside the deepest block; DropBlock (an identity at eval) is absent; 1x1 predictors with an
IoU branch; Paddle's ``yolo_box`` (scale_x_y 1.05) and ``matrix_nms`` (converters/arch/paddle_nms.py).

PP-YOLOv2 (``neck="pan"``, ppdet ``PPYOLOPAN``): the neck is an FPN of CSP blocks with Mish units and
SPP, then a bottom-up path; no CoordConv (see ``PAN``). PP-YOLO tiny (``neck="tiny"``): a MobileNetV3
backbone, SPP then blocks of 1x1 and 5x5 depthwise units (``TinyFPN``), multiclass NMS.

Own modules, not torchvision's: nothing there has CoordConv, SPP, CSP-PAN or the IoU-aware score.

IoU-aware score: the predictor's first A channels are IoU logits; the objectness becomes
``conf^(1-f) * iou^f`` (f = ``iou_aware_factor``), mapped back to a logit as Paddle does
(clip to [1e-7, 1e7], -log(1/x - 1), clipped again) before ``yolo_box`` applies its sigmoid.

``set_numerics``: the CoordConv grid differs between the two sources. "ppdet" (PaddleDetection 2.x
``add_coord``): x_i = i / (2 (W - 1)) - 1, in [-1, -0.5]; "paddlex" (PaddleX 1.x / PaddleDetection
0.x ``_add_coord``): x_i = i / ((W - 1) / 2) - 1, in [-1, 1]. Weights trained with one grid expect
it. PaddleX 1.x builds its y grid as the transpose of the x grid, so it only runs square inputs;
both give the same y grid there. Post-processing is the same for both (see POST)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .darknet import ConvBNLeaky, DarkNetConfig
from .dcn import ModulatedDeformConv2d
from .paddle_nms import matrix_nms
from .paddle_yolo import MultiClassNMS, PaddleYOLOConfig, PostProcess, Tap, YOLOBox, _Backbone, per_image_rows


@dataclass(frozen=True)
class MatrixNMSParams:
    """ppdet configs/ppyolo/_base_/ppyolo_r50vd_dcn.yml and PaddleX 1.x yolo_v3.py (use_matrix_nms):
    yolo_box conf_thresh 0.01, MatrixNMS score/post thresholds 0.01, no pre-NMS cut, 100 kept,
    normalized=False (+1 pixel IoU), linear decay, no background class."""

    conf_thresh: float = 0.01
    score_threshold: float = 0.01
    post_threshold: float = 0.01
    nms_top_k: int = -1
    keep_top_k: int = 100
    normalized: bool = False
    use_gaussian: bool = False
    gaussian_sigma: float = 2.0


POST = MatrixNMSParams()
# PaddleX 1.x PPYOLO(use_matrix_nms=False): multiclass_nms with its YOLOv3 settings, normalized=False
MULTICLASS_POST = PostProcess(conf_thresh=0.01, normalized=False)
GRIDS = ("ppdet", "paddlex")


@dataclass(frozen=True)
class PPYOLOConfig:
    yolo: PaddleYOLOConfig  # backbone, cuts, classes, anchors, scale_x_y, clip_bbox, BN eps
    dcn_stages: tuple[int, ...] = (3,)  # backbone stages (0-based) whose bottleneck 3x3 convs are DCNv2
    coord_conv: bool = True
    spp: bool = True
    iou_aware_factor: float | None = 0.4  # None: no IoU branch
    neck: str = "fpn"  # "fpn" (PP-YOLO) | "pan" (PP-YOLOv2: CSP blocks, top-down then bottom-up, Mish)
    # | "tiny" (PP-YOLO tiny: depthwise 5x5 blocks of these widths, SPP on the deepest map first)
    tiny_widths: tuple[int, int, int] = (160, 128, 96)
    post: MatrixNMSParams | PostProcess = POST  # PostProcess: multiclass_nms instead of matrix_nms
    numerics: str = "ppdet"


def coord_grid(h: int, w: int, numerics: str, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """(gx, gy) of shape (1, 1, H, W): each source's float32 arithmetic (see the module docstring)."""
    def axis(n: int) -> torch.Tensor:
        i = torch.arange(n, dtype=torch.float32)
        v = i / float(2 * (n - 1)) - 1 if numerics == "ppdet" else i / np.float32((n - 1) / 2) - 1
        return v.to(dtype)
    return axis(w).reshape(1, 1, 1, w).expand(1, 1, h, w), axis(h).reshape(1, 1, h, 1).expand(1, 1, h, w)


class CoordConvBN(ConvBNLeaky):
    """A conv-BN-LeakyReLU unit on the input with two coordinate channels (x, then y) appended."""

    def __init__(self, cin: int, cout: int, kernel: int, cell: DarkNetConfig):
        super().__init__(cin + 2, cout, kernel, 1, cell)
        self.numerics = "ppdet"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gx, gy = coord_grid(x.shape[2], x.shape[3], self.numerics, x.dtype)
        b = x.shape[0]
        return super().forward(torch.cat([x, gx.expand(b, -1, -1, -1), gy.expand(b, -1, -1, -1)], dim=1))


class SPP(nn.Module):
    """The map and its stride-1 max-pools (5, 9, 13; -inf padding as Paddle's) concatenated, then a
    1x1 unit."""

    def __init__(self, cin: int, cout: int, cell: DarkNetConfig, sizes: tuple[int, ...] = (5, 9, 13)):
        super().__init__()
        self.pools = nn.ModuleList(nn.MaxPool2d(k, 1, k // 2) for k in sizes)
        self.conv = ConvBNLeaky(cin * (1 + len(sizes)), cout, 1, 1, cell)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.cat([x, *(p(x) for p in self.pools)], dim=1))


class PPYOLODetBlock(nn.Module):
    """conv0 (1x1), conv1 (3x3), conv2 (1x1), [SPP,] conv3 (3x3), route (1x1), then tip (3x3);
    the 1x1 units, route and tip are CoordConvs when ``coord``. Returns (route, tip)."""

    def __init__(self, cin: int, channels: int, cell: DarkNetConfig, coord: bool, spp: bool):
        super().__init__()
        unit = (lambda i, o, k: CoordConvBN(i, o, k, cell)) if coord else (lambda i, o, k: ConvBNLeaky(i, o, k, 1, cell))
        c, c2 = channels, 2 * channels
        layers = [unit(cin, c, 1), ConvBNLeaky(c, c2, 3, 1, cell), unit(c2, c, 1)]
        if spp:
            layers.append(SPP(c, c, cell))
        layers += [ConvBNLeaky(c, c2, 3, 1, cell), unit(c2, c, 1)]
        self.body = nn.Sequential(*layers)
        self.tip = unit(c, c2, 3)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        route = self.body(x)
        return route, self.tip(route)


def _de_sigmoid(p: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    hi = 1.0 / eps
    p = p.clamp(eps, hi)
    return -torch.log((1.0 / p - 1.0).clamp(eps, hi))


def iou_aware(out: torch.Tensor, anchors: int, factor: float) -> torch.Tensor:
    """A predictor map with the IoU branch (B, A*(6+C), H, W) -> the plain layout (B, A*(5+C), H, W)
    whose objectness logit now encodes conf^(1-f) * iou^f."""
    b, _, h, w = out.shape
    iou = torch.sigmoid(out[:, :anchors]).unsqueeze(2)
    x = out[:, anchors:].reshape(b, anchors, -1, h, w)
    obj = torch.sigmoid(x[:, :, 4:5])
    fused = _de_sigmoid(obj ** (1 - factor) * iou ** factor)
    return torch.cat([x[:, :, :4], fused, x[:, :, 5:]], dim=2).reshape(b, -1, h, w)


class MatrixNMS(nn.Module):
    """Paddle's matrix_nms per image -> (ids, scores, boxes): (B, keep_top_k, 1|1|4), rows by decayed
    score across classes, padded with -1."""

    def __init__(self, post: MatrixNMSParams):
        super().__init__()
        self.post = post

    def forward(self, boxes: torch.Tensor, scores: torch.Tensor):
        p = self.post
        return per_image_rows(lambda bx, sc: matrix_nms(
            bx, sc, score_threshold=p.score_threshold, post_threshold=p.post_threshold, nms_top_k=p.nms_top_k,
            keep_top_k=p.keep_top_k, normalized=p.normalized, use_gaussian=p.use_gaussian,
            gaussian_sigma=p.gaussian_sigma, background_label=-1)[0], boxes, scores, p.keep_top_k)


class CSPBlock(nn.Module):
    """PP-YOLOv2's CSP detection block: ``conv1`` (left) and ``conv2`` (right) 1x1 to ``channels``;
    the left goes through ``body`` (three 1x1 + 3x3 pairs, the second 3x3 an SPP in the deepest FPN
    block); ``conv3`` (1x1) on left ++ right is both route and tip."""

    def __init__(self, cin: int, channels: int, cell: DarkNetConfig, spp: bool):
        super().__init__()
        c = channels
        self.conv1 = ConvBNLeaky(cin, c, 1, 1, cell)
        self.conv2 = ConvBNLeaky(cin, c, 1, 1, cell)
        layers = []
        for j in range(3):
            layers.append(ConvBNLeaky(c, c, 1, 1, cell))
            layers.append(SPP(c, c, cell) if spp and j == 1 else ConvBNLeaky(c, c, 3, 1, cell))
        self.body = nn.Sequential(*layers)
        self.conv3 = ConvBNLeaky(2 * c, 2 * c, 1, 1, cell)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.conv3(torch.cat([self.body(self.conv1(x)), self.conv2(x)], dim=1))
        return out, out


class PAN(nn.Module):
    """PP-YOLOv2's neck (ppdet PPYOLOPAN): an FPN of CSP blocks, deepest first (1x1 transitions, nearest
    2x, upsampled route concatenated first), then a bottom-up path (3x3 stride-2 transitions, route
    concatenated first). Returns the three tips, deepest first."""

    def __init__(self, feats: list[int], cell: DarkNetConfig, spp: bool):
        super().__init__()
        widths = [512 // 2 ** i for i in range(3)]
        cins = [feats[0]] + [feats[i] + widths[i - 1] for i in (1, 2)]
        self.fpn_blocks = nn.ModuleList(CSPBlock(c, w, cell, spp and i == 0) for i, (c, w) in enumerate(zip(cins, widths)))
        self.fpn_transitions = nn.ModuleList(ConvBNLeaky(2 * widths[i], widths[i], 1, 1, cell) for i in range(2))
        self.pan_transitions = nn.ModuleList(ConvBNLeaky(2 * widths[i + 1], 2 * widths[i + 1], 3, 2, cell) for i in range(2))
        self.pan_blocks = nn.ModuleList(CSPBlock(2 * widths[i] + 2 * widths[i + 1], widths[i], cell, False) for i in range(2))

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        tips, route = [], None
        for i, feat in enumerate(feats):
            if i > 0:
                feat = torch.cat([route, feat], dim=1)
            route, tip = self.fpn_blocks[i](feat)
            tips.append(tip)
            if i < len(feats) - 1:
                route = self.fpn_transitions[i](route).repeat_interleave(2, 2).repeat_interleave(2, 3)
        out, route = [tips[-1]], tips[-1]
        for i in reversed(range(len(feats) - 1)):
            route, tip = self.pan_blocks[i](torch.cat([self.pan_transitions[i](route), tips[i]], dim=1))
            out.append(tip)
        return out[::-1]


def _depthwise(c: int, k: int, cell: DarkNetConfig) -> ConvBNLeaky:
    unit = ConvBNLeaky(c, c, k, 1, cell)
    unit.conv = nn.Conv2d(c, c, k, 1, k // 2, groups=c, bias=False)
    return unit


class TinyDetBlock(nn.Module):
    """PP-YOLO tiny's block: 1x1, 5x5 depthwise, 1x1, 5x5 depthwise (the route), then a 1x1 tip."""

    def __init__(self, cin: int, c: int, cell: DarkNetConfig):
        super().__init__()
        self.body = nn.Sequential(ConvBNLeaky(cin, c, 1, 1, cell), _depthwise(c, 5, cell),
                                  ConvBNLeaky(c, c, 1, 1, cell), _depthwise(c, 5, cell))
        self.tip = ConvBNLeaky(c, c, 1, 1, cell)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        route = self.body(x)
        return route, self.tip(route)


class TinyFPN(nn.Module):
    """PP-YOLO tiny's neck (ppdet PPYOLOTinyFPN): SPP on the deepest map, then per output a tiny
    block; 1x1 transitions (same width), nearest 2x, route concatenated first."""

    def __init__(self, feats: list[int], widths: tuple[int, int, int], cell: DarkNetConfig, spp: bool):
        super().__init__()
        self.spp = SPP(feats[0], feats[0], cell) if spp else None
        cins = [feats[0]] + [feats[i] + widths[i - 1] for i in (1, 2)]
        self.blocks = nn.ModuleList(TinyDetBlock(c, w, cell) for c, w in zip(cins, widths))
        self.transitions = nn.ModuleList(ConvBNLeaky(widths[i], widths[i], 1, 1, cell) for i in range(2))

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        tips, route = [], None
        for i, feat in enumerate(feats):
            if i == 0 and self.spp is not None:
                feat = self.spp(feat)
            if i > 0:
                feat = torch.cat([route, feat], dim=1)
            route, tip = self.blocks[i](feat)
            tips.append(tip)
            if i < len(feats) - 1:
                route = self.transitions[i](route).repeat_interleave(2, 2).repeat_interleave(2, 3)
        return tips


class PPYOLO(nn.Module):
    """Eval-mode PP-YOLO -> (ids, scores, boxes) (B, 100, 1|1|4), boxes in input pixels."""

    def __init__(self, cfg: PPYOLOConfig):
        super().__init__()
        self.cfg, y = cfg, cfg.yolo
        self.backbone = _Backbone(y)
        for s in cfg.dcn_stages:  # ResNet backbones
            for block in self.backbone.net.stages[s]:
                block.conv2 = ModulatedDeformConv2d.like(block.conv2)
        feats = self.backbone.out_channels()[::-1]  # deepest first
        widths = [512 // 2 ** i for i in range(3)]
        tips = [2 * w for w in widths]
        if cfg.neck == "pan":
            self.neck = PAN(feats, DarkNetConfig(bn_eps=y.bn_eps, act="mish"), cfg.spp)
        elif cfg.neck == "tiny":
            self.neck = TinyFPN(feats, cfg.tiny_widths, DarkNetConfig(bn_eps=y.bn_eps, leaky_slope=0.1), cfg.spp)
            tips = list(cfg.tiny_widths)
        else:
            cell = DarkNetConfig(bn_eps=y.bn_eps, leaky_slope=0.1)
            cins = [feats[0]] + [widths[i - 1] // 2 + feats[i] for i in (1, 2)]  # transition out ++ finer map
            self.yolo_blocks = nn.ModuleList(PPYOLODetBlock(c, w, cell, cfg.coord_conv, cfg.spp and i == 0)
                                             for i, (c, w) in enumerate(zip(cins, widths)))
            self.transitions = nn.ModuleList(ConvBNLeaky(widths[i], widths[i] // 2, 1, 1, cell) for i in range(2))
        extra = 0 if cfg.iou_aware_factor is None else 1
        self.yolo_outputs = nn.ModuleList(nn.Conv2d(c, len(m) * (5 + extra + y.num_classes), 1)
                                          for c, m in zip(tips, y.anchor_masks))
        self.decode = YOLOBox(y, cfg.post.conf_thresh)
        self.nms = MatrixNMS(cfg.post) if isinstance(cfg.post, MatrixNMSParams) else MultiClassNMS(cfg.post)
        self.box_out, self.score_out = Tap(), Tap()
        self.set_numerics(cfg.numerics)

    def set_numerics(self, name: str) -> None:
        if name not in GRIDS:
            raise ValueError(f"PP-YOLO numerics must be one of {GRIDS}, got {name!r}")
        self.numerics = name
        for m in self.modules():
            if isinstance(m, CoordConvBN):
                m.numerics = name

    def head(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Raw predictor maps, deepest first (with the IoU channels, if any)."""
        feats = self.backbone(x)[::-1]
        if self.cfg.neck in ("pan", "tiny"):
            return [output(tip) for output, tip in zip(self.yolo_outputs, self.neck(feats))]
        tips, route = [], None
        for i, feat in enumerate(feats):  # ppdet's order: the neck's tips, then the predictors
            if i > 0:
                feat = torch.cat([route, feat], dim=1)
            route, tip = self.yolo_blocks[i](feat)
            tips.append(tip)
            if i < len(feats) - 1:
                route = self.transitions[i](route).repeat_interleave(2, 2).repeat_interleave(2, 3)  # nearest 2x
        return [output(tip) for output, tip in zip(self.yolo_outputs, tips)]

    def forward(self, x: torch.Tensor):
        maps = self.head(x)
        f = self.cfg.iou_aware_factor
        if f is not None:
            maps = [iou_aware(m, len(mask), f) for m, mask in zip(maps, self.cfg.yolo.anchor_masks)]
        boxes, scores, keep = self.decode(maps, tuple(x.shape[-2:]))
        boxes, scores = self.box_out(boxes), self.score_out(scores)
        zero = torch.zeros((), dtype=boxes.dtype)  # yolo_box leaves boxes and scores 0 below conf_thresh
        return self.nms(torch.where(keep.unsqueeze(-1), boxes, zero), torch.where(keep.unsqueeze(1), scores, zero))
