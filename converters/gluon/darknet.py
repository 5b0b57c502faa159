"""gluoncv DarkNet-53 (ImageNet classifier) -> converters.arch.darknet.DarkNet.

Two source layouts: "gluon" (``save_parameters``: ``features.<i>`` is the stem, then per stage a
stride-2 conv cell and residual blocks ``features.<i>.body.<0|1>``; each cell is conv, BN, leaky)
and "export" (``HybridBlock.export``: the blocks open no name scope of their own, so every conv
and BN is numbered in one sequence, ``darknetv30_conv<k>`` / ``darknetv30_batchnorm<k>``)."""
from __future__ import annotations

import functools
import re
from typing import Iterator

from ..arch.darknet import DarkNet, DarkNetConfig
from ..registry import Metric, ModelSpec, imagenet_eval, register
from ..rules import Rule, bn_rules
from ..sources import gluoncv_weights
from .resnet import BN_DEFAULTS

# gluoncv's _conv2d cell: BatchNorm(epsilon=1e-5), LeakyReLU(0.1); the stem conv has stride 1.
DARKNET53 = DarkNetConfig(layers=(1, 2, 8, 8, 4), channels=(32, 64, 128, 256, 512, 1024),
                          bn_eps=1e-5, leaky_slope=0.1, stem_stride=1)


def layers(cfg: DarkNetConfig) -> Iterator[tuple[str, int, str]]:
    """(structural cell prefix, symbol number, target cell) in creation order."""
    yield "features.0", 0, "stem"
    pos, num = 1, 1
    for i, n in enumerate(cfg.layers):
        yield f"features.{pos}", num, f"stages.{i}.down"
        pos, num = pos + 1, num + 1
        for j in range(n):
            for k in range(2):
                yield f"features.{pos}.body.{k}", num, f"stages.{i}.blocks.{j}.conv{k + 1}"
                num += 1
            pos += 1


def structural_rules(cfg: DarkNetConfig) -> list[Rule]:
    rules = []
    for cell, _, dst in layers(cfg):
        c = re.escape(cell)
        rules.append(Rule(rf"^{c}\.0\.weight$", f"{dst}.conv.weight", f"{dst} conv (no bias)"))
        rules += bn_rules(rf"{c}\.1\.", f"{dst}.bn.", f"{dst} BN")
    rules.append(Rule(r"^output\.(weight|bias)$", r"fc.\1", "classifier (Dense is [out, in] like Linear)"))
    return rules


def symbol_rules(cfg: DarkNetConfig, src: str) -> list[Rule]:
    rules = []
    for _, num, dst in layers(cfg):
        rules.append(Rule(rf"^{src}conv{num}_weight$", f"{dst}.conv.weight", f"symbol conv{num}"))
        rules += bn_rules(rf"{src}batchnorm{num}_", f"{dst}.bn.", f"symbol batchnorm{num}")
    rules.append(Rule(rf"^{src}dense0_(weight|bias)$", r"fc.\1", "classifier (Dense is [out, in])"))
    return rules


def _block_pairs(cfg: DarkNetConfig) -> tuple[tuple[str, str], ...]:
    """Each residual block's output (after the identity add)."""
    pairs, pos = [], 1
    for i, n in enumerate(cfg.layers):
        pos += 1
        for j in range(n):
            pairs.append((f"features.{pos}", f"stages.{i}.blocks.{j}"))
            pos += 1
    return tuple(pairs)


register(ModelSpec(
    name="darknet53", family="gluon.darknet", framework="gluon", task="classification",
    source_model="darknet53", source_format="mxnet-params", build=functools.partial(DarkNet, DARKNET53),
    rules={"gluon": structural_rules(DARKNET53), "export": symbol_rules(DARKNET53, r"darknetv3\d+_")},
    defaults=BN_DEFAULTS, preprocess=imagenet_eval(224),
    weights=functools.partial(gluoncv_weights, "darknet53", "2189ea49720a116dead245b9b252301cffa18d28"),
    seed_output_std={"output": 3.0},
    metrics=(Metric("top1", 78.56, "ImageNet val", "gluon-cv model zoo"),
             Metric("top5", 94.43, "ImageNet val", "gluon-cv model zoo")),
    extra_pairs=_block_pairs(DARKNET53),
    notes=("DarkNet-53: 3x3 stride-1 stem; each stage a 3x3 stride-2 conv then residual blocks "
           "(1x1 to half width, 3x3 back, identity add with no activation after); every conv is "
           "bias-free, followed by BN (eps 1e-5) and LeakyReLU(0.1); global average pool, Dense.",),
))
