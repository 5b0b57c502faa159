"""Detectron's end-to-end R-CNNs (Faster, Mask, Keypoint; ResNet/ResNeXt FPN and ResNet-50 C4)
-> torchvision's FasterRCNN / MaskRCNN / KeypointRCNN (converters.arch.detectron).

Class-indexed tensors need no value change, checked: Detectron's ``cls_score`` has the background
at class 0 and ``bbox_pred`` 4 rows per class including the background, class-major, as
torchvision's FastRCNNPredictor; ``mask_fcn_logits`` is class-specific with the background at 0,
as maskrcnn_inference indexes it; ``kps_score_lowres``/``kps_score`` are ConvTranspose weights
(in, out, k, k), torch's layout. The FPN RPN's blobs exist only for P2 (``*_fpn2``; levels 3-6
share them), torchvision's RPNHead is shared too."""
from __future__ import annotations

import functools

from ..arch.detectron import DetectronConfig, build
from ..registry import Metric, ModelSpec, register
from ._rules import AFFINE_DEFAULTS, IGNORES, body_rules, conv, fpn_rules
from .common import CONFIGS, DETECTRON_PREPROCESS, NOTES, detectron_weights

MASK_HEAD = [r for n in range(1, 5) for r in conv(rf"_\[mask\]_fcn{n}", f"roi_heads.mask_head.{n - 1}.0",
                                                   f"mask head 3x3 conv {n}")]
MASK_HEAD += conv("conv5_mask", "roi_heads.mask_predictor.conv5_mask", "mask 2x ConvTranspose (in, out, k, k)")
MASK_HEAD += conv("mask_fcn_logits", "roi_heads.mask_predictor.mask_fcn_logits", "class-specific mask logits, background 0")
KEYPOINT_HEAD = [r for n in range(1, 9) for r in conv(f"conv_fcn{n}", f"roi_heads.keypoint_head.{2 * (n - 1)}",
                                                      f"keypoint head 3x3 conv {n}")]
KEYPOINT_HEAD += conv("kps_score_lowres", "roi_heads.keypoint_predictor.kps_score_lowres",
                      "keypoint heatmap ConvTranspose (in, out, k, k)")
KEYPOINT_HEAD += conv("kps_score", "roi_heads.keypoint_predictor.kps_score",
                      "Detectron's fixed bilinear 2x ConvTranspose (BilinearInterpolation), saved as a param")


def rules(cfg: DetectronConfig) -> list:
    if cfg.fpn:
        rpn = [*conv("conv_rpn_fpn2", "rpn.head.conv.0.0", "RPN 3x3 conv (shared by P2-P6)"),
               *conv("rpn_cls_logits_fpn2", "rpn.head.cls_logits", "RPN objectness logits (A = 3, sigmoid)"),
               *conv("rpn_bbox_pred_fpn2", "rpn.head.bbox_pred", "RPN deltas, anchor-major (4A)")]
        head = [*conv("fc6", "roi_heads.box_head.fc6", "2-MLP head fc6 (out, in)"),
                *conv("fc7", "roi_heads.box_head.fc7", "2-MLP head fc7 (out, in)")]
        body = body_rules(cfg.body, "backbone.body.") + fpn_rules(cfg.body, (2, 3, 4, 5))
    else:
        rpn = [*conv("conv_rpn", "rpn.head.conv.0.0", "RPN 3x3 conv on res4"),
               *conv("rpn_cls_logits", "rpn.head.cls_logits", "RPN objectness logits (A = 15, sigmoid)"),
               *conv("rpn_bbox_pred", "rpn.head.bbox_pred", "RPN deltas, anchor-major (4A)")]
        head = []
        body = body_rules(cfg.body, "backbone.body.", res5="roi_heads.box_head.res5.")
    out = [*IGNORES, *body, *rpn, *head,
           *conv("cls_score", "roi_heads.box_predictor.cls_score", "class scores, background at 0 (both)"),
           *conv("bbox_pred", "roi_heads.box_predictor.bbox_pred", "class box deltas, 4 per class incl. background")]
    return out + (MASK_HEAD if cfg.head == "mask" else KEYPOINT_HEAD if cfg.head == "keypoint" else [])


# (config name, head, body, fpn, model id path, metrics)
MODELS = (
    ("e2e_faster_rcnn_R-50-FPN_1x", "faster", "R-50", True,
     "35857345/12_2017_baselines/e2e_faster_rcnn_R-50-FPN_1x.yaml.01_36_30.cUF7QR7I", {"box AP": 36.7}),
    ("e2e_faster_rcnn_R-101-FPN_1x", "faster", "R-101", True,
     "35857890/12_2017_baselines/e2e_faster_rcnn_R-101-FPN_1x.yaml.01_38_50.sNxI7sX7", {"box AP": 39.4}),
    ("e2e_faster_rcnn_X-101-32x8d-FPN_1x", "faster", "X-101-32x8d", True,
     "36761737/12_2017_baselines/e2e_faster_rcnn_X-101-32x8d-FPN_1x.yaml.06_31_39.5MIHi1fZ", {"box AP": 41.3}),
    ("e2e_faster_rcnn_R-50-C4_1x", "faster", "R-50", False,
     "35857197/12_2017_baselines/e2e_faster_rcnn_R-50-C4_1x.yaml.01_33_49.iAX0mXvW", {"box AP": 34.8}),
    ("e2e_mask_rcnn_R-50-FPN_1x", "mask", "R-50", True,
     "35858933/12_2017_baselines/e2e_mask_rcnn_R-50-FPN_1x.yaml.01_48_14.DzEQe4wC", {"box AP": 37.7, "mask AP": 33.9}),
    ("e2e_mask_rcnn_R-101-FPN_1x", "mask", "R-101", True,
     "35861795/12_2017_baselines/e2e_mask_rcnn_R-101-FPN_1x.yaml.02_31_37.KqyEK4tT", {"box AP": 40.0, "mask AP": 35.9}),
    ("e2e_mask_rcnn_X-101-32x8d-FPN_1x", "mask", "X-101-32x8d", True,
     "36761843/12_2017_baselines/e2e_mask_rcnn_X-101-32x8d-FPN_1x.yaml.06_35_59.RZotkLKI", {"box AP": 42.1, "mask AP": 37.3}),
    ("e2e_keypoint_rcnn_R-50-FPN_1x", "keypoint", "R-50", True,
     "37697547/12_2017_baselines/e2e_keypoint_rcnn_R-50-FPN_1x.yaml.08_42_54.kdzV35ao", {"box AP": 53.6, "keypoint AP": 64.2}),
    ("e2e_keypoint_rcnn_R-101-FPN_1x", "keypoint", "R-101", True,
     "37697946/12_2017_baselines/e2e_keypoint_rcnn_R-101-FPN_1x.yaml.08_45_06.Y14KqbST", {"box AP": 54.5, "keypoint AP": 64.8}),
    ("e2e_keypoint_rcnn_X-101-32x8d-FPN_1x", "keypoint", "X-101-32x8d", True,
     "37792158/12_2017_baselines/e2e_keypoint_rcnn_X-101-32x8d-FPN_1x.yaml.16_54_16.LgZeo40k", {"box AP": 56.0, "keypoint AP": 66.0}),
)


def config(head: str, body: str, fpn: bool) -> DetectronConfig:
    return DetectronConfig(body, head, fpn=fpn, num_classes=2 if head == "keypoint" else 81,
                           sampling_ratio=2 if fpn else 0)  # C4 configs keep the default 0 (adaptive)


for _name, _head, _body, _fpn, _path, _metrics in MODELS:
    _cfg = config(_head, _body, _fpn)
    _data = "keypoints_coco_2014_train%3Akeypoints_coco_2014_valminusminival" if _head == "keypoint" \
        else "coco_2014_train%3Acoco_2014_valminusminival"
    CONFIGS[_name] = _cfg
    register(ModelSpec(
        name=_name, family="detectron.rcnn", framework="detectron", task="detection", source_format="detectron-pkl",
        build=functools.partial(build, _cfg), rules={"detectron": rules(_cfg)}, defaults=AFFINE_DEFAULTS,
        preprocess=DETECTRON_PREPROCESS,
        weights=functools.partial(detectron_weights, _name, f"{_path}/output/train/{_data}/generalized_rcnn/model_final.pkl"),
        source_model=_name,
        metrics=tuple(Metric(k, v, "COCO val2017 (= coco_2014_minival)", "Detectron MODEL_ZOO.md")
                      for k, v in _metrics.items()),
        notes=NOTES, numerics={"detectron": "detectron"}, slow=_body != "R-50"))
