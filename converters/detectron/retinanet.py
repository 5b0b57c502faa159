"""Detectron's RetinaNet (ResNet/ResNeXt-FPN, 1x) -> torchvision's RetinaNet.

``retnet_cls_pred_fpn3`` has 9 x 80 outputs, anchor-major then class (test_retinanet reshapes it
(A, C)), torchvision's RetinaNetClassificationHead reads (A, K) the same way; the anchor order
(3 octaves, each with ratios (1, 2, 0.5)) is made by the anchor generator, so no value changes.
Heads exist only for P3 (``*_fpn3``; P4-P7 share them), like torchvision's shared heads.
Labels are Detectron's class indices 1..80 (torchvision's RetinaNet counts from 0)."""
from __future__ import annotations

import functools

from ..arch.detectron import DetectronConfig, build
from ..registry import Metric, ModelSpec, register
from ._rules import AFFINE_DEFAULTS, IGNORES, body_rules, conv, fpn_rules
from .common import CONFIGS, DETECTRON_PREPROCESS, NOTES, detectron_weights


def rules(cfg: DetectronConfig) -> list:
    out = [*IGNORES, *body_rules(cfg.body, "backbone.body."), *fpn_rules(cfg.body, (3, 4, 5)),
           *conv("fpn_6", "backbone.fpn.extra_blocks.p6", "P6: 3x3 stride-2 conv on C5 (EXTRA_CONV_LEVELS)"),
           *conv("fpn_7", "backbone.fpn.extra_blocks.p7", "P7: 3x3 stride-2 conv on relu(P6)")]
    for branch, head in (("cls", "classification_head"), ("bbox", "regression_head")):
        for n in range(4):
            out += conv(f"retnet_{branch}_conv_n{n}_fpn3", f"head.{head}.conv.{n}.0",
                        f"{branch} tower 3x3 conv {n} (shared by P3-P7)")
    out += conv("retnet_cls_pred_fpn3", "head.classification_head.cls_logits", "class logits, (A, 80), sigmoid")
    out += conv("retnet_bbox_pred_fpn3", "head.regression_head.bbox_reg", "class-agnostic deltas, (A, 4)")
    return out


MODELS = (
    ("retinanet_R-50-FPN_1x", "R-50", "36768636/12_2017_baselines/retinanet_R-50-FPN_1x.yaml.08_29_48.t4zc9clc", 35.7),
    ("retinanet_R-101-FPN_1x", "R-101", "36768744/12_2017_baselines/retinanet_R-101-FPN_1x.yaml.08_31_38.5poQe1ZB", 37.7),
    ("retinanet_X-101-32x8d-FPN_1x", "X-101-32x8d",
     "36769563/12_2017_baselines/retinanet_X-101-32x8d-FPN_1x.yaml.08_42_05.06JTK6vJ", 39.5),
)

for _name, _body, _path, _ap in MODELS:
    _cfg = DetectronConfig(_body, "retinanet")
    CONFIGS[_name] = _cfg
    register(ModelSpec(
        name=_name, family="detectron.retinanet", framework="detectron", task="detection",
        source_format="detectron-pkl", build=functools.partial(build, _cfg), rules={"detectron": rules(_cfg)},
        defaults=AFFINE_DEFAULTS, preprocess=DETECTRON_PREPROCESS,
        weights=functools.partial(detectron_weights, _name, f"{_path}/output/train/coco_2014_train%3A"
                                  "coco_2014_valminusminival/retinanet/model_final.pkl"),
        source_model=_name, metrics=(Metric("box AP", _ap, "COCO val2017 (= coco_2014_minival)", "Detectron MODEL_ZOO.md"),),
        notes=NOTES, numerics={"detectron": "detectron"}, slow=_body != "R-50"))
