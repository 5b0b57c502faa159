"""gluoncv ResNet v1 (ImageNet) -> converters.arch.resnet.ResNet.

Two source layouts: "gluon" (``save_parameters``: structural names such as
``features.4.0.body.0.weight``) and "export" (``HybridBlock.export``: symbol names such as
``resnetv10_stage1_conv0_weight``)."""
from __future__ import annotations

import functools
import re
from typing import Iterator

from ..arch.resnet import ResNet, ResNetConfig
from ..registry import Metric, ModelSpec, Preprocess, register
from ..rules import Default, Rule, bn_rules
from ..sources import gluoncv_weights

BN_DEFAULTS = (Default(r"^.*num_batches_tracked$", 0, "torch BN step counter; unused in eval, MXNet has none"),)

V1_50 = ResNetConfig("bottleneck", (3, 4, 6, 3), (64, 256, 512, 1024, 2048),
                     stride_in_1x1=True, bias_1x1=True, bn_eps=1e-5)

IMAGENET_EVAL = Preprocess("imagenet", (224, 224), "short-side", resize_short=256, interp="bilinear",
                           crop="center-floor")


def _block_layers(cfg: ResNetConfig) -> tuple[str, ...]:
    """Target names of one block's conv/BN pairs in gluon's creation order (body, then downsample)."""
    return ("conv1", "conv2", "conv3") if cfg.block == "bottleneck" else ("conv1", "conv2")


def structural_rules(cfg: ResNetConfig, src: str = "", dst: str = "") -> list[Rule]:
    """Rules for ``save_parameters`` names; ``src``/``dst`` prefix both sides (used by SSD)."""
    s, rules = re.escape(src), []
    rules.append(Rule(rf"^{s}features\.0\.weight$", f"{dst}conv1.weight", "stem 7x7 conv"))
    rules += bn_rules(rf"{s}features\.1\.", f"{dst}bn1.", "stem BN")
    for i in range(len(cfg.layers)):
        stage = rf"{s}features\.{i + 4}\.(\d+)\."  # features[0:4] is the stem
        for k, name in enumerate(_block_layers(cfg)):
            rules.append(Rule(rf"^{stage}body\.{3 * k}\.(weight|bias)$", rf"{dst}layer{i + 1}.\1.{name}.\2",
                              f"stage {i + 1} body conv {k + 1}"))
            rules += bn_rules(rf"{stage}body\.{3 * k + 1}\.", rf"{dst}layer{i + 1}.\1.bn{k + 1}.",
                              f"stage {i + 1} body BN {k + 1}")
        rules.append(Rule(rf"^{stage}downsample\.0\.weight$", rf"{dst}layer{i + 1}.\1.downsample.0.weight",
                          f"stage {i + 1} projection shortcut conv"))
        rules += bn_rules(rf"{stage}downsample\.1\.", rf"{dst}layer{i + 1}.\1.downsample.1.",
                          f"stage {i + 1} projection shortcut BN")
    rules.append(Rule(rf"^{s}output\.(weight|bias)$", rf"{dst}fc.\1", "classifier (Dense is [out, in] like Linear)"))
    return rules


def _symbol_layers(cfg: ResNetConfig) -> Iterator[tuple[str, str, str, str]]:
    """(symbol conv, symbol BN, target conv, target BN) in gluon's creation order: numbering is
    per name scope (stem, then each stage), body convs first, then the projection shortcut."""
    yield "conv0", "batchnorm0", "conv1", "bn1"
    cin = cfg.channels[0]
    for i, (n, cout) in enumerate(zip(cfg.layers, cfg.channels[1:])):
        stage, k = f"stage{i + 1}_", 0
        for j in range(n):
            block = f"layer{i + 1}.{j}."
            for p, name in enumerate(_block_layers(cfg)):
                yield f"{stage}conv{k}", f"{stage}batchnorm{k}", block + name, f"{block}bn{p + 1}"
                k += 1
            if j == 0 and (cin != cout or i > 0):  # same condition as the target's shortcut
                yield f"{stage}conv{k}", f"{stage}batchnorm{k}", block + "downsample.0", block + "downsample.1"
                k += 1
        cin = cout


def symbol_rules(cfg: ResNetConfig, src: str, dst: str = "", moving: str = "running",
                 classifier: bool = True) -> list[Rule]:
    """Rules for symbol names (export layout, or a SymbolBlock inside a detector). ``src`` is the
    regex prefix before ``conv0`` (e.g. ``resnetv10_``); ``moving`` names the BN statistics."""
    rules = []
    for conv, bn, conv_t, bn_t in _symbol_layers(cfg):
        rules.append(Rule(rf"^{src}{conv}_(weight|bias)$", rf"{dst}{conv_t}.\1", f"symbol {conv}"))
        rules += bn_rules(rf"{src}{bn}_", f"{dst}{bn_t}.", f"symbol {bn}",
                          names=("gamma", "beta", f"{moving}_mean", f"{moving}_var"))
    if classifier:
        rules.append(Rule(rf"^{src}dense0_(weight|bias)$", rf"{dst}fc.\1", "classifier (Dense is [out, in])"))
    return rules


register(ModelSpec(
    name="resnet50_v1", family="gluon.resnet", framework="gluon", task="classification",
    source_format="mxnet-params", build=lambda: ResNet(V1_50),
    rules={"gluon": structural_rules(V1_50), "export": symbol_rules(V1_50, r"resnetv1\d+_")},  # any instance counter
    defaults=BN_DEFAULTS, preprocess=IMAGENET_EVAL,
    weights=functools.partial(gluoncv_weights, "resnet50_v1", "cc729d95031ca98cf2ff362eb57dee4d9994e4b2"),
    source_model="resnet50_v1", seed_output_std={"output": 3.0},
    metrics=(Metric("top1", 77.36, "ImageNet val", "gluon-cv model zoo"),
             Metric("top5", 93.57, "ImageNet val", "gluon-cv model zoo")),
    notes=("ResNet v1: stride on the first 1x1 conv; 1x1 body convs have a bias; BN eps 1e-5.",),
))
