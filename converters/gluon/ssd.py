"""gluoncv's SSD zoo (VGG16 atrous 300/512, ResNet-50 v1 512, MobileNet 1.0 512; VOC and COCO)
-> converters.arch.ssd.SSD, one target module configured per model.

Two kinds of feature extractor, with different saved names:
- ResNet / MobileNet: gluoncv's FeatureExpander, one SymbolBlock ``features`` holding the backbone
  cut at its tap layers plus the extra layers, so names are symbol names
  (``features.resnetv10_stage1_conv0_weight``, ``features.expand_conv0_weight``);
- VGG16 atrous: gluoncv's own VGGAtrousExtractor, a plain HybridBlock with structural names
  (``features.stages.0.0.weight``, ``features.norm4.scale``, ``features.extras.0.2.weight``).
Heads are structural (``class_predictors.<i>.predictor``). The "export" layout names everything
by symbol under the ``ssd<n>_`` scope; predictors are numbered in creation order, class and box
interleaved."""
from __future__ import annotations

import functools

import numpy as np
from torch import nn

from ..arch.mobilenet import MobileNetConfig
from ..arch.ssd import SSD, ExtraSpec, SSDConfig, expander_extras
from ..arch.vgg_atrous import VGGAtrousConfig
from ..fixups import Fixup
from ..registry import Metric, ModelSpec, Preprocess, register
from ..rules import Ignore, Rule, bn_rules
from ..sources import gluoncv_weights
from . import mobilenet as gluon_mobilenet
from .resnet import BN_DEFAULTS, V1_50, symbol_rules

VOC_CLASSES = ("aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
               "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
               "train", "tvmonitor")
NUM_CLASSES = {"voc": len(VOC_CLASSES), "coco": 80}

# Anchor ratios per level, as gluoncv's presets list them (1.0 / 3 as a Python float)
R3, R5 = (1, 2, 0.5), (1, 2, 0.5, 3, 1.0 / 3)
RATIOS_6 = (R3,) + (R5,) * 3 + (R3,) * 2
RATIOS_7 = (R3,) + (R5,) * 4 + (R3,) * 2
STEPS_300 = (8, 16, 32, 64, 100, 300)
STEPS_512_VGG = (8, 16, 32, 64, 128, 256, 512)
STEPS_512 = (16, 32, 64, 128, 256, 512)
SIZES = {  # gluoncv presets (ssd/presets.py); the VOC and COCO ResNet/VGG-300 presets differ
    ("vgg300", "voc"): (30, 60, 111, 162, 213, 264, 315),
    ("vgg300", "coco"): (21, 45, 99, 153, 207, 261, 315),
    ("vgg512", "voc"): (51.2, 76.8, 153.6, 230.4, 307.2, 384.0, 460.8, 537.6),
    ("vgg512", "coco"): (51.2, 76.8, 153.6, 230.4, 307.2, 384.0, 460.8, 537.6),
    ("resnet50", "voc"): (51.2, 102.4, 189.4, 276.4, 363.52, 450.6, 492),
    ("resnet50", "coco"): (51.2, 133.12, 215.04, 296.96, 378.88, 460.8, 542.72),
    ("mobilenet1.0", "voc"): (51.2, 102.4, 189.4, 276.4, 363.52, 450.6, 492),
    ("mobilenet1.0", "coco"): (51.2, 102.4, 189.4, 276.4, 363.52, 450.6, 492),
}

# VGGAtrousExtractor's extra layers (vgg_atrous.extra_spec): 1x1 transition, then (k, stride, pad)
VGG_EXTRAS = {
    300: (ExtraSpec(256, 512), ExtraSpec(128, 256), ExtraSpec(128, 256, 3, 1, 0), ExtraSpec(128, 256, 3, 1, 0)),
    512: (ExtraSpec(256, 512), ExtraSpec(128, 256), ExtraSpec(128, 256), ExtraSpec(128, 256),
          ExtraSpec(128, 256, 4, 1, 1)),
}
# FeatureExpander defaults (reduce_ratio 1.0, min_depth 128): transitions as wide as the block
EXPANDER = expander_extras((512, 512, 256, 256))
MOBILENET1 = MobileNetConfig(1, 1.0, "relu", bn_eps=1e-5)  # gluoncv mobilenet1.0, cut at relu26_fwd


def ssd_config(backbone: str, dataset: str) -> SSDConfig:
    n = NUM_CLASSES[dataset]
    sizes = SIZES[(backbone, dataset)]
    if backbone == "vgg300":
        return SSDConfig(VGGAtrousConfig(), (), VGG_EXTRAS[300], sizes, RATIOS_6, STEPS_300, n, extra_bn=False)
    if backbone == "vgg512":
        return SSDConfig(VGGAtrousConfig(), (), VGG_EXTRAS[512], sizes, RATIOS_7, STEPS_512_VGG, n, extra_bn=False)
    if backbone == "resnet50":  # taps stage3_activation5, stage4_activation2: the stage outputs
        return SSDConfig(V1_50, (3, 4), EXPANDER, sizes, RATIOS_6, STEPS_512, n)
    if backbone == "mobilenet1.0":  # taps relu22_fwd, relu26_fwd: pointwise ReLUs of blocks 10, 12
        return SSDConfig(MOBILENET1, (10, 12), EXPANDER, sizes, RATIOS_6, STEPS_512, n)
    raise ValueError(f"unknown SSD backbone {backbone!r}")


SSD512_R50 = ssd_config("resnet50", "voc")


def ssd_eval(size: int) -> Preprocess:
    """gluoncv's SSDDefaultValTransform: stretch to size x size with mx.image.imresize(interp=9)."""
    return Preprocess("ssd", (size, size), "exact", interp="mxnet-9", crop="none")


# The FeatureExpander's BNs are raw mx.sym.BatchNorm nodes with no attributes, so MXNet's op
# defaults hold: eps=1e-3 (set in the target module) and fix_gamma=True (gamma read as 1).
FIX_GAMMA = Fixup("mxnet_fix_gamma", (nn.BatchNorm2d,), "weight", lambda a: np.ones_like(a),
                  "mx.sym.BatchNorm defaults to fix_gamma=True: the stored gamma is ignored (read as 1)",
                  where=r"^extras\.\d+\.(trans_)?bn$")

ANCHOR_WHY = "constant anchors; the target regenerates them (equality with gluoncv tested)"


# ---------------------------------------------------------------------------------- extra layers


def _expander_extra_rules(feat: str) -> list[Rule]:
    """FeatureExpander's extra blocks; ``feat`` is the layout's regex prefix."""
    rules: list[Rule] = []
    for conv, bn, tgt in (("expand_trans_conv", "expand_trans_bn", "trans_"), ("expand_conv", "expand_bn", "")):
        rules.append(Rule(rf"^{feat}{conv}(\d+)_weight$", rf"extras.\1.{tgt}conv.weight",
                          f"extra block {tgt or 'stride-2 '}conv (no bias: followed by BN)"))
        rules += bn_rules(rf"{feat}{bn}(\d+)_", rf"extras.\1.{tgt}bn.", "extra block BN",
                          names=("gamma", "beta", "moving_mean", "moving_var"))
    return rules


# ------------------------------------------------------------------------------------ backbones


def _prefixed(rules: list[Rule], dst: str) -> list[Rule]:
    """A classifier's rule table moved under ``dst``, its classifier rules dropped (the detector's
    symbol stops at the tap layers, so no classifier tensor exists)."""
    return [Rule(r.pattern, dst + r.repl, r.why) for r in rules if not r.repl.startswith(("fc.", "classifier."))]


def _vgg_gluon_rules() -> list[Rule]:
    return [Rule(r"^features\.init_scale$", "backbone.init_scale.scale",
                 "init_scale constant: ImageNet std x 255, multiplied into the input (caffe range)"),
            Rule(r"^features\.stages\.(\d+)\.(\d+)\.(weight|bias)$", r"backbone.stages.\1.\2.\3",
                 "VGG conv (stages keep gluon's conv/ReLU sequence indices; stage 5 = atrous fc6, fc7)"),
            Rule(r"^features\.norm4\.scale$", "backbone.norm4.scale", "conv4_3 L2Normalization per-channel scale"),
            Rule(r"^features\.extras\.(\d+)\.0\.(weight|bias)$", r"extras.\1.trans_conv.\2",
                 "extra block 1x1 transition conv (biased, no BN)"),
            Rule(r"^features\.extras\.(\d+)\.2\.(weight|bias)$", r"extras.\1.conv.\2",
                 "extra block kxk conv (biased, no BN)")]


def _vgg_export_rules(cfg: VGGAtrousConfig) -> list[Rule]:
    """Symbol names: the 13 convs are numbered across the stages (conv0..conv12), fc6/fc7 are
    ``dilated_conv0/1``, the extras ``extra<i>_conv0/1``."""
    src = r"ssd\d+_vggatrousextractor\d+_"
    rules, k = [], 0
    for s, n in enumerate(cfg.layers):
        for j in range(n):
            rules.append(Rule(rf"^{src}conv{k}_(weight|bias)$", rf"backbone.stages.{s}.{2 * j}.\1",
                              f"VGG stage {s + 1} conv {j + 1}"))
            k += 1
    fc = len(cfg.layers)
    return rules + [
        Rule(rf"^{src}dilated_conv0_(weight|bias)$", rf"backbone.stages.{fc}.0.\1", "atrous fc6 (3x3, dilation 6)"),
        Rule(rf"^{src}dilated_conv1_(weight|bias)$", rf"backbone.stages.{fc}.2.\1", "fc7 (1x1)"),
        Rule(rf"^{src}init_scale$", "backbone.init_scale.scale",
             "init_scale constant: ImageNet std x 255, multiplied into the input (caffe range)"),
        Rule(rf"^{src}normalize0_normalize_scale$", "backbone.norm4.scale",
             "conv4_3 L2Normalization per-channel scale"),
        Rule(rf"^{src}extra(\d+)_conv0_(weight|bias)$", r"extras.\1.trans_conv.\2", "extra block 1x1 transition conv"),
        Rule(rf"^{src}extra(\d+)_conv1_(weight|bias)$", r"extras.\1.conv.\2", "extra block kxk conv")]


def _backbone_rules(backbone: str, layout: str) -> list[Rule]:
    scope = r"features\." if layout == "gluon" else r"ssd\d+_"
    if backbone == "resnet50":
        return [*symbol_rules(V1_50, rf"{scope}resnetv1\d+_", "backbone.", classifier=False),
                *_expander_extra_rules(scope)]
    if backbone == "mobilenet1.0":
        return [*_prefixed(gluon_mobilenet.symbol_rules(MOBILENET1, rf"{scope}mobilenet\d+_"), "backbone."),
                *_expander_extra_rules(scope)]
    return _vgg_gluon_rules() if layout == "gluon" else _vgg_export_rules(VGGAtrousConfig())


# ----------------------------------------------------------------------------------------- heads


def _head_rules(layout: str, levels: int) -> list[Rule | Ignore]:
    if layout == "gluon":
        return [Rule(r"^class_predictors\.(\d+)\.predictor\.(weight|bias)$", r"class_predictors.\1.\2",
                     "class predictor conv (anchors x (classes+1))"),
                Rule(r"^box_predictors\.(\d+)\.predictor\.(weight|bias)$", r"box_predictors.\1.\2",
                     "box predictor conv (anchors x 4)"),
                Ignore(r"^anchor_generators\.\d+\.anchors$", ANCHOR_WHY)]
    rules: list[Rule | Ignore] = []
    for i in range(levels):
        rules += [Rule(rf"^ssd\d+_convpredictor{2 * i}_conv0_(weight|bias)$", rf"class_predictors.{i}.\1",
                       "class predictor conv (even creation index)"),
                  Rule(rf"^ssd\d+_convpredictor{2 * i + 1}_conv0_(weight|bias)$", rf"box_predictors.{i}.\1",
                       "box predictor conv (odd creation index)")]
    return rules + [Ignore(r"^ssd\d+_ssdanchorgenerator\d+_anchor_\d+$", ANCHOR_WHY)]


def ssd_rules(backbone: str, levels: int) -> dict[str, list[Rule | Ignore]]:
    return {layout: [*_backbone_rules(backbone, layout), *_head_rules(layout, levels)]
            for layout in ("gluon", "export")}


# ---------------------------------------------------------------------------------- parity pairs


def _pairs(backbone: str, cfg: SSDConfig) -> tuple[tuple[str, str], ...]:
    """Explicit pairs beyond the mapping's: the tapped feature maps and each extra block's output
    (after its ReLU), anchors, decoded boxes and the class probabilities before the 0.01 threshold
    (the thresholded ids/scores are discrete; the post-NMS check covers them, tie-aware)."""
    n_extra = len(cfg.extras)
    if backbone == "resnet50":
        taps = [("features:resnetv10_stage3_activation5", "backbone.layer3"),
                ("features:resnetv10_stage4_activation2", "backbone.layer4")]
    elif backbone == "mobilenet1.0":
        taps = [("features:mobilenet0_relu22_fwd", "backbone.blocks.10"),
                ("features:mobilenet0_relu26_fwd", "backbone.blocks.12")]
    else:  # norm4 and every conv pair from the mapping; the input scaling and the fc7 stage here
        taps = [("features.stages.0#in", "backbone.init_scale"), ("features.stages.5", "backbone.stages.5")]
    if backbone.startswith("vgg"):
        extras = [(f"features.extras.{i}", f"extras.{i}") for i in range(n_extra)]
    else:
        extras = [(f"features:expand_relu{i}", f"extras.{i}") for i in range(n_extra)]
    return tuple(taps + extras + [(f"anchor_generators.{i}", f"anchor_generators.{i}") for i in range(len(cfg.steps))]
                 + [("bbox_decoder", "box_decoder"), ("cls_decoder#in", "cls_decoder#in")])


# -------------------------------------------------------------------------------------- registry

NOTES = {
    "expander": ("Extra layers (gluoncv FeatureExpander): 1x1 transition + 3x3/2 conv, bias-free, raw symbol "
                 "BatchNorms with MXNet's op defaults eps 1e-3 and fix_gamma=True."),
    "vgg": ("VGG16 atrous base (gluoncv VGGAtrousExtractor): input x ImageNet std x 255, max pools with ceil "
            "rounding (MXNet 'full'), stride-1 3x3 pool5, atrous fc6 (dilation 6) and 1x1 fc7, conv4_3 "
            "L2-normalised (eps 1e-5 inside the square root) with a learned per-channel scale; extras are "
            "biased convs with ReLU and no BN."),
    "nms": "Post-processing: DetectionNMS = MXNet box_nms (valid 0.01, topk 400, IoU 0.45, per class, 100 kept).",
}


def _metrics(dataset: str, values: tuple[float, ...]) -> tuple[Metric, ...]:
    if dataset == "voc":
        return (Metric("mAP", values[0], "VOC2007 test", "gluon-cv model zoo"),)
    return tuple(Metric(n, v, "COCO val2017 (bbox)", "gluon-cv model zoo")
                 for n, v in zip(("AP", "AP50", "AP75"), values))


# name, backbone, input size, dataset, sha1 (gluoncv model_store), published metrics (VOC07 mAP;
# COCO box AP / AP50 / AP75), slow. CI keeps one net per base (ResNet-50, MobileNet, VGG-300, all
# VOC) within the family's ~6 min; the COCO twins (same code path, larger heads) and the VGG-512s
# (seeding alone took 283 CPU-s, parity 75 CPU-s) run in parity-full.
_ZOO = (
    ("ssd_300_vgg16_atrous_voc", "vgg300", 300, "voc", "0e169fbb64efdee6985c3c175ec4298c4bda0298", (77.6,), False),
    ("ssd_300_vgg16_atrous_coco", "vgg300", 300, "coco", "b302ad8a8660345c368448141d8acf30b5a3801d",
     (25.1, 42.9, 25.8), True),
    ("ssd_512_vgg16_atrous_voc", "vgg512", 512, "voc", "daf8181b615b480236fcb8474545077891276945", (79.2,), True),
    ("ssd_512_vgg16_atrous_coco", "vgg512", 512, "coco", "5c86064290c05eccbdd88475376c71c595c8325c",
     (28.9, 47.9, 30.6), True),
    ("ssd_512_resnet50_v1_voc", "resnet50", 512, "voc", "9c8b225a552614e4284a0f647331bfdc6940eb4a", (80.1,), False),
    ("ssd_512_resnet50_v1_coco", "resnet50", 512, "coco", "c48351620d4f0cbc49e4f7a84c8e67ef8fdc6e09",
     (30.6, 50.0, 32.2), True),
    ("ssd_512_mobilenet1.0_voc", "mobilenet1.0", 512, "voc", "37c180765a4eb3e67751d6bacac47bb9156f5fff", (75.4,),
     False),
    ("ssd_512_mobilenet1.0_coco", "mobilenet1.0", 512, "coco", "da9756faa5b9b4e34dedcf83ee0733d5895796ad",
     (21.7, 39.2, 21.3), True),
)

for _name, _bb, _size, _ds, _sha1, _metric, _slow in _ZOO:
    _cfg = ssd_config(_bb, _ds)
    _vgg = _bb.startswith("vgg")
    register(ModelSpec(
        name=_name, family="gluon.ssd", framework="gluon", task="detection",
        source_format="mxnet-params", build=functools.partial(SSD, _cfg),
        rules=ssd_rules(_bb, len(_cfg.steps)),
        fixups=() if _vgg else (FIX_GAMMA,), defaults=BN_DEFAULTS, preprocess=ssd_eval(_size),
        weights=functools.partial(gluoncv_weights, _name, _sha1),
        source_model=_name, extra_pairs=_pairs(_bb, _cfg),
        seed_output_std={"class_predictors": 2.0, "box_predictors": 0.5},
        metrics=_metrics(_ds, _metric), slow=_slow,
        parity_images=6 if _name == "ssd_512_resnet50_v1_voc" else 3,
        notes=(NOTES["vgg" if _vgg else "expander"], NOTES["nms"]),
    ))
