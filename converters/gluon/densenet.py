"""gluoncv DenseNet-121/161/169/201 (ImageNet) -> torchvision.models.DenseNet, the same architecture.

Checked against gluoncv's model_zoo/densenet.py:
- stem conv 7x7/2 pad 3 (no bias), BN, ReLU, MaxPool2D(3, 2, pad 1) ('valid' == torch floor mode;
  both pools skip the padding when taking the max);
- dense layer: BN, ReLU, 1x1 conv (bn_size 4 x growth), BN, ReLU, 3x3 conv pad 1 (growth), no
  dropout; output concat(input, new) on channels, as torchvision's running concatenation;
- transition: BN, ReLU, 1x1 conv halving the width, AvgPool2D(2, 2) (unpadded: count_include_pad
  cannot matter);
- final BN, ReLU, AvgPool2D(7), Flatten, Dense: torchvision uses adaptive (1, 1) pooling, equal only
  on the 7x7 map of the native 224x224 input.
BN eps 1e-5 everywhere (MXNet's and torch's default)."""
from __future__ import annotations

import functools

from torchvision import models

from ..registry import Metric, ModelSpec, imagenet_eval, register
from ..rules import Rule, bn_rules
from ..sources import gluoncv_weights
from .resnet import BN_DEFAULTS

# depth: (stem width, growth rate, layers per dense block)
DENSENET = {121: (64, 32, (6, 12, 24, 16)), 161: (96, 48, (6, 12, 36, 24)),
            169: (64, 32, (6, 12, 32, 32)), 201: (64, 32, (6, 12, 48, 32))}
SHA1 = {121: "f27dbf2dbd5ce9a80b102d89c7483342cd33cb31", 161: "b6c8a95717e3e761bd88d145f4d0a214aaa515dc",
        169: "2603f878403c6aa5a71a124c4a3307143d6820e9", 201: "1cdbc116bc3a1b65832b18cf53e1cb8e7da017eb"}
METRICS = {121: (74.97, 92.25), 161: (77.70, 93.80), 169: (76.17, 93.17), 201: (77.32, 93.62)}

# a dense layer's (gluon index inside ``.1``, torchvision name): BN, ReLU, conv, BN, ReLU, conv
LAYER_PARTS = ((0, "norm1"), (2, "conv1"), (3, "norm2"), (5, "conv2"))


def _stage(s: int) -> int:
    """gluon ``features`` index of dense block ``s`` (1-based): 4 stem blocks, then block/transition."""
    return 2 * s + 2


def structural_rules(depth: int) -> list[Rule]:
    blocks = DENSENET[depth][2]
    rules = [Rule(r"^features\.0\.weight$", "features.conv0.weight", "stem 7x7/2 conv (no bias)"),
             *bn_rules(r"features\.1\.", "features.norm0.", "stem BN")]
    for s, n in enumerate(blocks, 1):
        for j in range(n):
            src, dst = rf"features\.{_stage(s)}\.{j}\.1\.", f"features.denseblock{s}.denselayer{j + 1}."
            for g, t in LAYER_PARTS:
                if t.startswith("conv"):
                    rules.append(Rule(rf"^{src}{g}\.weight$", f"{dst}{t}.weight", f"block {s} layer {j + 1} {t}"))
                else:
                    rules += bn_rules(rf"{src}{g}\.", f"{dst}{t}.", f"block {s} layer {j + 1} {t}")
        if s < len(blocks):
            src, dst = rf"features\.{_stage(s) + 1}\.", f"features.transition{s}."
            rules += [*bn_rules(rf"{src}0\.", f"{dst}norm.", f"transition {s} BN"),
                      Rule(rf"^{src}2\.weight$", f"{dst}conv.weight", f"transition {s} 1x1 conv (halves the width)")]
    rules += [*bn_rules(rf"features\.{_stage(len(blocks)) + 1}\.", "features.norm5.", "final BN"),
              Rule(r"^output\.(weight|bias)$", r"classifier.\1", "classifier (Dense is [out, in] like Linear)")]
    return rules


def symbol_rules(depth: int, src: str = r"densenet\d+_") -> list[Rule]:
    """Export names: the stem and transitions count conv/batchnorm at the top scope (0 = stem,
    1..3 = transitions, batchnorm4 = final); each block counts its own in ``stage{s}_``."""
    blocks = DENSENET[depth][2]
    rules = [Rule(rf"^{src}conv0_weight$", "features.conv0.weight", "symbol conv0: stem conv"),
             *bn_rules(rf"{src}batchnorm0_", "features.norm0.", "symbol batchnorm0: stem BN")]
    for s, n in enumerate(blocks, 1):
        for j in range(n):
            dst = f"features.denseblock{s}.denselayer{j + 1}."
            for k in (0, 1):
                rules += bn_rules(rf"{src}stage{s}_batchnorm{2 * j + k}_", f"{dst}norm{k + 1}.",
                                  f"symbol stage{s}_batchnorm{2 * j + k}")
                rules.append(Rule(rf"^{src}stage{s}_conv{2 * j + k}_weight$", f"{dst}conv{k + 1}.weight",
                                  f"symbol stage{s}_conv{2 * j + k}"))
        if s < len(blocks):
            dst = f"features.transition{s}."
            rules += [*bn_rules(rf"{src}batchnorm{s}_", f"{dst}norm.", f"symbol batchnorm{s}: transition BN"),
                      Rule(rf"^{src}conv{s}_weight$", f"{dst}conv.weight", f"symbol conv{s}: transition conv")]
    last = len(blocks)
    rules += [*bn_rules(rf"{src}batchnorm{last}_", "features.norm5.", f"symbol batchnorm{last}: final BN"),
              Rule(rf"^{src}dense0_(weight|bias)$", r"classifier.\1", "symbol dense0: classifier")]
    return rules


for _depth in DENSENET:
    _name = f"densenet{_depth}"
    _factory = functools.partial(getattr(models, _name), weights=None, num_classes=1000)
    register(ModelSpec(
        name=_name, family="gluon.densenet", framework="gluon", task="classification",
        source_format="mxnet-params", build=_factory, torchvision=_factory,
        rules={"gluon": structural_rules(_depth), "export": symbol_rules(_depth)},
        defaults=BN_DEFAULTS, preprocess=imagenet_eval(224),
        weights=functools.partial(gluoncv_weights, _name, SHA1[_depth]),
        source_model=_name, seed_output_std={"output": 3.0},
        metrics=(Metric("top1", METRICS[_depth][0], "ImageNet val", "gluon-cv model zoo"),
                 Metric("top5", METRICS[_depth][1], "ImageNet val", "gluon-cv model zoo")),
        notes=(f"DenseNet-{_depth}: torchvision's module; its adaptive pool equals gluon's AvgPool2D(7) "
               "only at the native 224x224 input.",),
    ))
