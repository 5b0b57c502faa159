"""gluoncv semantic segmentation (FCN, PSPNet, DeepLabV3 on dilated ResNet v1s) ->
converters.arch.segmentation.SegmentationNet.

Facts from gluoncv's model_zoo (fcn.py, pspnet.py, deeplabv3.py, segbase.py, resnetv1b.py):
- backbone ``resnet{50,101,152}_v1s``: deep stem 3x3/2 (64), 3x3 (64), 3x3 (128), stride on the
  bottleneck's 3x3 conv, plain strided-conv projections (no average pool); ``dilated=True`` gives
  stages 3 and 4 stride 1 and dilation 2 and 4, except the 3x3 conv of each stage's first block,
  which keeps dilation 1 (stage 3) and 2 (stage 4). SegBaseModel holds the backbone's stem and
  stages directly (``conv1``, ``bn1``, ``layer1``..``layer4``; no classifier);
- heads (BatchNorm eps 1e-5, dropout before each classifier conv): FCN ``_FCNHead(2048)`` =
  conv3x3 to 512, BN, ReLU, dropout, 1x1 conv; PSP pyramid pooling over 1/2/3/6 bins (1x1 conv to
  512 each, resized back and concatenated with the input) then conv3x3 4096 -> 512 and the
  classifier; DeepLabV3 ASPP (1x1, 3x3 at rates 12/24/36, image pooling; 256 each), projection
  1280 -> 256 (dropout 0.5), conv3x3 256 -> 256 and the classifier;
- ``aux=True`` in every model-zoo constructor: an ``_FCNHead(1024)`` on stage 3; eval returns
  ``(main, aux)``, each resized with ``contrib.BilinearResize2D`` to the crop size.

Two source layouts: "gluon" (``save_parameters``, structural names) and "export"
(``HybridBlock.export``: parameter names such as ``pspnet0__psphead0_conv0_weight``; the leading
instance counter differs per process)."""
from __future__ import annotations

import functools
from dataclasses import replace

from ..arch.segmentation import SegConfig, SegmentationNet
from ..registry import Metric, ModelSpec, Preprocess, register
from ..rules import Rule, bn_rules
from ..sources import gluoncv_weights
from .resnet import BN_DEFAULTS, EPS, V1B, v1b_structural_rules, v1b_symbol_rules


def _first_dilation(d: int) -> int:
    """resnetv1b._make_layer: a stage dilated by 2 starts with a dilation-1 block, by 4 with 2."""
    return 1 if d in (1, 2) else d // 2


_DILATIONS = (1, 1, 2, 4)
# resnet*_v1s, dilated: the stem ends at 128 channels, so stage 1 has a projection too
V1S_DILATED = {d: replace(V1B[d], deep_stem=(64, 64), channels=(128,) + V1B[d].channels[1:],
                          strides=(1, 2, 1, 1), dilations=_DILATIONS,
                          first_dilations=tuple(_first_dilation(x) for x in _DILATIONS))
               for d in (50, 101, 152)}

# dataset -> (classes, crop size, metric dataset label)
DATASETS = {
    "ade": (150, 480, "ADE20K val"),
    "coco": (21, 480, "MS-COCO val, VOC's 21 classes"),
    "voc": (21, 480, "Pascal VOC 2012 test (official server)"),
    # trained and validated at crop 768 (gluoncv's train.py --crop-size 768 for citys)
    "citys": (19, 768, "Cityscapes val"),
}

# gluoncv name of each head's top-level block: the export names' prefix
SYMBOL = {"fcn": "fcn", "psp": "pspnet", "deeplab": "deeplabv3"}


def segmentation_eval(crop: int) -> Preprocess:
    """gluoncv's segmentation val transform (SegmentationDataset._val_sync_transform): PIL decode,
    short side to the crop size (long side truncated), PIL bilinear, centre crop at rounded offsets."""
    return Preprocess("segmentation", (crop, crop), "short-side", resize_short=crop, interp="pil-bilinear",
                      crop="center-round", decoder="pil")


# ------------------------------------------------------------------------------------- rules


def _backbone(rules: list[Rule]) -> list[Rule]:
    """ResNet rules re-targeted under ``backbone.``; the classifier rule is dropped (no fc here)."""
    return [Rule(r.pattern, "backbone." + r.repl, r.why) for r in rules if not r.repl.startswith("fc.")]


def _conv_head(conv0: str, bn: str, conv1: str, dst: str, what: str) -> list[Rule]:
    """A ConvHead's 3x3 conv, BN and 1x1 classifier; the arguments are regex prefixes."""
    return [Rule(rf"^{conv0}weight$", f"{dst}0.weight", f"{what}: 3x3 conv (no bias: BN follows)"),
            *bn_rules(bn, f"{dst}1.", f"{what}: BN"),
            Rule(rf"^{conv1}(weight|bias)$", rf"{dst}4.\1", f"{what}: 1x1 classifier conv (position 3 is dropout)")]


def _structural_head(s: str, d: str, what: str) -> list[Rule]:
    """``s``.block = [conv3x3, BN, ReLU, Dropout, conv1x1] (gluon's HybridSequential positions)."""
    return _conv_head(rf"{s}\.block\.0\.", rf"{s}\.block\.1\.", rf"{s}\.block\.4\.", d, what)


def _symbol_head(scope: str, d: str, what: str) -> list[Rule]:
    """A ConvHead whose convs and BN are named in ``scope`` (conv0, batchnorm0, conv1)."""
    return _conv_head(f"{scope}conv0_", f"{scope}batchnorm0_", f"{scope}conv1_", d, what)


def gluon_rules(cfg: SegConfig) -> list[Rule]:
    rules = _backbone(v1b_structural_rules(cfg.backbone))
    if cfg.head == "fcn":
        rules += _structural_head("head", "head.", "FCN head")
    elif cfg.head == "psp":
        for k, bins in enumerate(cfg.psp_bins):
            src, dst = rf"head\.psp\.conv{k + 1}\.", f"head.pyramid.branches.{k}."
            why = f"PSP {bins}x{bins} level"
            rules.append(Rule(rf"^{src}0\.weight$", f"{dst}1.weight", f"{why}: 1x1 conv (our position 0 is the pool)"))
            rules += bn_rules(rf"{src}1\.", f"{dst}2.", f"{why}: BN")
        rules += _structural_head("head", "head.classifier.", "PSP head")
    else:
        src = r"head\.aspp\.concurent\."
        rules += [Rule(rf"^{src}([0-3])\.0\.weight$", r"head.aspp.branches.\1.0.weight",
                       "ASPP 1x1 / dilated 3x3 branch conv"),
                  *bn_rules(rf"{src}([0-3])\.1\.", r"head.aspp.branches.\1.1.", "ASPP branch BN"),
                  Rule(rf"^{src}4\.gap\.1\.weight$", "head.aspp.branches.4.1.weight",
                       "ASPP image-pooling 1x1 conv (position 0 is the global pool)"),
                  *bn_rules(rf"{src}4\.gap\.2\.", "head.aspp.branches.4.2.", "ASPP image-pooling BN"),
                  Rule(r"^head\.aspp\.project\.0\.weight$", "head.aspp.project.0.weight", "ASPP projection 1x1 conv"),
                  *bn_rules(r"head\.aspp\.project\.1\.", "head.aspp.project.1.", "ASPP projection BN")]
        rules += _structural_head("head", "head.classifier.", "DeepLab head")
    if cfg.aux:
        rules += _structural_head("auxlayer", "aux_head.", "auxiliary FCN head (stage 3)")
    return rules


def export_rules(cfg: SegConfig) -> list[Rule]:
    """Symbol names: ``<net><n>_resnetv1s_...`` for the backbone; the heads are private classes,
    so their scopes start with a double underscore (``_fcnhead0`` inside ``fcn0_``)."""
    net = rf"{SYMBOL[cfg.head]}\d+_"
    rules = _backbone(v1b_symbol_rules(cfg.backbone, rf"{net}resnetv1s_"))
    aux_scope = "_fcnhead0_hybridsequential0_"
    if cfg.head == "fcn":
        rules += _symbol_head(rf"{net}_fcnhead0_hybridsequential0_", "head.", "FCN head")
        aux_scope = "_fcnhead1_hybridsequential0_"  # the main head took counter 0
    elif cfg.head == "psp":
        for k, bins in enumerate(cfg.psp_bins):  # built outside the head's scope: in the net's
            src, dst = rf"{net}_pyramidpooling0_hybridsequential{k}_", f"head.pyramid.branches.{k}."
            why = f"PSP {bins}x{bins} level"
            rules.append(Rule(rf"^{src}conv0_weight$", f"{dst}1.weight", f"{why}: 1x1 conv"))
            rules += bn_rules(rf"{src}batchnorm0_", f"{dst}2.", f"{why}: BN")
        rules += _symbol_head(rf"{net}_psphead0_", "head.classifier.", "PSP head")
    else:
        scope = rf"{net}_deeplabhead0_"
        rules += [Rule(rf"^{scope}hybridsequential([0-3])_conv0_weight$", r"head.aspp.branches.\1.0.weight",
                       "ASPP 1x1 / dilated 3x3 branch conv"),
                  *bn_rules(rf"{scope}hybridsequential([0-3])_batchnorm0_", r"head.aspp.branches.\1.1.",
                            "ASPP branch BN"),
                  Rule(rf"^{scope}hybridsequential4_conv0_weight$", "head.aspp.branches.4.1.weight",
                       "ASPP image-pooling 1x1 conv"),
                  *bn_rules(rf"{scope}hybridsequential4_batchnorm0_", "head.aspp.branches.4.2.",
                            "ASPP image-pooling BN"),
                  Rule(rf"^{scope}hybridsequential5_conv0_weight$", "head.aspp.project.0.weight",
                       "ASPP projection 1x1 conv"),
                  *bn_rules(rf"{scope}hybridsequential5_batchnorm0_", "head.aspp.project.1.", "ASPP projection BN")]
        # the head's own block adds its layers outside its sequential's scope: named in the head's
        rules += _symbol_head(scope, "head.classifier.", "DeepLab head")
    if cfg.aux:
        rules += _symbol_head(rf"{net}{aux_scope}", "aux_head.", "auxiliary FCN head (stage 3)")
    return rules


# ------------------------------------------------------------------------------------ parity


def parity_pairs(cfg: SegConfig) -> tuple[tuple[str, str], ...]:
    """Stage outputs, head logits before the resize, and each head's composite blocks (pyramid
    concat, ASPP image-pooling branch after its resize, ASPP output)."""
    pairs = [(f"layer{i}", f"backbone.layer{i}") for i in range(1, 5)] + [("head", "head")]
    if cfg.head == "psp":
        pairs.append(("head.psp", "head.pyramid"))
    elif cfg.head == "deeplab":
        pairs += [("head.aspp.concurent.4", "head.aspp.branches.4"), ("head.aspp", "head.aspp")]
    if cfg.aux:
        pairs.append(("auxlayer", "aux_head"))
    return tuple(pairs)


# ------------------------------------------------------------------------------------ registry

# name, head, depth, dataset, gluoncv model_store sha1, pixAcc (None: not published), mIoU
_MODELS = [
    ("fcn_resnet50_ade", "fcn", 50, "ade", "3479525af7bdbf345e74e150aaae2e48174c0c5f", 79.0, 39.5),
    ("fcn_resnet101_ade", "fcn", 101, "ade", "d544440a35586f662ed1a5405ab9aa89cd750558", 80.6, 41.6),
    ("fcn_resnet101_coco", "fcn", 101, "coco", "766cdf9cc3e5b980b141643f054db5b48863f634", 92.2, 66.2),
    ("fcn_resnet101_voc", "fcn", 101, "voc", "12c2b9b3be7d4e133e52477150a9b3e616626a82", None, 83.6),
    ("psp_resnet50_ade", "psp", 50, "ade", "3f220f537400dfa607c3d041ed3b172db39b0b01", 80.1, 41.5),
    ("psp_resnet101_ade", "psp", 101, "ade", "240a4758b506447faf7c55cd7a7837d66f5039a6", 80.8, 43.3),
    ("psp_resnet101_coco", "psp", 101, "coco", "09f89cad0e107cb2bffdb1b07706ba31798096f2", 92.4, 70.4),
    ("psp_resnet101_voc", "psp", 101, "voc", "2c2f4e1c2b11461b52598a4b2038bccbcfc166eb", None, 85.1),
    # gluon-cv's current Cityscapes table (the model-store file d0e86031 replaced the one the
    # older table's 77.1 mIoU was measured on)
    ("psp_resnet101_citys", "psp", 101, "citys", "d0e8603120ab02118a8973d52a26b8296d1b4078", 96.4, 79.9),
    ("deeplab_resnet50_ade", "deeplab", 50, "ade", "c7789b237adc7253405bee57c84d53b15db45942", 80.5, 42.5),
    ("deeplab_resnet101_ade", "deeplab", 101, "ade", "bf1584dfcec12063eff3075ee643e181c0f6d443", 81.1, 44.1),
    ("deeplab_resnet101_coco", "deeplab", 101, "coco", "ed817f76086abb4c3404af62ec1b5487c67642b7", 92.5, 70.4),
    ("deeplab_resnet101_voc", "deeplab", 101, "voc", "311ed22c63f3ac28b5f1e1663c458f26600e62da", None, 86.2),
    ("deeplab_resnet152_voc", "deeplab", 152, "voc", "d35bea8817935d1ab310ef1e6dd06bb18c2d5f0d", None, 86.7),
]

NOTES = {
    "backbone": ("Backbone: ResNet-v1s (deep stem 64-64-128), dilated: stages 3/4 at stride 1, dilation 2/4, "
                 "the first block's 3x3 at dilation 1/2; BN eps 1e-5."),
    "fcn": "FCN head: conv3x3 2048->512, BN, ReLU, dropout 0.1, conv1x1 to classes.",
    "psp": ("PSP head: adaptive average pools 1/2/3/6, each 1x1 conv 2048->512, BN, ReLU, bilinear resize "
            "back (align_corners=True), concatenated with the input; conv3x3 4096->512, BN, ReLU, dropout, conv1x1."),
    "deeplab": ("DeepLabV3 head: ASPP (1x1; 3x3 at dilation 12/24/36; global pool + 1x1, resized), 256 each, "
                "projection 1280->256 (dropout 0.5), conv3x3 256->256, BN, ReLU, dropout, conv1x1."),
    "outputs": ("Outputs (main, aux): both resized to the input size with bilinear align_corners=True (MXNet "
                "BilinearResize2D); gluoncv resizes to its fixed crop size instead, the same at the native size. "
                "gluoncv's PSP/DeepLab pooled branches also resize to crop/8 and fail at any other input size."),
}


def _metrics(dataset: str, pix: float | None, miou: float) -> tuple[Metric, ...]:
    label = DATASETS[dataset][2]
    out = (Metric("pixAcc", pix, label, "gluon-cv model zoo"),) if pix is not None else ()
    return out + (Metric("mIoU", miou, label, "gluon-cv model zoo"),)


def _source_kwargs(dataset: str) -> dict:
    """get_model kwargs: no ImageNet download for the backbone; the crop size fixes gluoncv's
    internal resize targets, so a non-default crop must be passed for the net to run at it."""
    crop = DATASETS[dataset][1]
    return {"pretrained_base": False, **({"crop_size": crop} if crop != 480 else {})}


def config(head: str, depth: int, dataset: str) -> SegConfig:
    return SegConfig(V1S_DILATED[depth], head, DATASETS[dataset][0], bn_eps=EPS)


_PHOTOS = 2  # parity photographs per segmenter
for _name, _head, _depth, _data, _sha1, _pix, _miou in _MODELS:
    _cfg = config(_head, _depth, _data)
    register(ModelSpec(
        name=_name, family="gluon.segmentation", framework="gluon", task="segmentation",
        source_format="mxnet-params", build=functools.partial(SegmentationNet, _cfg),
        rules={"gluon": gluon_rules(_cfg), "export": export_rules(_cfg)},
        defaults=BN_DEFAULTS, preprocess=segmentation_eval(DATASETS[_data][1]),
        weights=functools.partial(gluoncv_weights, _name, _sha1),
        source_model=_name, source_kwargs=_source_kwargs(_data),
        seed_output_std={"head.block.4": 3.0, "auxlayer.block.4": 3.0},
        metrics=_metrics(_data, _pix, _miou), extra_pairs=parity_pairs(_cfg),
        slow=_depth > 50, parity_images=_PHOTOS,
        seed_images=0 if _depth > 50 else _PHOTOS,  # the CI models: calibrated on their parity photographs (CI time)
        notes=(NOTES["backbone"], NOTES[_head], NOTES["outputs"]),
    ))
