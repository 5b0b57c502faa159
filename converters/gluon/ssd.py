"""gluoncv SSD-512 on ResNet-50 v1 (VOC) -> converters.arch.ssd.SSD.

gluoncv wraps the backbone and the extra layers in one SymbolBlock (``features``), so their saved
names are symbol names (``features.resnetv10_stage1_conv0_weight``); heads keep structural names."""
from __future__ import annotations

import functools

import numpy as np
from torch import nn

from ..arch.ssd import SSD, SSDConfig
from ..fixups import Fixup
from ..registry import Metric, ModelSpec, Preprocess, register
from ..rules import Ignore, Rule, bn_rules
from ..sources import gluoncv_weights
from .resnet import BN_DEFAULTS, V1_50, symbol_rules

VOC_CLASSES = ("aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
               "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
               "train", "tvmonitor")

SSD512_R50 = SSDConfig(
    backbone=V1_50, feature_stages=(3, 4), extra_filters=(512, 512, 256, 256),
    sizes=(51.2, 102.4, 189.4, 276.4, 363.52, 450.6, 492),
    ratios=((1, 2, 0.5),) + ((1, 2, 0.5, 3, 1.0 / 3),) * 3 + ((1, 2, 0.5),) * 2,
    steps=(16, 32, 64, 128, 256, 512), num_classes=len(VOC_CLASSES))

# gluoncv's SSDDefaultValTransform: stretch to 512x512 with mx.image.imresize(interp=9).
SSD_EVAL = Preprocess("ssd", (512, 512), "exact", interp="mxnet-9", crop="none")

# The extra layers are raw mx.sym.BatchNorm nodes with no attributes, so MXNet's op defaults hold:
# eps=1e-3 (set in the target module) and fix_gamma=True (gamma is read as 1, whatever is stored).
FIX_GAMMA = Fixup("mxnet_fix_gamma", (nn.BatchNorm2d,), "weight", lambda a: np.ones_like(a),
                  "mx.sym.BatchNorm defaults to fix_gamma=True: the stored gamma is ignored (read as 1)",
                  where=r"^extras\.\d+\.(trans_)?bn$")


ANCHOR_WHY = "constant anchors; the target regenerates them (equality with gluoncv tested)"


def _extra_rules(feat: str) -> list[Rule]:
    """The four extra stride-2 blocks; ``feat`` is the layout's regex prefix."""
    rules: list[Rule] = []
    for conv, bn, tgt in (("expand_trans_conv", "expand_trans_bn", "trans_"), ("expand_conv", "expand_bn", "")):
        rules.append(Rule(rf"^{feat}{conv}(\d+)_weight$", rf"extras.\1.{tgt}conv.weight",
                          f"extra block {tgt or 'stride-2 '}conv (no bias: followed by BN)"))
        rules += bn_rules(rf"{feat}{bn}(\d+)_", rf"extras.\1.{tgt}bn.", "extra block BN",
                          names=("gamma", "beta", "moving_mean", "moving_var"))
    return rules


def _gluon_rules() -> list[Rule | Ignore]:
    return [*symbol_rules(V1_50, r"features\.resnetv1\d+_", "backbone.", classifier=False),
            *_extra_rules(r"features\."),
            Rule(r"^class_predictors\.(\d+)\.predictor\.(weight|bias)$", r"class_predictors.\1.\2",
                 "class predictor conv (anchors x (classes+1))"),
            Rule(r"^box_predictors\.(\d+)\.predictor\.(weight|bias)$", r"box_predictors.\1.\2",
                 "box predictor conv (anchors x 4)"),
            Ignore(r"^anchor_generators\.\d+\.anchors$", ANCHOR_WHY)]


def _export_rules() -> list[Rule | Ignore]:
    """Symbol names; predictors are numbered in creation order, class and box interleaved."""
    rules = [*symbol_rules(V1_50, r"ssd\d+_resnetv1\d+_", "backbone.", classifier=False),
             *_extra_rules(r"ssd\d+_")]
    for i in range(len(SSD512_R50.steps)):
        rules += [Rule(rf"^ssd\d+_convpredictor{2 * i}_conv0_(weight|bias)$", rf"class_predictors.{i}.\1",
                       "class predictor conv (even creation index)"),
                  Rule(rf"^ssd\d+_convpredictor{2 * i + 1}_conv0_(weight|bias)$", rf"box_predictors.{i}.\1",
                       "box predictor conv (odd creation index)")]
    return rules + [Ignore(r"^ssd\d+_ssdanchorgenerator\d+_anchor_\d+$", ANCHOR_WHY)]


_PAIRS = tuple([("features:resnetv10_stage3_activation5", "backbone.layer3"),
                ("features:resnetv10_stage4_activation2", "backbone.layer4")]
               + [(f"features:expand_relu{i}", f"extras.{i}") for i in range(4)]
               + [(f"anchor_generators.{i}", f"anchor_generators.{i}") for i in range(6)]
               # decoded boxes, and class probabilities before the 0.01 threshold (the thresholded
               # ids/scores are discrete; the post-NMS check covers them, tie-aware)
               + [("bbox_decoder", "box_decoder"), ("cls_decoder#in", "cls_decoder#in")])

register(ModelSpec(
    name="ssd_512_resnet50_v1_voc", family="gluon.ssd", framework="gluon", task="detection",
    source_format="mxnet-params", build=lambda: SSD(SSD512_R50),
    rules={"gluon": _gluon_rules(), "export": _export_rules()},
    fixups=(FIX_GAMMA,), defaults=BN_DEFAULTS, preprocess=SSD_EVAL,
    weights=functools.partial(gluoncv_weights, "ssd_512_resnet50_v1_voc",
                              "9c8b225a552614e4284a0f647331bfdc6940eb4a"),
    source_model="ssd_512_resnet50_v1_voc", extra_pairs=_PAIRS,
    seed_output_std={"class_predictors": 2.0, "box_predictors": 0.5},
    metrics=(Metric("mAP", 80.1, "VOC2007 test", "gluon-cv model zoo"),),
    parity_images=6,
    notes=("Extra-layer BNs: eps 1e-3 and fix_gamma=True (MXNet symbol defaults).",
           "Post-processing: MXNet box_nms (valid 0.01, topk 400, IoU 0.45, per class, 100 kept)."),
))
