"""gluoncv MobileNet v1 (``mobilenet<m>``) and v2 (``mobilenetv2_<m>``) -> converters.arch.mobilenet.

Two source layouts: "gluon" (``save_parameters``: ``features.<i>`` is a flat list of conv, BN,
activation; v2 blocks nest as ``features.<i>.out.<j>``) and "export" (``HybridBlock.export``:
``mobilenet0_conv3_weight``; v2 ``mobilenetv20_features_linearbottleneck2_conv1_weight``)."""
from __future__ import annotations

import functools
import re
from typing import Iterator

from ..arch.mobilenet import MobileNet, MobileNetConfig
from ..registry import Metric, ModelSpec, imagenet_eval, register
from ..rules import Rule, bn_rules
from ..sources import gluoncv_weights
from .resnet import BN_DEFAULTS

# gluon's BatchNorm default epsilon is 1e-5 and MobileNet passes none; v1 uses plain ReLU
# (nn.Activation('relu')), v2 gluoncv's ReLU6 (clip(x, 0, 6)).
V1_ACT, V2_ACT, BN_EPS = "relu", "relu6", 1e-5

# Layer = (structural conv key prefix, structural BN key prefix, symbol conv, symbol BN, target)
Layer = tuple[str, str, str, str, str]


def _v1_layers(cfg: MobileNetConfig) -> Iterator[Layer]:
    """``features`` holds conv, BN, ReLU per layer (3 slots): the stem at 0, then each block's
    depthwise and pointwise layers; symbol convs/BNs are numbered in the same order."""
    yield "features.0", "features.1", "conv0", "batchnorm0", "stem"
    for i, _ in enumerate(cfg.v1_blocks()):
        for k, part in enumerate(("dw", "pw")):
            pos, num = 3 + 6 * i + 3 * k, 1 + 2 * i + k
            yield f"features.{pos}", f"features.{pos + 1}", f"conv{num}", f"batchnorm{num}", f"blocks.{i}.{part}"


def _v2_layers(cfg: MobileNetConfig) -> Iterator[Layer]:
    """Stem at ``features.0``; block i is ``features.<3+i>`` (its own name scope
    ``features_linearbottleneck<i>_``) whose ``out`` holds expansion (absent when t == 1),
    depthwise and projection layers, 3 slots each; the head conv follows the blocks."""
    yield "features.0", "features.1", "features_conv0", "features_batchnorm0", "stem"
    blocks = list(cfg.v2_blocks())
    for i, (_, _, t, _) in enumerate(blocks):
        parts = (("expand",) if t != 1 else ()) + ("dw", "project")
        for k, part in enumerate(parts):
            yield (f"features.{3 + i}.out.{3 * k}", f"features.{3 + i}.out.{3 * k + 1}",
                   f"features_linearbottleneck{i}_conv{k}", f"features_linearbottleneck{i}_batchnorm{k}",
                   f"blocks.{i}.{part}")
    head = 3 + len(blocks)
    yield f"features.{head}", f"features.{head + 1}", "features_conv1", "features_batchnorm1", "head"


def layers(cfg: MobileNetConfig) -> Iterator[Layer]:
    return _v1_layers(cfg) if cfg.version == 1 else _v2_layers(cfg)


def structural_rules(cfg: MobileNetConfig) -> list[Rule]:
    rules = []
    for conv, bn, _, _, dst in layers(cfg):
        rules.append(Rule(rf"^{re.escape(conv)}\.weight$", f"{dst}.conv.weight", f"{dst} conv (no bias)"))
        rules += bn_rules(rf"{re.escape(bn)}\.", f"{dst}.bn.", f"{dst} BN")
    if cfg.version == 1:
        rules.append(Rule(r"^output\.(weight|bias)$", r"fc.\1", "classifier (Dense is [out, in] like Linear)"))
    else:
        rules.append(Rule(r"^output\.0\.weight$", "classifier.weight", "classifier: bias-free 1x1 conv"))
    return rules


def symbol_rules(cfg: MobileNetConfig, src: str) -> list[Rule]:
    """``src`` is the regex scope prefix, the instance counter matched by \\d+."""
    rules = []
    for _, _, conv, bn, dst in layers(cfg):
        rules.append(Rule(rf"^{src}{conv}_weight$", f"{dst}.conv.weight", f"symbol {conv}"))
        rules += bn_rules(rf"{src}{bn}_", f"{dst}.bn.", f"symbol {bn}")
    if cfg.version == 1:
        rules.append(Rule(rf"^{src}dense0_(weight|bias)$", r"fc.\1", "classifier (Dense is [out, in])"))
    else:
        rules.append(Rule(rf"^{src}output_pred_weight$", "classifier.weight", "classifier: bias-free 1x1 conv"))
    return rules


def _extra_pairs(cfg: MobileNetConfig) -> tuple[tuple[str, str], ...]:
    """v2: every block's output (after the shortcut add) and the pooled features."""
    if cfg.version == 1:
        return ()
    n = len(list(cfg.v2_blocks()))
    return tuple((f"features.{3 + i}", f"blocks.{i}") for i in range(n)) + (("features", "pool"),)


def _register(name: str, cfg: MobileNetConfig, sha1: str, top1: float, top5: float) -> None:
    scope = r"mobilenet\d+_" if cfg.version == 1 else r"mobilenetv2\d+_"  # any instance counter
    arch = ("MobileNet v1: plain ReLU, depthwise 3x3 convs carry the stride, Dense classifier"
            if cfg.version == 1 else
            "MobileNet v2: ReLU6, linear projection, shortcut iff stride 1 and equal widths; last conv "
            f"{cfg.v2_last} wide; classifier is a bias-free 1x1 conv on the pooled features, then flatten")
    register(ModelSpec(
        name=name, family="gluon.mobilenet", framework="gluon", task="classification",
        source_format="mxnet-params", build=functools.partial(MobileNet, cfg),
        rules={"gluon": structural_rules(cfg), "export": symbol_rules(cfg, scope)},
        defaults=BN_DEFAULTS, preprocess=imagenet_eval(224),
        weights=functools.partial(gluoncv_weights, name, sha1),
        source_model=name, seed_output_std={"output": 3.0},
        metrics=(Metric("top1", top1, "ImageNet val", "gluon-cv model zoo"),
                 Metric("top5", top5, "ImageNet val", "gluon-cv model zoo")),
        extra_pairs=_extra_pairs(cfg),
        notes=(f"{arch}.",
               f"Widths are int(c * {cfg.multiplier}) (truncated, not rounded to multiples of 8); "
               f"BN eps {cfg.bn_eps}; global average pool.")))


for _name, _m, _sha1, _top1, _top5 in (
        ("mobilenet1.0", 1.0, "efbb2ca3881998d5a8c5cb6c457a28c1e085fed5", 73.28, 91.30),
        ("mobilenet0.75", 0.75, "84c801e27b1ac5040b6e945c0d1f8d49e9a59f3d", 70.25, 89.49),
        ("mobilenet0.5", 0.5, "0130d2aa2f7e3a63db35579b243e25f512172371", 65.20, 86.34),
        ("mobilenet0.25", 0.25, "f0046a3da4e150b85da58ea31913dbb86e7540d1", 52.91, 76.94)):
    _register(_name, MobileNetConfig(1, _m, V1_ACT, bn_eps=BN_EPS), _sha1, _top1, _top5)

for _name, _m, _sha1, _top1, _top5 in (
        ("mobilenetv2_1.0", 1.0, "f9952bcde7a7982947ac5240546e1c1c8f057370", 71.92, 90.56),
        ("mobilenetv2_0.75", 0.75, "b56e3d1c33eb52d0b90678db4ce6c5ca6c9a6704", 69.61, 88.95),
        ("mobilenetv2_0.5", 0.5, "0803818513599fa1329524ee3607b708b4a4630f", 64.49, 85.47),
        ("mobilenetv2_0.25", 0.25, "9b1d2cc38fed4cd171a7f7a0d17fe1a905573887", 50.74, 74.56)):
    _register(_name, MobileNetConfig(2, _m, V2_ACT, bn_eps=BN_EPS), _sha1, _top1, _top5)
