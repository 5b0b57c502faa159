"""Detectron's model-zoo nets as torchvision detection models (FasterRCNN, MaskRCNN, KeypointRCNN,
RetinaNet) on ResNet/ResNeXt-FPN or ResNet-C4, with Detectron's legacy numerics as switches.

Pieces: torchvision's ResNet with FrozenBatchNorm2d (Detectron's AffineChannel = x * s + b; the
converter fills mean 0, var 1 - eps), MSRA ``stride_in_1x1`` as a variant (stride on each stage's
first 1x1 conv instead of the 3x3), BackboneWithFPN (1x1 laterals, nearest 2x top-down, 3x3
outputs; P6 = max_pool(1, 2) of P5 for R-CNN, P6/P7 convs on C5 for RetinaNet, as Detectron's
EXTRA_CONV_LEVELS), torchvision's RPN/RoIHeads/RetinaNet with the subclasses below.

Input contract: a BGR float image, already resized (Detectron: short side 800, long <= 1333, cv2
bilinear) and minus Detectron's pixel means (std 1). The channel swap is preprocessing (the
registry's Preprocess record), not folded into conv1, so conv1 holds the checkpoint's values. The
model's transform neither resizes nor normalises; it only pads to the coarsest stride (32; 128 for
RetinaNet) with zeros, as Detectron pads after mean subtraction.

``set_numerics("detectron")`` (default) / ``("torchvision")`` switches: +1 box widths and areas
(decode, clip to W - 1, NMS IoU, RPN min-size/centre filter, FPN level areas), Detectron's anchor
rounding, RoIAlign aligned=False with sampling ratio 2 (C4: 0, adaptive), keypoint heatmaps
upsampled by the checkpoint's own bilinear ConvTranspose (``kps_score``) rather than interpolate."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.detection import FasterRCNN, KeypointRCNN, MaskRCNN, RetinaNet
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.keypoint_rcnn import KeypointRCNNHeads, KeypointRCNNPredictor
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.models.detection.roi_heads import RoIHeads
from torchvision.models.detection.rpn import RegionProposalNetwork
from torchvision.models.detection.transform import GeneralizedRCNNTransform
from torchvision.models._utils import IntermediateLayerGetter
from torchvision.models.resnet import Bottleneck, ResNet
from torchvision.ops import FrozenBatchNorm2d, MultiScaleRoIAlign, roi_align
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool, LastLevelP6P7
from torchvision.ops.poolers import _convert_to_roi_format

from . import detectron_ops as ops

BODIES = {  # blocks per stage, groups, width per group, MSRA stride_in_1x1
    "R-50": ((3, 4, 6, 3), 1, 64, True),
    "R-101": ((3, 4, 23, 3), 1, 64, True),
    "X-101-32x8d": ((3, 4, 23, 3), 32, 8, False),
}


@dataclass(frozen=True)
class Numerics:
    plus_one: bool  # +1 widths/areas in decode, clip, NMS IoU, small-box filter, level mapping
    legacy_anchors: bool  # Detectron's generate_anchors rounding and (stride - 1) / 2 centres
    aligned: bool  # RoIAlign's half-pixel shift (Detectron: False)
    deconv_upsample: bool  # keypoint heatmaps by the checkpoint's bilinear ConvTranspose


NUMERICS = {"detectron": Numerics(True, True, False, True),
            "torchvision": Numerics(False, False, False, False)}


@dataclass(frozen=True)
class DetectronConfig:
    body: str  # key of BODIES
    head: str  # "faster" | "mask" | "keypoint" | "retinanet" | "classifier"
    fpn: bool = True
    num_classes: int = 81  # with background (Detectron's class 0); keypoint nets: 2
    num_keypoints: int = 17
    sampling_ratio: int = 2  # ROI_XFORM_SAMPLING_RATIO of the FPN configs (C4: 0)


# --------------------------------------------------------------------------- backbone

def resnet_body(body: str) -> ResNet:
    """torchvision's ResNet/ResNeXt with frozen BN; MSRA bodies move each stage's stride to the
    first block's 1x1 conv (Detectron's STRIDE_1X1), which changes the output, so it is a variant."""
    blocks, groups, width, stride_in_1x1 = BODIES[body]
    net = ResNet(Bottleneck, list(blocks), groups=groups, width_per_group=width, norm_layer=FrozenBatchNorm2d)
    if stride_in_1x1:
        for layer in (net.layer2, net.layer3, net.layer4):
            layer[0].conv1.stride, layer[0].conv2.stride = (2, 2), (1, 1)
    return net


class DetectronTransform(GeneralizedRCNNTransform):
    """No resize (preprocessing resized with cv2 as Detectron does) and no normalisation (done
    in preprocessing); batching pads to ``size_divisible`` with zeros."""

    def __init__(self, size_divisible: int):
        super().__init__(800, 1333, [0.0, 0.0, 0.0], [1.0, 1.0, 1.0], size_divisible=size_divisible)

    def normalize(self, image: torch.Tensor) -> torch.Tensor:
        return image

    def resize(self, image, target=None):
        return image, target


# --------------------------------------------------------------------------- legacy components

class DetectronAnchorGenerator(AnchorGenerator):
    """Cell anchors per level from (size, ratio) pairs in Detectron's order (RPN: ratio-major;
    RetinaNet: octave-major, ratio-minor), by Detectron's or torchvision's rounding rule."""

    def __init__(self, strides: list[int], cells: list[list[tuple[float, float]]], legacy: bool = True):
        super().__init__(tuple((c[0][0],) for c in cells), tuple((1.0,) for _ in cells))
        self.strides, self.cells = strides, cells
        self.set_legacy(legacy)

    def set_legacy(self, legacy: bool) -> None:
        self.legacy = legacy
        self.cell_anchors = [ops.cell_anchors(s, c, legacy) for s, c in zip(self.strides, self.cells)]

    def num_anchors_per_location(self) -> list[int]:
        return [len(c) for c in self.cells]

    def forward(self, image_list, feature_maps: list[torch.Tensor]) -> list[torch.Tensor]:
        """Anchors at the levels' fixed strides (torchvision infers image size // map size, which
        is 15, not 16, on an unpadded C4 input 1201 wide)."""
        device = feature_maps[0].device
        self.set_cell_anchors(feature_maps[0].dtype, device)
        strides = [[torch.tensor(s, dtype=torch.int64, device=device)] * 2 for s in self.strides]
        levels = self.grid_anchors([list(f.shape[-2:]) for f in feature_maps], strides)
        return [torch.cat(levels) for _ in image_list.image_sizes]


class DetectronRPN(RegionProposalNetwork):
    """``plus_one``: Detectron's proposal filter per level: clip to W - 1, keep w, h >= 1 (+1
    widths) with centres inside the image, NMS with +1 IoU. Detectron caps each level at
    post_nms_top_n and then keeps the overall top post_nms_top_n, which is the overall top-n here."""

    plus_one = True

    def filter_proposals(self, proposals, objectness, image_shapes, num_anchors_per_level):
        if not self.plus_one:
            return super().filter_proposals(proposals, objectness, image_shapes, num_anchors_per_level)
        n = proposals.shape[0]
        objectness = objectness.detach().reshape(n, -1)
        levels = torch.cat([torch.full((k,), i, dtype=torch.int64) for i, k in enumerate(num_anchors_per_level)])
        levels = levels.reshape(1, -1).expand_as(objectness)
        top = self._get_top_n_idx(objectness, num_anchors_per_level)
        rows = torch.arange(n)[:, None]
        probs, levels, proposals = torch.sigmoid(objectness[rows, top]), levels[rows, top], proposals[rows, top]
        out_boxes, out_scores = [], []
        for boxes, scores, lvl, (h, w) in zip(proposals, probs, levels, image_shapes):
            boxes = ops.clip_boxes(boxes, (h, w), True)
            ws, hs = boxes[:, 2] - boxes[:, 0] + 1, boxes[:, 3] - boxes[:, 1] + 1
            keep = (ws >= self.min_size) & (hs >= self.min_size) \
                & (boxes[:, 0] + ws / 2 < w) & (boxes[:, 1] + hs / 2 < h)
            boxes, scores, lvl = boxes[keep], scores[keep], lvl[keep]
            keep = ops.batched_nms(boxes, scores, lvl, self.nms_thresh, True)[: self.post_nms_top_n()]
            out_boxes.append(boxes[keep])
            out_scores.append(scores[keep])
        return out_boxes, out_scores


class DetectronRoIAlign(MultiScaleRoIAlign):
    """RoIAlign on FPN levels ``k_min``.. (strides 2^k) picked by ops.fpn_levels, or on one map of
    ``stride`` (C4); Detectron: aligned=False (a RoI is at least 1 x 1 bin-grid unit)."""

    def __init__(self, names: list[str], output_size: int, sampling_ratio: int, strides: list[int]):
        super().__init__(names, output_size, sampling_ratio)
        self.strides = strides
        self.plus_one, self.aligned = True, False

    def forward(self, x, boxes, image_shapes):
        feats = [x[k] for k in self.featmap_names]
        rois = _convert_to_roi_format(boxes)
        if len(feats) == 1:
            return roi_align(feats[0], rois, self.output_size, 1.0 / self.strides[0], self.sampling_ratio,
                             self.aligned)
        k_min = self.strides[0].bit_length() - 1
        levels = ops.fpn_levels(rois[:, 1:], k_min, k_min + len(feats) - 1, self.plus_one) - k_min
        out = rois.new_zeros((rois.shape[0], feats[0].shape[1], *self.output_size))
        for k, (feat, stride) in enumerate(zip(feats, self.strides)):
            pick = torch.where(levels == k)[0]
            out[pick] = roi_align(feat, rois[pick], self.output_size, 1.0 / stride, self.sampling_ratio,
                                  self.aligned).to(out.dtype)
        return out


class DetectronRoIHeads(RoIHeads):
    """``plus_one``: Detectron's test-time box post-processing (decode with +1 widths by the box
    coder, clip to W - 1, no small-box removal, per-class NMS with +1 IoU, top detections)."""

    plus_one = True

    def postprocess_detections(self, class_logits, box_regression, proposals, image_shapes):
        if not self.plus_one:
            return super().postprocess_detections(class_logits, box_regression, proposals, image_shapes)
        counts = [len(p) for p in proposals]
        boxes_all = self.box_coder.decode(box_regression, proposals).split(counts)
        scores_all = F.softmax(class_logits, -1).split(counts)
        out = ([], [], [])
        for boxes, scores, hw in zip(boxes_all, scores_all, image_shapes):
            boxes = ops.clip_boxes(boxes, hw, True)[:, 1:].reshape(-1, 4)
            labels = torch.arange(1, scores.shape[1]).expand(scores.shape[0], -1).reshape(-1)
            scores = scores[:, 1:].reshape(-1)
            keep = torch.where(scores > self.score_thresh)[0]
            boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
            keep = ops.batched_nms(boxes, scores, labels, self.nms_thresh, True)[: self.detections_per_img]
            for acc, v in zip(out, (boxes, scores, labels)):
                acc.append(v[keep])
        return out


class DetectronKeypointPredictor(KeypointRCNNPredictor):
    """KeypointRCNNPredictor plus Detectron's ``kps_score``: the fixed bilinear ConvTranspose (k 4,
    stride 2, pad 1) its checkpoints store; ``deconv_upsample`` False: torchvision's interpolate."""

    def __init__(self, in_channels: int, num_keypoints: int):
        super().__init__(in_channels, num_keypoints)
        self.kps_score = nn.ConvTranspose2d(num_keypoints, num_keypoints, 4, stride=2, padding=1)
        self.deconv_upsample = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.kps_score_lowres(x)
        if self.deconv_upsample:
            return self.kps_score(x)
        return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False, recompute_scale_factor=False)


# --------------------------------------------------------------------------- the nets

class _Switches:
    """``set_numerics``: flip every legacy switch of the model together (see NUMERICS)."""

    numerics = "detectron"

    def set_numerics(self, name: str) -> None:
        if name not in NUMERICS:
            raise ValueError(f"unknown numerics {name!r} (use {', '.join(NUMERICS)})")
        n, self.numerics = NUMERICS[name], name
        for m in self.modules():
            if isinstance(m, (DetectronRPN, DetectronRoIHeads, DetectronRoIAlign, ops.DetectronBoxCoder)):
                m.plus_one = n.plus_one
            if isinstance(m, DetectronRoIAlign):
                m.aligned = n.aligned
            if isinstance(m, DetectronAnchorGenerator):
                m.set_legacy(n.legacy_anchors)
            if isinstance(m, DetectronKeypointPredictor):
                m.deconv_upsample = n.deconv_upsample
        for m in (getattr(self, "rpn", None), getattr(self, "roi_heads", None)):
            if m is not None:
                m.box_coder.plus_one = n.plus_one  # BoxCoder is not an nn.Module
        if isinstance(self, RetinaNet):
            self.box_coder.plus_one = n.plus_one


class DetectronFasterRCNN(_Switches, FasterRCNN):
    pass


class DetectronMaskRCNN(_Switches, MaskRCNN):
    pass


class DetectronKeypointRCNN(_Switches, KeypointRCNN):
    pass


class DetectronRetinaNet(_Switches, RetinaNet):
    """``plus_one``: Detectron's test_retinanet: per level, probabilities above 0.05 (0.0 on the
    coarsest level, so a small image still yields candidates), top 1000, decode with +1 widths
    (weights 1), clip to W - 1; per-class NMS with +1 IoU over all levels; top 100."""

    def postprocess_detections(self, head_outputs, anchors, image_sizes):
        """Labels are Detectron's class indices 1..80 in both numerics (torchvision's RetinaNet
        counts from 0), as the R-CNNs' (background 0) are."""
        if not self.box_coder.plus_one:
            out = super().postprocess_detections(head_outputs, anchors, image_sizes)
            return [{**d, "labels": d["labels"] + 1} for d in out]
        k = head_outputs["cls_logits"][0].shape[-1]
        out = []
        for i, hw in enumerate(image_sizes):
            boxes, scores, labels = [], [], []
            levels = list(zip(head_outputs["bbox_regression"], head_outputs["cls_logits"], anchors[i]))
            for lvl, (reg, logit, anc) in enumerate(levels):
                prob = torch.sigmoid(logit[i]).flatten()
                th = self.score_thresh if lvl < len(levels) - 1 else 0.0
                cand = torch.where(prob > th)[0]
                top = torch.topk(prob[cand], min(self.topk_candidates, cand.numel())).indices
                idx, p = cand[top], prob[cand[top]]
                a = torch.div(idx, k, rounding_mode="floor")
                b = self.box_coder.decode_single(reg[i][a], anc[a])
                boxes.append(ops.clip_boxes(b, hw, True))
                scores.append(p)
                labels.append(idx % k + 1)
            b, s, lab = torch.cat(boxes), torch.cat(scores), torch.cat(labels)
            keep = ops.batched_nms(b, s, lab, self.nms_thresh, True)[: self.detections_per_img]
            out.append({"boxes": b[keep], "scores": s[keep], "labels": lab[keep]})
        return out


class C4Head(nn.Module):
    """Detectron's ResNet C4 box head: res5 on 14 x 14 RoI features (first block strided), then
    a 7 x 7 average pool: [N, 2048]."""

    def __init__(self, layer4: nn.Module):
        super().__init__()
        self.res5 = layer4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(self.res5(x), 7).flatten(1)


def _rpn_cells(sizes, ratios=(0.5, 1.0, 2.0)) -> list[tuple[float, float]]:
    return [(s, r) for r in ratios for s in sizes]  # generate_anchors: ratio-major, size-minor


def _common_rcnn(cfg: DetectronConfig) -> dict:
    return dict(rpn_pre_nms_top_n_test=1000 if cfg.fpn else 6000, rpn_post_nms_top_n_test=1000,
                rpn_nms_thresh=0.7, box_score_thresh=0.05, box_nms_thresh=0.5, box_detections_per_img=100,
                box_batch_size_per_image=512, image_mean=[0.0] * 3, image_std=[1.0] * 3)


def _fpn_backbone(body: ResNet, levels: tuple[int, ...], extra: nn.Module) -> BackboneWithFPN:
    names = {f"layer{s - 1}": str(i) for i, s in enumerate(levels)}
    return BackboneWithFPN(body, names, [256 * 2 ** (s - 2) for s in levels], 256, extra_blocks=extra)


class _C4Backbone(nn.Module):
    """conv1 .. res4 of the body (stride 16, 1024 channels): what C4's RPN and RoIAlign see."""

    def __init__(self, body: ResNet):
        super().__init__()
        self.body = IntermediateLayerGetter(body, {"layer3": "0"})  # stops after layer3
        self.out_channels = 1024

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.body(x)


def build(cfg: DetectronConfig) -> nn.Module:
    body = resnet_body(cfg.body)
    if cfg.head == "classifier":
        body.fc = nn.Linear(2048, 1000)
        return body.eval()
    if cfg.head == "retinanet":
        return _retinanet(cfg, body).eval()
    kw = _common_rcnn(cfg)
    if cfg.fpn:
        backbone = _fpn_backbone(body, (2, 3, 4, 5), LastLevelMaxPool())
        strides, cells = [4, 8, 16, 32, 64], [_rpn_cells((32 * 2 ** i,)) for i in range(5)]
        pool = DetectronRoIAlign(["0", "1", "2", "3"], 7, cfg.sampling_ratio, [4, 8, 16, 32])
        head, dim = TwoMLPHead(256 * 7 * 7, 1024), 1024
    else:
        backbone = _C4Backbone(body)
        strides, cells = [16], [_rpn_cells((32, 64, 128, 256, 512))]
        pool = DetectronRoIAlign(["0"], 14, cfg.sampling_ratio, [16])
        head, dim = C4Head(body.layer4), 2048
    anchors = DetectronAnchorGenerator(strides, cells)
    common = dict(rpn_anchor_generator=anchors, box_roi_pool=pool, box_head=head,
                  box_predictor=FastRCNNPredictor(dim, cfg.num_classes), **kw)
    if cfg.head == "faster":
        model = DetectronFasterRCNN(backbone, None, **common)
    elif cfg.head == "mask":
        model = DetectronMaskRCNN(backbone, None, **common,
                                  mask_roi_pool=DetectronRoIAlign(["0", "1", "2", "3"], 14, cfg.sampling_ratio, [4, 8, 16, 32]),
                                  mask_head=MaskRCNNHeads(256, [256] * 4, 1),
                                  mask_predictor=MaskRCNNPredictor(256, 256, cfg.num_classes))
    elif cfg.head == "keypoint":
        model = DetectronKeypointRCNN(backbone, None, **common,
                                      keypoint_roi_pool=DetectronRoIAlign(["0", "1", "2", "3"], 14, cfg.sampling_ratio, [4, 8, 16, 32]),
                                      keypoint_head=KeypointRCNNHeads(256, [512] * 8),
                                      keypoint_predictor=DetectronKeypointPredictor(512, cfg.num_keypoints))
    else:
        raise ValueError(f"unknown Detectron head {cfg.head!r}")
    _legacy_parts(model, size_divisible=32 if cfg.fpn else 1)  # C4: Detectron pads only FPN inputs
    return model.eval()


def _legacy_parts(model: nn.Module, size_divisible: int) -> None:
    """Swap torchvision's transform, RPN, RoIHeads and box coders for the Detectron subclasses
    (same state: the subclasses add no parameters, only switchable behaviour)."""
    model.transform = DetectronTransform(size_divisible)
    if hasattr(model, "rpn"):
        model.rpn.__class__ = DetectronRPN
        model.rpn.box_coder = ops.DetectronBoxCoder((1.0, 1.0, 1.0, 1.0))
        model.rpn.min_size = 0.0  # cfg.TEST.RPN_MIN_SIZE
        model.roi_heads.__class__ = DetectronRoIHeads
        model.roi_heads.box_coder = ops.DetectronBoxCoder((10.0, 10.0, 5.0, 5.0))


def _retinanet(cfg: DetectronConfig, body: ResNet) -> nn.Module:
    """Detectron RetinaNet: FPN on res3..res5, P6 = conv(C5), P7 = conv(relu(P6)); 9 anchors per
    place (3 octaves x ratios (1, 2, 0.5), octave-major), anchor scale 4; sigmoid over 80 classes."""
    backbone = _fpn_backbone(body, (3, 4, 5), LastLevelP6P7(2048, 256))
    cells = [[(4 * 2 ** k * 2 ** (o / 3), r) for o in range(3) for r in (1.0, 2.0, 0.5)] for k in range(3, 8)]
    anchors = DetectronAnchorGenerator([2 ** k for k in range(3, 8)], cells)
    model = DetectronRetinaNet(backbone, cfg.num_classes - 1, anchor_generator=anchors, score_thresh=0.05,
                               nms_thresh=0.5, detections_per_img=100, topk_candidates=1000,
                               image_mean=[0.0] * 3, image_std=[1.0] * 3)
    model.transform = DetectronTransform(128)  # cfg.FPN.COARSEST_STRIDE
    model.box_coder = ops.DetectronBoxCoder((1.0, 1.0, 1.0, 1.0))
    return model
