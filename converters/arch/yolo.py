"""YOLOv3 (Redmon & Farhadi) on a DarkNet-53 or MobileNet v1 backbone, with gluoncv's numerics:
three outputs (strides 32, 16, 8, deepest first), sigmoid centres plus grid offsets, exp(w, h) times
pixel anchors, objectness times per-class sigmoid, one row per (class, cell, anchor), MXNet box_nms.

Grid offsets are precomputed for ``alloc_size`` cells and sliced per input, as gluoncv does, so one
module serves every input size up to ``alloc_size * stride`` of its finest output."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .darknet import ConvBNLeaky, DarkNet, DarkNetConfig
from .mobilenet import MobileNet, MobileNetConfig
from .nms import DetectionNMS

# gluoncv's anchors (w, h in input pixels) for the stride-8, -16 and -32 outputs
ANCHORS = ((10, 13, 16, 30, 33, 23), (30, 61, 62, 45, 59, 119), (116, 90, 156, 198, 373, 326))


@dataclass(frozen=True)
class YOLOConfig:
    backbone: DarkNetConfig | MobileNetConfig
    # backbone body modules (DarkNet stages / MobileNet blocks) run before the stride-8, -16 and
    # -32 feature maps are taken
    cuts: tuple[int, int, int]
    num_classes: int
    channels: tuple[int, int, int] = (512, 256, 128)  # detection block widths, deepest output first
    anchors: tuple[tuple[float, ...], ...] = ANCHORS  # per stride, shallowest first
    strides: tuple[int, int, int] = (8, 16, 32)
    alloc_size: tuple[int, int] = (128, 128)  # grid cells (rows, cols) the offsets are built for
    head_bn_eps: float = 1e-5  # gluoncv's _conv2d cell: BatchNorm(epsilon=1e-5), LeakyReLU(0.1)
    leaky_slope: float = 0.1
    valid_thresh: float = 0.01  # box_nms's score filter
    nms_thresh: float = 0.45
    nms_topk: int = 400
    post_nms: int = 100

    @property
    def max_input(self) -> tuple[int, int]:
        """Largest input (H, W) whose finest grid fits the allocated offsets (stride-2 convs with
        padding 1 give ceil(H / stride) cells)."""
        s = min(self.strides)
        return self.alloc_size[0] * s, self.alloc_size[1] * s


def grid_offsets(rows: int, cols: int) -> torch.Tensor:
    """(rows, cols, 2) cell offsets: [..., 0] is the column (x), [..., 1] the row (y)."""
    y, x = torch.meshgrid(torch.arange(rows, dtype=torch.float32), torch.arange(cols, dtype=torch.float32),
                          indexing="ij")
    return torch.stack([x, y], dim=-1)


class DetectionBlock(nn.Module):
    """Five conv cells alternating 1x1 (``channels``) and 3x3 (2x), then a 3x3 ``tip``; returns
    (route, tip): the route feeds the next, finer output, the tip this output's predictor."""

    def __init__(self, cin: int, channels: int, cell: DarkNetConfig):
        super().__init__()
        widths = [channels, 2 * channels] * 2 + [channels]
        self.body = nn.Sequential(*(ConvBNLeaky(i, o, 1 if o == channels else 3, 1, cell)
                                    for i, o in zip([cin] + widths[:-1], widths)))
        self.tip = ConvBNLeaky(channels, 2 * channels, 3, 1, cell)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        route = self.body(x)
        return route, self.tip(route)


class YOLOOutput(nn.Module):
    """1x1 predictor conv and decoding -> this output's pre-NMS rows (B, C*H*W*A, 6) =
    [class id, score, x1, y1, x2, y2], class-major, then cell (row-major), then anchor."""

    def __init__(self, cin: int, num_classes: int, anchors: tuple[float, ...], stride: int,
                 alloc_size: tuple[int, int]):
        super().__init__()
        self.num_classes, self.stride = num_classes, stride
        self.num_anchors = len(anchors) // 2
        self.prediction = nn.Conv2d(cin, self.num_anchors * (5 + num_classes), 1)
        # buffers, filled from the checkpoint: gluoncv saves both as constants
        self.register_buffer("anchors", torch.tensor(anchors, dtype=torch.float32).reshape(-1, 2))
        self.register_buffer("offsets", grid_offsets(*alloc_size))
        self.box_decoder = BoxDecoder(stride)
        self.score_decoder = ScoreDecoder()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        rows, cols = self.offsets.shape[:2]
        if h > rows or w > cols:
            raise ValueError(f"the stride-{self.stride} grid is {h}x{w} cells but offsets are allocated "
                             f"for {rows}x{cols} (alloc_size): the input is too large for this module")
        # (B, A*P, H, W) -> (B, H*W, A, P): channel index = anchor * P + field, as gluoncv reshapes
        pred = self.prediction(x).reshape(b, -1, h * w).transpose(1, 2).reshape(b, h * w, self.num_anchors, -1)
        boxes = self.box_decoder(pred[..., :4], self.offsets[:h, :w].reshape(1, h * w, 1, 2), self.anchors)
        scores = self.score_decoder(pred[..., 4:])
        return per_class_rows(scores, boxes)


class BoxDecoder(nn.Module):
    """Raw (tx, ty, tw, th) -> corner boxes in input pixels, in gluoncv's operation order:
    centre = (sigmoid(t_xy) + offset) * stride, half size = exp(t_wh) * anchor / 2."""

    def __init__(self, stride: int):
        super().__init__()
        self.stride = stride

    def forward(self, raw: torch.Tensor, offsets: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
        centre = (torch.sigmoid(raw[..., :2]) + offsets) * self.stride
        half = torch.exp(raw[..., 2:]) * anchors / 2.0
        return torch.cat([centre - half, centre + half], dim=-1)


class ScoreDecoder(nn.Module):
    """Raw (objectness, class logits) -> class scores sigmoid(class) * sigmoid(objectness)."""

    def forward(self, raw: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(raw[..., 1:]) * torch.sigmoid(raw[..., :1])


def per_class_rows(scores: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """(B, N, A, C) scores and (B, N, A, 4) boxes -> (B, C*N*A, 6) rows, class-major: every
    class gets a copy of every box, as gluoncv tiles them before box_nms."""
    b, n, a, c = scores.shape
    ids = torch.arange(c, dtype=scores.dtype, device=scores.device).reshape(1, c, 1, 1, 1).expand(b, c, n, a, 1)
    rows = torch.cat([ids, scores.permute(0, 3, 1, 2).unsqueeze(-1), boxes.unsqueeze(1).expand(b, c, n, a, 4)], -1)
    return rows.reshape(b, -1, 6)


def _backbone(cfg: YOLOConfig) -> tuple[nn.Module, str]:
    """The classifier minus its pool and classifier, and the name of its body sequence."""
    if isinstance(cfg.backbone, DarkNetConfig):
        net, body = DarkNet(cfg.backbone), "stages"
    elif isinstance(cfg.backbone, MobileNetConfig) and cfg.backbone.version == 1:
        net, body = MobileNet(cfg.backbone), "blocks"
    else:
        raise ValueError(f"unsupported YOLOv3 backbone {cfg.backbone!r}")
    del net.pool, net.fc  # the detector uses the features only
    return net, body


def _out_channels(module: nn.Module) -> int:
    return [m for m in module.modules() if isinstance(m, nn.Conv2d)][-1].out_channels


class YOLOv3(nn.Module):
    """Eval-mode YOLOv3 returning gluoncv's ``(ids, scores, bboxes)``: (B, post_nms, 1|1|4), -1
    padded, boxes in input pixels."""

    def __init__(self, cfg: YOLOConfig):
        super().__init__()
        self.cfg = cfg
        self.backbone, self._body = _backbone(cfg)
        body = getattr(self.backbone, self._body)
        feats = [_out_channels(body[c - 1]) for c in cfg.cuts][::-1]  # deepest first
        cell = DarkNetConfig(bn_eps=cfg.head_bn_eps, leaky_slope=cfg.leaky_slope)
        ch = cfg.channels
        cins = [feats[0]] + [ch[i] + feats[i] for i in (1, 2)]  # transition of the route ++ finer map
        self.yolo_blocks = nn.ModuleList(DetectionBlock(c, w, cell) for c, w in zip(cins, ch))
        self.transitions = nn.ModuleList(ConvBNLeaky(ch[i], ch[i + 1], 1, 1, cell) for i in range(2))
        self.yolo_outputs = nn.ModuleList(
            YOLOOutput(2 * w, cfg.num_classes, a, s, cfg.alloc_size)
            for w, a, s in zip(ch, cfg.anchors[::-1], cfg.strides[::-1]))
        self.nms = DetectionNMS(cfg.nms_thresh, cfg.valid_thresh, cfg.nms_topk, cfg.post_nms)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Backbone maps at strides 8, 16, 32."""
        x, out, start = self.backbone.stem(x), [], 0
        body = getattr(self.backbone, self._body)
        for cut in self.cfg.cuts:
            x = body[start:cut](x)
            out.append(x)
            start = cut
        return out

    def check_size(self, x: torch.Tensor) -> None:
        h, w = x.shape[-2:]
        mh, mw = self.cfg.max_input
        if h > mh or w > mw:
            raise ValueError(f"input {h}x{w} exceeds this YOLOv3's maximum {mh}x{mw}: grid offsets are "
                             f"allocated for {self.cfg.alloc_size[0]}x{self.cfg.alloc_size[1]} cells "
                             f"at stride {min(self.cfg.strides)} (gluoncv's alloc_size)")

    def head(self, x: torch.Tensor) -> torch.Tensor:
        """Pre-NMS rows (B, N, 6) of the three outputs, deepest first (gluoncv's order)."""
        self.check_size(x)
        routes = self.features(x)[::-1]
        x, rows = routes[0], []
        for i, (block, output) in enumerate(zip(self.yolo_blocks, self.yolo_outputs)):
            x, tip = block(x)
            rows.append(output(tip))
            if i + 1 < len(routes):
                up = self.transitions[i](x).repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)
                finer = routes[i + 1]
                x = torch.cat([up[..., : finer.shape[2], : finer.shape[3]], finer], dim=1)
        return torch.cat(rows, dim=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.nms(self.head(x))
