"""gluoncv CIFAR-10 networks (ResNet v1/v2, wide ResNet, ResNeXt-29) -> converters.arch.cifar.CifarResNet.

Two source layouts: "gluon" (``save_parameters``: structural names such as
``features.2.0.body.0.weight``) and "export" (``HybridBlock.export``: symbol names such as
``cifarresnetv10_stage1_conv0_weight``). gluon's ``features`` sequence holds the stem layers, one
entry per stage, then the head; ``output`` is the Dense classifier."""
from __future__ import annotations

import functools
import re
from typing import Iterator

import numpy as np
from torch import nn

from ..arch.cifar import CifarResNet, CifarResNetConfig
from ..fixups import Fixup
from ..registry import Metric, ModelSpec, cifar_eval, register
from ..rules import Rule, bn_rules
from ..sources import gluoncv_weights
from .resnet import BN_DEFAULTS


def resnet_v1(depth: int) -> CifarResNetConfig:
    """CIFARResNetV1: 3x(depth-2)/6 basic blocks of 16/32/64; stem conv + BN with NO ReLU after it."""
    n = (depth - 2) // 6
    return CifarResNetConfig("basic", (n,) * 3, (16, 16, 32, 64), stem_norm=True, stem_relu=False)


def resnet_v2(depth: int) -> CifarResNetConfig:
    """CIFARResNetV2: input BN, bare stem conv, pre-activation blocks whose projection reads the
    block's RAW input, final BN + ReLU."""
    n = (depth - 2) // 6
    return CifarResNetConfig("preact", (n,) * 3, (16, 16, 32, 64), input_norm=True, stem_norm=False,
                             shortcut_from_activation=False)


def wide_resnet(depth: int, k: int) -> CifarResNetConfig:
    """CIFARWideResNet: input BN, stem conv + BN (no ReLU: the first block's BN-ReLU follows),
    pre-activation blocks whose projection reads the block's ACTIVATED input, final BN + ReLU."""
    n = (depth - 4) // 6
    return CifarResNetConfig("preact", (n,) * 3, (16, 16 * k, 32 * k, 64 * k), input_norm=True,
                             stem_norm=True, shortcut_from_activation=True)


def resnext29(cardinality: int, width: int) -> CifarResNetConfig:
    """CIFARResNext: stem conv + BN + ReLU (64), 3 stages of 3 grouped bottlenecks, outputs 4x the
    stage base 64/128/256, every stage's first block projected."""
    return CifarResNetConfig("grouped_bottleneck", (3, 3, 3), (64, 256, 512, 1024), stem_norm=True,
                             stem_relu=True, cardinality=cardinality, bottleneck_width=width)


# gluon BatchNorm(scale=False) runs the op with fix_gamma=True: the stored gamma is read as 1.
# (center=False only freezes beta's training; the op still adds the stored beta, so it is mapped.)
FIX_GAMMA_DATA_BN = Fixup("mxnet_fix_gamma", (nn.BatchNorm2d,), "weight", lambda a: np.ones_like(a),
                          "input BatchNorm(scale=False) runs with fix_gamma=True: stored gamma read as 1",
                          where=r"^data_bn$")


# -- where each layer sits in gluon --------------------------------------------------------------

def _stem_layers(cfg: CifarResNetConfig) -> tuple[list[tuple[int, str, str]], int]:
    """((features index, kind, target) of the stem layers, features index of stage 1)."""
    out, i = [], 0
    if cfg.input_norm:
        out.append((i, "bn", "data_bn"))
        i += 1
    out.append((i, "conv", "conv1"))
    i += 1
    if cfg.stem_norm:
        out.append((i, "bn", "bn1"))
        i += 1
    return out, i + int(cfg.stem_relu)  # a ReLU occupies a features slot too


def _block_layers(cfg: CifarResNetConfig) -> tuple[tuple[str, str, str], ...]:
    """(structural name in the block, kind, target name) in gluon's creation order, without the
    projection shortcut (which gluon creates last)."""
    if cfg.block == "basic":  # body = conv, BN, relu, conv, BN
        return ("body.0", "conv", "conv1"), ("body.1", "bn", "bn1"), ("body.3", "conv", "conv2"), \
            ("body.4", "bn", "bn2")
    if cfg.block == "grouped_bottleneck":  # body = (conv, BN, relu) x 2, conv, BN
        return tuple((f"body.{3 * k + j}", kind, f"{kind}{k + 1}") for k in range(3)
                     for j, kind in enumerate(("conv", "bn")))
    return ("bn1", "bn", "bn1"), ("conv1", "conv", "conv1"), ("bn2", "bn", "bn2"), ("conv2", "conv", "conv2")


def _projection(cfg: CifarResNetConfig) -> tuple[tuple[str, str, str], ...]:
    """Projection shortcut: Sequential(conv, BN) post-activation; a bare conv in pre-activation."""
    if cfg.preact:
        return (("downsample", "conv", "downsample.0"),)
    return ("downsample.0", "conv", "downsample.0"), ("downsample.1", "bn", "downsample.1")


def _head_index(cfg: CifarResNetConfig) -> int:
    return _stem_layers(cfg)[1] + len(cfg.layers)


def _projected(cfg: CifarResNetConfig, stage: int) -> bool:
    """Whether a stage's first block has a projection shortcut (same condition as the target)."""
    cin, cout = cfg.channels[stage], cfg.channels[stage + 1]
    return cin != cout or stage > 0


def _param_rules(src: str, dst: str, kind: str, why: str, bn_names: tuple[str, str, str, str]) -> list[Rule]:
    if kind == "bn":
        return bn_rules(src, dst, why, names=bn_names)
    return [Rule(rf"^{src}weight$", rf"{dst}weight", f"{why} (no bias)")]


GLUON_BN = ("gamma", "beta", "running_mean", "running_var")


def structural_rules(cfg: CifarResNetConfig) -> list[Rule]:
    """Rules for ``save_parameters`` names."""
    rules: list[Rule] = []
    stem, first = _stem_layers(cfg)
    for i, kind, tgt in stem:
        rules += _param_rules(rf"features\.{i}\.", f"{tgt}.", kind, f"stem {tgt}", GLUON_BN)
    for s in range(len(cfg.layers)):
        block = rf"features\.{first + s}\.(\d+)\."
        for name, kind, tgt in _block_layers(cfg) + _projection(cfg):
            rules += _param_rules(rf"{block}{re.escape(name)}\.", rf"layer{s + 1}.\1.{tgt}.", kind,
                                  f"stage {s + 1} block {tgt}", GLUON_BN)
    if cfg.preact:
        rules += bn_rules(rf"features\.{_head_index(cfg)}\.", "final_bn.", "head BN (before ReLU and pooling)")
    rules.append(Rule(r"^output\.(weight|bias)$", r"fc.\1", "classifier (Dense is [out, in] like Linear)"))
    return rules


def symbol_layers(cfg: CifarResNetConfig) -> Iterator[tuple[str, str, str]]:
    """(symbol layer, kind, target) in creation order. Numbering is per name scope and per layer
    type: the root scope (stem, head BN, dense) and each ``stageN_`` scope count separately."""
    root = {"conv": 0, "bn": 0}
    sym = {"conv": "conv", "bn": "batchnorm"}

    def take(counter: dict[str, int], kind: str) -> str:
        counter[kind] += 1
        return f"{sym[kind]}{counter[kind] - 1}"

    for _, kind, tgt in _stem_layers(cfg)[0]:
        yield take(root, kind), kind, tgt
    for s, n in enumerate(cfg.layers):
        scope = {"conv": 0, "bn": 0}
        for j in range(n):
            layers = _block_layers(cfg) + (_projection(cfg) if j == 0 and _projected(cfg, s) else ())
            for _, kind, tgt in layers:
                yield f"stage{s + 1}_{take(scope, kind)}", kind, f"layer{s + 1}.{j}.{tgt}"
    if cfg.preact:
        yield take(root, "bn"), "bn", "final_bn"


def symbol_rules(cfg: CifarResNetConfig, src: str) -> list[Rule]:
    """Rules for export names; ``src`` is the regex prefix of the network's scope."""
    rules: list[Rule] = []
    for layer, kind, tgt in symbol_layers(cfg):
        rules += _param_rules(f"{src}{layer}_", f"{tgt}.", kind, f"symbol {layer}", GLUON_BN)
    rules.append(Rule(rf"^{src}dense0_(weight|bias)$", r"fc.\1", "classifier (Dense is [out, in])"))
    return rules


def block_pairs(cfg: CifarResNetConfig) -> tuple[tuple[str, str], ...]:
    """Every residual block's output (after the shortcut sum, and its ReLU where there is one)."""
    first = _stem_layers(cfg)[1]
    return tuple((f"features.{first + s}.{j}", f"layer{s + 1}.{j}")
                 for s, n in enumerate(cfg.layers) for j in range(n))


# (name, config, export scope regex, sha1 from gluoncv's model_store, CIFAR-10 test accuracy)
MODELS = (
    ("cifar_resnet20_v1", resnet_v1(20), r"cifarresnetv1\d+_", "121e1579d811b091940b3b1fa033e1f0d1dca40f", 92.1),
    ("cifar_resnet56_v1", resnet_v1(56), r"cifarresnetv1\d+_", "2fb251e60babdceb103e9659b3baa0dea20a14d7", 93.6),
    ("cifar_resnet110_v1", resnet_v1(110), r"cifarresnetv1\d+_", "a0e1f860475bf5369f6da07e0c2e03a4ae9cff9c", 93.0),
    ("cifar_resnet20_v2", resnet_v2(20), r"cifarresnetv2\d+_", "4f2d18804c94f2d283b8b45256d048bd3d6dd479", 92.1),
    ("cifar_resnet56_v2", resnet_v2(56), r"cifarresnetv2\d+_", "0a3e74104ec7bcfffefe2d9d5cc1f8e74311ec51", 93.7),
    ("cifar_resnet110_v2", resnet_v2(110), r"cifarresnetv2\d+_", "bf160f8b3cb3884a1ea871739f3c8e151e114159", 94.3),
    ("cifar_wideresnet16_10", wide_resnet(16, 10), r"cifarwideresnet\d+_",
     "7c07b5ba6e850f9c37ca1e57c0a2e529455cc2e4", 95.1),
    ("cifar_wideresnet28_10", wide_resnet(28, 10), r"cifarwideresnet\d+_",
     "4a3466aadd4c3ddbcb968bca862d0e59d6f15ec1", 95.6),
    ("cifar_wideresnet40_8", wide_resnet(40, 8), r"cifarwideresnet\d+_",
     "085ca2afabbe0ddfe87d0edc5408bcfcfbffd414", 95.9),
    ("cifar_resnext29_16x64d", resnext29(16, 64), r"cifarresnext\d+_",
     "e8ff9f4f9cb319dfbf524d01e487af9a7f8a3cf5", 96.3),
)

_NOTES = {
    "basic": ("CIFAR ResNet v1: no ReLU between the stem BN and the first block; BN eps 1e-5.",),
    "preact": ("Pre-activation: the input BN has scale=False (fix_gamma, gamma read as 1) but its "
               "stored beta is applied; final BN + ReLU before pooling; BN eps 1e-5.",),
    "grouped_bottleneck": ("ResNeXt-29: grouped 3x3 (cardinality groups), inner width "
                           "cardinality x floor(base x width / 64); stride on the 3x3; BN eps 1e-5.",),
}


def _notes(cfg: CifarResNetConfig) -> tuple[str, ...]:
    notes = _NOTES[cfg.block]
    if cfg.preact and cfg.stem_norm:
        notes += ("Stem conv + BN with no ReLU: the first block's own BN + ReLU follows directly.",)
    if cfg.preact:
        notes += ("Projection shortcut reads the block's "
                  + ("activated (BN+ReLU) input; dropout (training only, rate 0 as built) sits "
                     "between the two convs." if cfg.shortcut_from_activation else "raw input."),)
    return notes


for _name, _cfg, _scope, _sha1, _top1 in MODELS:
    register(ModelSpec(
        name=_name, family="gluon.cifar", framework="gluon", task="classification",
        source_format="mxnet-params", build=functools.partial(CifarResNet, _cfg),
        rules={"gluon": structural_rules(_cfg), "export": symbol_rules(_cfg, _scope)},
        fixups=(FIX_GAMMA_DATA_BN,) if _cfg.input_norm else (), defaults=BN_DEFAULTS,
        preprocess=cifar_eval(), weights=functools.partial(gluoncv_weights, _name, _sha1),
        source_model=_name, seed_output_std={"output": 3.0},
        metrics=(Metric("top1", _top1, "CIFAR-10 test", "gluon-cv model zoo"),),
        extra_pairs=block_pairs(_cfg), parity_images=6, notes=_notes(_cfg),
    ))
