"""gluoncv Faster R-CNN on ResNet-50 v1b (VOC and COCO) -> converters.arch.faster_rcnn.FasterRCNN.

gluoncv builds a resnet50_v1b and hands its stem and stages 1-3 to ``features`` (a HybridSequential:
conv1, bn1, relu, maxpool, layer1, layer2, layer3 at 0..6) and stage 4 to ``top_features`` (at 0);
the target keeps them as one ResNet (``backbone``) and runs stage 4 on the pooled RoIs. The
resnet50_v1b is built outside the detector's name scope, so its symbol names keep the classifier's
fixed ``resnetv1b_`` prefix in the export layout; the heads are under ``fasterrcnn<k>_``."""
from __future__ import annotations

import functools
from dataclasses import replace

from ..arch.faster_rcnn import FasterRCNN, FasterRCNNConfig
from ..registry import Metric, ModelSpec, Preprocess, register
from ..rules import Ignore, Rule, bn_rules
from ..sources import gluoncv_weights
from .resnet import BN_DEFAULTS, V1B, v1b_symbol_rules
from .ssd import VOC_CLASSES

R50_V1B = V1B[50]  # stride on the 3x3 conv, no conv biases, BN eps 1e-5 (use_global_stats: eval BN)

# faster_rcnn_resnet50_v1b_{voc,coco} in gluoncv's predefined_models.py (eval settings only)
VOC = FasterRCNNConfig(R50_V1B, num_classes=len(VOC_CLASSES), rpn_post_nms=300, rpn_min_size=16,
                       clip=None, nms_thresh=0.3, nms_topk=400)
COCO = replace(VOC, num_classes=80, rpn_post_nms=1000, rpn_min_size=1, clip=4.14, nms_thresh=0.5, nms_topk=-1)


def _eval_transform(short: int, max_size: int) -> Preprocess:
    """FasterRCNNDefaultValTransform(short, max_size): short side to ``short`` unless the long side
    would pass ``max_size`` (np.round sizes), bilinear (interp=1), no crop; the eval script passes
    the net's own short/max_size."""
    return Preprocess("rcnn", (short, max_size), "short-within", resize_short=short, max_size=max_size,
                      interp="bilinear", crop="none")


ANCHOR_WHY = "constant anchors (alloc 128x128 cells); the target regenerates them (equality with gluoncv tested)"


def _block_rules(src: str, dst: str, stage: int) -> list[Rule]:
    """One v1b stage's blocks; ``src`` is the regex prefix whose group 1 is the block index."""
    rules = [Rule(rf"^{src}conv([123])\.weight$", rf"{dst}conv\2.weight", f"stage {stage} body conv")]
    for k in (1, 2, 3):
        rules += bn_rules(rf"{src}bn{k}\.", rf"{dst}bn{k}.", f"stage {stage} body BN {k}")
    rules.append(Rule(rf"^{src}downsample\.0\.weight$", rf"{dst}downsample.0.weight",
                      f"stage {stage} projection shortcut conv"))
    rules += bn_rules(rf"{src}downsample\.1\.", rf"{dst}downsample.1.", f"stage {stage} projection shortcut BN")
    return rules


def _head_rules() -> list[Rule]:
    return [Rule(r"^class_predictor\.(weight|bias)$", r"class_predictor.\1", "class predictor (Dense is [out, in])"),
            Rule(r"^box_predictor\.(weight|bias)$", r"box_predictor.\1", "class-specific box predictor (4 per class)")]


def _gluon_rules() -> list[Rule | Ignore]:
    rules = [Rule(r"^features\.0\.weight$", "backbone.conv1.weight", "stem 7x7 conv (features[0])"),
             *bn_rules(r"features\.1\.", "backbone.bn1.", "stem BN (features[1])")]
    for stage in (1, 2, 3):  # features[4..6]; features[2:4] are the ReLU and max-pool
        rules += _block_rules(rf"features\.{stage + 3}\.(\d+)\.", rf"backbone.layer{stage}.\1.", stage)
    rules += _block_rules(r"top_features\.0\.(\d+)\.", r"backbone.layer4.\1.", 4)
    rules += [Rule(r"^rpn\.conv1\.0\.(weight|bias)$", r"rpn.conv.\1", "RPN 3x3 conv (conv1 = [conv, relu])"),
              Rule(r"^rpn\.score\.(weight|bias)$", r"rpn.score.\1", "RPN objectness 1x1 conv (one logit per anchor)"),
              Rule(r"^rpn\.loc\.(weight|bias)$", r"rpn.loc.\1", "RPN box-offset 1x1 conv (4 per anchor)"),
              *_head_rules(),
              Ignore(r"^rpn\.anchor_generator\.anchors$", ANCHOR_WHY)]
    return rules


def _export_rules() -> list[Rule | Ignore]:
    """Symbol names: the backbone as resnet50_v1b exports them (classifier rule dropped: the
    detector has none), the RPN convs and the two Dense heads numbered in creation order."""
    backbone = [Rule(r.pattern, "backbone." + r.repl, r.why) for r in v1b_symbol_rules(R50_V1B, "resnetv1b_")
                if not r.repl.startswith("fc.")]
    return [*backbone,
            Rule(r"^fasterrcnn\d+_rpn\d+_conv0_(weight|bias)$", r"rpn.conv.\1", "RPN 3x3 conv (created first)"),
            Rule(r"^fasterrcnn\d+_rpn\d+_conv1_(weight|bias)$", r"rpn.score.\1", "RPN objectness conv (second)"),
            Rule(r"^fasterrcnn\d+_rpn\d+_conv2_(weight|bias)$", r"rpn.loc.\1", "RPN box-offset conv (third)"),
            Rule(r"^fasterrcnn\d+_dense0_(weight|bias)$", r"class_predictor.\1", "class predictor (first Dense)"),
            Rule(r"^fasterrcnn\d+_dense1_(weight|bias)$", r"box_predictor.\1", "box predictor (second Dense)"),
            Ignore(r"^fasterrcnn\d+_rpn\d+_rpnanchorgenerator\d+_anchor_$", ANCHOR_WHY)]


# Explicit parity pairs (gluon layout): stage-3 and stage-4 outputs, the anchors, the RPN's pre-NMS
# rows (every anchor, fixed order), its proposals, the pooled RoIs (input of top_features), and the
# pre-NMS class probabilities and decoded boxes.
_PAIRS = (("features", "backbone.layer3"), ("rpn.anchor_generator", "rpn.anchor_generator"),
          ("rpn.region_proposer", "rpn.region_proposer"), ("rpn", "rpn"), ("top_features#in", "roi_align"),
          ("top_features", "backbone.layer4"), ("cls_decoder#in", "cls_decoder#in"),
          ("box_decoder", "box_decoder"))
# The proposals are an NMS selection from those rows: fp32 noise (MXNet's and ours, ~1e-5 of a
# score) reorders near-tied scores, and NMS then keeps a different box of two that overlap. So the
# pre-NMS rows are compared within tolerance, and the parity passes then continue from MXNet's rows:
# the selection must reproduce MXNet's proposals exactly, and every per-RoI pair sees the same RoIs.
REPLAY = (("rpn.region_proposer", "rpn.region_proposer"),)
FLOOR_POINTS = {"score": "cls_decoder#in", "box": "box_decoder"}

NOTES = (
    "Backbone: resnet50_v1b (stride on the 3x3, BN eps 1e-5); stages 1-3 are the shared features, "
    "stage 4 runs on each 14x14 RoI, then global average pooling.",
    "RPN: 15 anchors per cell (sizes 32-512, ratios 0.5/1/2, Detectron rounding), decoded with stds 1, "
    "clipped to [0, W] x [0, H], proposals with w+1 or h+1 below rpn_min_size dropped, box_nms IoU 0.7 "
    "(class-agnostic, top 6000 before suppression), first rpn_test_post_nms kept (-1 padded).",
    "RoI features: MXNet contrib.ROIAlign (14x14, scale 1/16, sample_ratio 2, not 'aligned') = "
    "torchvision roi_align(aligned=False, sampling_ratio=2), bit for bit.",
    "Eval forward takes one image in gluoncv (its RoI batch ids are fixed; seeding calibrates image by "
    "image); the target takes any batch. gluoncv allocates anchors for 128x128 cells (inputs up to 2048 "
    "px); the target generates them for any size.",
    "Output: gluoncv's (ids, scores, boxes) for every class block (C x proposals rows, -1 padded); boxes "
    "are not clipped to the image (gluoncv's eval script clips them afterwards).",
)

# name, config, preprocessing, sha1 (gluoncv model_store), metrics (gluon-cv model zoo tables), seed
# size, slow, parity photos. COCO: 1000 RoIs through stage 4 make one parity photo ~6 min and ~19 GB
# (the un-hybridized MXNet pass and its captures), so it runs in parity-full on one photograph.
_ZOO = (
    ("faster_rcnn_resnet50_v1b_voc", VOC, _eval_transform(600, 1000), "447328d89d70ae1e2ca49226b8d834e5a5456df3",
     (Metric("mAP", 78.3, "VOC2007 test", "gluon-cv model zoo"),), (600, 800), False, 2),
    ("faster_rcnn_resnet50_v1b_coco", COCO, _eval_transform(800, 1333), "5b4690fb7c5b62c44fb36c67d0642b633697f1bb",
     tuple(Metric(n, v, "COCO val2017 (bbox)", "gluon-cv model zoo") for n, v in
           (("AP", 37.0), ("AP50", 57.8), ("AP75", 39.6))), (800, 1064), True, 1),
)

for _name, _cfg, _pre, _sha1, _metrics, _seed_size, _slow, _photos in _ZOO:
    register(ModelSpec(
        name=_name, family="gluon.faster_rcnn", framework="gluon", task="detection",
        source_format="mxnet-params", build=functools.partial(FasterRCNN, _cfg),
        rules={"gluon": _gluon_rules(), "export": _export_rules()}, defaults=BN_DEFAULTS,
        preprocess=_pre, weights=functools.partial(gluoncv_weights, _name, _sha1), source_model=_name,
        extra_pairs=_PAIRS, replay=REPLAY, single_image=True, floor_points=FLOOR_POINTS, seed_size=_seed_size,
        seed_output_std={"rpn.score": 2.0, "rpn.loc": 0.2, "class_predictor": 2.0, "box_predictor": 0.5},
        metrics=_metrics, slow=_slow, parity_images=_photos,
        # CI model: calibrated on its parity photographs (batch-1 passes: 6 photos took ~400 s of CI)
        seed_images=0 if _slow else _photos,
        notes=(*NOTES, f"Post-processing: per-class MXNet box_nms (score > 0.01, valid 1e-4, IoU {_cfg.nms_thresh}, "
                       f"topk {_cfg.nms_topk} per class, no cut); RPN keeps {_cfg.rpn_post_nms} proposals, "
                       f"min size {_cfg.rpn_min_size}, decode clip {_cfg.clip}."),
    ))
