"""gluoncv YOLOv3 (DarkNet-53 and MobileNet 1.0 backbones; VOC and COCO) -> converters.arch.yolo.YOLOv3.

gluoncv cuts the backbone's ``features`` sequence into three ``stages`` (DarkNet [:15], [15:24],
[24:]; MobileNet [:33], [33:69], [69:-2]), so the "gluon" layout (``save_parameters``) renumbers
the backbone per stage (``stages.1.0.0.weight`` is DarkNet's ``features.15.0.weight``); the heads
are ``yolo_blocks``, ``transitions`` and ``yolo_outputs``. The "export" layout keeps the backbone's
own symbol scope (``darknetv30_conv0_weight``, ``mobilenet0_conv0_weight``) and names the heads
under ``yolov3<n>_``. Anchors and grid offsets are saved as constants and mapped into buffers."""
from __future__ import annotations

import functools
import re

import numpy as np

from ..arch.mobilenet import MobileNetConfig
from ..arch.yolo import YOLOConfig, YOLOOutput, YOLOv3
from ..fixups import Fixup
from ..registry import Metric, ModelSpec, Preprocess, register
from ..rules import Rule, bn_rules
from ..sources import gluoncv_weights
from . import darknet as gluon_darknet
from . import mobilenet as gluon_mobilenet
from .resnet import BN_DEFAULTS

NUM_CLASSES = {"voc": 20, "coco": 80}
DARKNET53 = gluon_darknet.DARKNET53
MOBILENET1 = MobileNetConfig(1, 1.0, "relu", bn_eps=1e-5)  # gluon BatchNorm default eps, plain ReLU
# where gluoncv cuts ``features`` (positions) and where our target cuts its body (stages / blocks)
FEATURE_STARTS = {"darknet53": (0, 15, 24), "mobilenet1.0": (0, 33, 69)}
CUTS = {"darknet53": (3, 4, 5), "mobilenet1.0": (5, 11, 13)}
BACKBONES = {"darknet53": DARKNET53, "mobilenet1.0": MOBILENET1}
SYMBOL_SCOPE = {"darknet53": r"darknetv3\d+_", "mobilenet1.0": r"mobilenet\d+_"}


def yolo_config(backbone: str, dataset: str) -> YOLOConfig:
    return YOLOConfig(BACKBONES[backbone], CUTS[backbone], NUM_CLASSES[dataset])


# gluoncv's YOLO3DefaultValTransform: stretch to the size with mx.image.imresize(interp=9)
YOLO_EVAL = Preprocess("yolo", (416, 416), "exact", interp="mxnet-9", crop="none")


def _drop_unit_axes(lead: int):
    def fn(a: np.ndarray) -> np.ndarray:
        if a.shape[:lead] != (1,) * lead:
            raise ValueError(f"expected {lead} leading unit axes, got shape {a.shape}")
        return np.ascontiguousarray(a.reshape(a.shape[lead:]))
    return fn


# gluoncv keeps its constants broadcast-ready: anchors (1, 1, A, 2), offsets (1, 1, H, W, 2)
ANCHOR_SHAPE = Fixup("yolo_anchor_shape", (YOLOOutput,), "anchors", _drop_unit_axes(2),
                     "gluoncv stores anchors as (1, 1, A, 2); the target keeps (A, 2)")
OFFSET_SHAPE = Fixup("yolo_offset_shape", (YOLOOutput,), "offsets", _drop_unit_axes(2),
                     "gluoncv stores grid offsets as (1, 1, rows, cols, 2); the target keeps (rows, cols, 2)")


# ------------------------------------------------------------------------------------ backbone


def _restage(key: str, backbone: str) -> str:
    """``features.<pos>[...]`` -> ``stages.<s>.<pos - start of s>[...]`` (gluoncv's slices)."""
    pos, rest = re.fullmatch(r"features\.(\d+)(.*)", key).groups()
    starts = FEATURE_STARTS[backbone]
    s = max(i for i, start in enumerate(starts) if start <= int(pos))
    return f"stages.{s}.{int(pos) - starts[s]}{rest}"


def _cells(backbone: str):
    """(structural conv key, structural BN key, target cell) of every backbone conv-BN cell, with
    the classifier families' own enumeration of gluon's creation order."""
    if backbone == "darknet53":
        for cell, _, dst in gluon_darknet.layers(DARKNET53):
            yield f"{cell}.0", f"{cell}.1", dst
    else:
        for conv, bn, _, _, dst in gluon_mobilenet.layers(MOBILENET1):
            yield conv, bn, dst


def _backbone_rules(backbone: str, layout: str) -> list[Rule]:
    if layout == "export":  # the classifier families' symbol rules, minus the classifier
        rules = (gluon_darknet.symbol_rules(DARKNET53, SYMBOL_SCOPE[backbone]) if backbone == "darknet53"
                 else gluon_mobilenet.symbol_rules(MOBILENET1, SYMBOL_SCOPE[backbone]))
        return [Rule(r.pattern, f"backbone.{r.repl}", f"backbone {r.why}") for r in rules
                if not r.repl.startswith(("fc.", "classifier."))]
    rules = []
    for conv, bn, dst in _cells(backbone):
        conv, bn = _restage(conv, backbone), _restage(bn, backbone)
        rules.append(Rule(rf"^{re.escape(conv)}\.weight$", f"backbone.{dst}.conv.weight",
                          f"backbone {dst} conv (no bias)"))
        rules += bn_rules(rf"{re.escape(bn)}\.", f"backbone.{dst}.bn.", f"backbone {dst} BN")
    return rules


# ---------------------------------------------------------------------------------------- heads


BN_NAMES = ("gamma", "beta", "running_mean", "running_var")


def _head_cells(layout: str):
    """(conv regex prefix, BN regex prefix, target cell) of every head conv-BN cell: three detection
    blocks (5 body cells and the tip; the symbol numbers the tip conv5) and two transitions."""
    gluon = layout == "gluon"
    for i in range(3):
        for k in range(6):
            dst = f"yolo_blocks.{i}." + (f"body.{k}" if k < 5 else "tip")
            if gluon:
                cell = rf"yolo_blocks\.{i}\." + (rf"body\.{k}\." if k < 5 else r"tip\.")
                yield rf"{cell}0\.", rf"{cell}1\.", dst
            else:
                block = rf"yolov3\d+_yolodetectionblockv3{i}_"
                yield rf"{block}conv{k}_", rf"{block}batchnorm{k}_", dst
    for i in range(2):
        if gluon:
            yield rf"transitions\.{i}\.0\.", rf"transitions\.{i}\.1\.", f"transitions.{i}"
        else:
            yield rf"yolov3\d+_conv{i}_", rf"yolov3\d+_batchnorm{i}_", f"transitions.{i}"


def _output_rules(layout: str) -> list[Rule]:
    """Per output: the 1x1 predictor (with bias) and the two constants gluoncv saves."""
    rules = []
    for i in range(3):
        if layout == "gluon":
            pred, anchor, offset = (rf"yolo_outputs\.{i}\.{n}" for n in (r"prediction\.", "anchors", "offsets"))
        else:
            out = rf"yolov3\d+_yolooutputv3{i}_"
            pred, anchor, offset = f"{out}conv0_", f"{out}anchor_{i}", f"{out}offset_{i}"
        rules += [
            Rule(rf"^{pred}(weight|bias)$", rf"yolo_outputs.{i}.prediction.\1",
                 f"output {i} predictor: 1x1 conv, anchors x (4 box + objectness + classes)"),
            Rule(rf"^{anchor}$", f"yolo_outputs.{i}.anchors", f"output {i} anchor sizes (w, h in pixels), a constant"),
            Rule(rf"^{offset}$", f"yolo_outputs.{i}.offsets",
                 f"output {i} grid offsets for alloc_size cells, a constant; sliced per input"),
        ]
    return rules


def _head_rules(layout: str) -> list[Rule]:
    rules: list[Rule] = []
    for conv, bn, dst in _head_cells(layout):
        rules.append(Rule(rf"^{conv}weight$", f"{dst}.conv.weight", f"{dst} conv (no bias)"))
        rules += bn_rules(bn, f"{dst}.bn.", f"{dst} BN", names=BN_NAMES)
    return rules + _output_rules(layout)


def yolo_rules(backbone: str) -> dict[str, list[Rule]]:
    return {layout: [*_backbone_rules(backbone, layout), *_head_rules(layout)] for layout in ("gluon", "export")}


# ---------------------------------------------------------------------------------------- pairs


def _pairs(backbone: str) -> tuple[tuple[str, str], ...]:
    """Backbone maps at the three strides, each detection block's (route, tip), each output's
    pre-NMS rows (class scores and decoded boxes, in gluoncv's row order)."""
    body = "stages" if backbone == "darknet53" else "blocks"
    taps = [(f"stages.{s}", f"backbone.{body}.{c - 1}") for s, c in enumerate(CUTS[backbone])]
    return tuple(taps + [(f"yolo_blocks.{i}", f"yolo_blocks.{i}") for i in range(3)]
                 + [(f"yolo_outputs.{i}", f"yolo_outputs.{i}") for i in range(3)])


# Post-NMS tolerance floors: the class scores and decoded boxes of all three outputs, before
# gluoncv lays them out as rows (torch-side captures; gluoncv has no block boundary there, so they
# have no source pair: the per-output rows they make up are paired instead).
FLOOR_POINTS = {"score": tuple(f"yolo_outputs.{i}.score_decoder" for i in range(3)),
                "box": tuple(f"yolo_outputs.{i}.box_decoder" for i in range(3))}


# -------------------------------------------------------------------------------------- registry


def _metrics(dataset: str, table: dict[int, tuple[float, ...]]) -> tuple[Metric, ...]:
    """gluon-cv's published numbers per input size; the 416 (preset) ones carry the plain names."""
    names, where = (("mAP",), "VOC2007 test") if dataset == "voc" else (("AP", "AP50", "AP75"), "COCO val2017 (bbox)")
    return tuple(Metric(n if size == 416 else f"{n}@{size}", v, f"{where}, {size}x{size}", "gluon-cv model zoo")
                 for size, values in table.items() for n, v in zip(names, values))


NOTES = (
    "Backbone cut as gluoncv cuts it (strides 8, 16, 32); heads are gluoncv _conv2d cells: bias-free conv, "
    "BatchNorm eps 1e-5, LeakyReLU(0.1); 2x nearest upsampling cropped to the finer map, then concatenated "
    "before it.",
    "Decoding: centre (sigmoid + grid offset) x stride, size exp x anchor, score sigmoid(class) x "
    "sigmoid(objectness); one row per (class, cell, anchor), outputs deepest first.",
    "Grid offsets are allocated for 128x128 cells: inputs up to 1024x1024; larger inputs raise an error.",
    "Post-processing: DetectionNMS = MXNet box_nms (valid 0.01, topk 400, IoU 0.45, per class, 100 kept).",
)

# name, backbone, dataset, sha1 (gluoncv model_store), published metrics per input size, slow
_ZOO = (
    ("yolo3_darknet53_voc", "darknet53", "voc", "f5ece5ce1422eeca3ce2908004e469ffdf91fd41",
     {416: (81.5,), 320: (79.3,)}, True),
    ("yolo3_darknet53_coco", "darknet53", "coco", "09767802230b45af1c27697a2dad6d1ebaacc1e2",
     {416: (36.0, 57.2, 38.7), 320: (33.6, 54.1, 35.8), 608: (37.0, 58.2, 40.1)}, True),
    ("yolo3_mobilenet1.0_voc", "mobilenet1.0", "voc", "3b47835ac3dd80f29576633949aa58aee3094353",
     {416: (75.8,), 320: (73.9,)}, False),
    ("yolo3_mobilenet1.0_coco", "mobilenet1.0", "coco", "66dbbae67be8f1e3cd3c995ce626a2bdc89769c6",
     {416: (28.6, 48.9, 29.9), 320: (26.7, 46.1, 27.5), 608: (28.0, 49.8, 27.8)}, False),
)

for _name, _bb, _ds, _sha1, _table, _slow in _ZOO:
    register(ModelSpec(
        name=_name, family="gluon.yolo", framework="gluon", task="detection",
        source_format="mxnet-params", build=functools.partial(YOLOv3, yolo_config(_bb, _ds)),
        rules=yolo_rules(_bb), fixups=(ANCHOR_SHAPE, OFFSET_SHAPE), defaults=BN_DEFAULTS,
        preprocess=YOLO_EVAL, parity_sizes=((320, 320), (608, 608)),
        weights=functools.partial(gluoncv_weights, _name, _sha1), source_model=_name,
        extra_pairs=_pairs(_bb), floor_points=FLOOR_POINTS, seed_output_std={"yolo_outputs": 0.5},
        metrics=_metrics(_ds, _table), slow=_slow, notes=NOTES,
    ))
