"""gluoncv ResNeXt, SE-ResNeXt and SENet-154 (ImageNet) -> converters.arch.resnext.ResNeXt.

Two source layouts: "gluon" (``save_parameters``: structural names such as
``features.4.0.body.3.weight``) and "export" (``HybridBlock.export``: symbol names such as
``resnext0_stage1_conv1_weight``). gluoncv builds ResNeXt/SE-ResNeXt with ``resnext.ResNext``
(symbol scope ``resnext<N>_``) and SENet-154 with ``senet.SENet`` (scope ``senet<N>_``)."""
from __future__ import annotations

import functools
from typing import Callable, Iterator

from torch import nn

from ..arch.resnext import ResNeXt, ResNeXtConfig
from ..registry import Metric, ModelSpec, imagenet_eval, register
from ..rules import Rule, bn_rules
from ..sources import gluoncv_weights
from .resnet import BN_DEFAULTS

# Stem layer positions inside gluon's ``features`` (conv index, BN index), and where stages start:
# ResNext: conv, BN, relu, max-pool; SENet: three (conv, BN, relu), max-pool.
_STEM = {False: ((0, 1),), True: ((0, 1), (3, 4), (6, 7))}
_FIRST_STAGE = {False: 4, True: 10}
# Block body = conv, BN, relu, conv, BN, relu, conv, BN; se = conv, relu, conv, sigmoid.
_BODY = ((0, 1), (3, 4), (6, 7))


def resnext_config(layers: tuple[int, ...], cardinality: int, width: int, se: bool) -> ResNeXtConfig:
    """gluoncv ResNext: 7x7/2 stem, max-pool 3x3/2 pad 1 floor mode, 1x1 projections, BN eps 1e-5."""
    return ResNeXtConfig(layers, cardinality, width, se=se)


# gluoncv SENet: 3x3 deep stem; MaxPool2D(3, 2, ceil_mode=True) without padding (MXNet 'full'
# convention == torch ceil_mode); first 1x1 conv at half the group width; 3x3/2 (pad 1) projection
# shortcuts after stage 1 (1x1 in stage 1); Dropout(0.2) before the classifier; SE always on.
SENET_154 = ResNeXtConfig((3, 8, 36, 3), 64, 4, se=True, deep_stem=True, pool_padding=0, pool_ceil=True,
                          half_first_1x1=True, downsample_kernel=3, dropout=0.2)


def structural_rules(cfg: ResNeXtConfig) -> list[Rule]:
    """Rules for ``save_parameters`` names."""
    rules: list[Rule] = []
    for k, (conv, bn) in enumerate(_STEM[cfg.deep_stem]):
        rules.append(Rule(rf"^features\.{conv}\.weight$", f"conv{k + 1}.weight", f"stem conv {k + 1}"))
        rules += bn_rules(rf"features\.{bn}\.", f"bn{k + 1}.", f"stem BN {k + 1}")
    for i in range(len(cfg.layers)):
        stage, dst = rf"features\.{_FIRST_STAGE[cfg.deep_stem] + i}\.(\d+)\.", rf"layer{i + 1}.\1."
        for k, (conv, bn) in enumerate(_BODY):
            rules.append(Rule(rf"^{stage}body\.{conv}\.weight$", rf"{dst}conv{k + 1}.weight",
                              f"stage {i + 1} body conv {k + 1}{' (grouped 3x3)' if k == 1 else ''}"))
            rules += bn_rules(rf"{stage}body\.{bn}\.", rf"{dst}bn{k + 1}.", f"stage {i + 1} body BN {k + 1}")
        if cfg.se:
            for k, pos in enumerate((0, 2)):
                rules.append(Rule(rf"^{stage}se\.{pos}\.(weight|bias)$", rf"{dst}se.fc{k + 1}.\2",
                                  f"stage {i + 1} SE gate 1x1 conv {k + 1} (has a bias)"))
        rules.append(Rule(rf"^{stage}downsample\.0\.weight$", rf"{dst}downsample.0.weight",
                          f"stage {i + 1} projection shortcut conv"))
        rules += bn_rules(rf"{stage}downsample\.1\.", rf"{dst}downsample.1.", f"stage {i + 1} projection shortcut BN")
    rules.append(Rule(r"^output\.(weight|bias)$", r"fc.\1", "classifier (Dense is [out, in] like Linear)"))
    return rules


def symbol_layers(cfg: ResNeXtConfig) -> Iterator[tuple[str, str, str]]:
    """(kind, symbol layer, target module) in gluon's creation order. Numbering is per name scope
    (the top scope for the stem, one per stage); blocks add no scope of their own, so in a stage the
    counters run on across blocks: body convs 0-2, SE convs 3-4, then the projection shortcut."""
    for k in range(len(_STEM[cfg.deep_stem])):
        yield "conv", f"conv{k}", f"conv{k + 1}"
        yield "bn", f"batchnorm{k}", f"bn{k + 1}"
    for i, n in enumerate(cfg.layers):
        stage, conv, bn = f"stage{i + 1}_", 0, 0
        for j in range(n):
            block = f"layer{i + 1}.{j}."
            for k in range(3):
                yield "conv", f"{stage}conv{conv}", f"{block}conv{k + 1}"
                yield "bn", f"{stage}batchnorm{bn}", f"{block}bn{k + 1}"
                conv, bn = conv + 1, bn + 1
            if cfg.se:
                for k in range(2):
                    yield "se", f"{stage}conv{conv}", f"{block}se.fc{k + 1}"
                    conv += 1
            if j == 0:
                yield "conv", f"{stage}conv{conv}", f"{block}downsample.0"
                yield "bn", f"{stage}batchnorm{bn}", f"{block}downsample.1"
                conv, bn = conv + 1, bn + 1
    yield "dense", "dense0", "fc"


def symbol_rules(cfg: ResNeXtConfig, src: str) -> list[Rule]:
    """Rules for symbol names; ``src`` is the regex of the top scope (e.g. ``resnext\\d+_``)."""
    rules: list[Rule] = []
    for kind, sym, tgt in symbol_layers(cfg):
        if kind == "bn":
            rules += bn_rules(rf"{src}{sym}_", f"{tgt}.", f"symbol {sym}")
        elif kind == "conv":
            rules.append(Rule(rf"^{src}{sym}_weight$", f"{tgt}.weight", f"symbol {sym} (no bias)"))
        else:
            why = {"se": "SE gate 1x1 conv", "dense": "classifier (Dense is [out, in])"}[kind]
            rules.append(Rule(rf"^{src}{sym}_(weight|bias)$", rf"{tgt}.\1", f"symbol {sym}: {why}"))
    return rules


def _torchvision(layers: tuple[int, ...], groups: int, width: int) -> Callable[[], nn.Module]:
    """torchvision's own ResNet with its own Bottleneck: what its resnext factories build. Equal to
    gluon's plain ResNext: stride on the grouped 3x3, width = groups x int(planes x width / 64), a 1x1
    projection on every stage's first block, no conv biases, 3x3/2 pad-1 floor-mode stem pool."""
    def build() -> nn.Module:
        from torchvision.models.resnet import Bottleneck, ResNet as TorchvisionResNet
        return TorchvisionResNet(Bottleneck, list(layers), groups=groups, width_per_group=width)
    return build


_R50, _R101 = (3, 4, 6, 3), (3, 4, 23, 3)
# name: (config, model-store sha1, gluon-cv top-1, top-5, has a torchvision twin, slow)
MODELS = {
    "resnext50_32x4d": (resnext_config(_R50, 32, 4, False), "4ecf62e29336e0cbc5a2f844652635a330928b5a",
                        79.32, 94.53, True, False),
    "resnext101_32x4d": (resnext_config(_R101, 32, 4, False), "8654ca5d0ba30a7868c5b42a7d4cc0ff2ba04dbc",
                         80.37, 95.06, True, True),
    "resnext101_64x4d": (resnext_config(_R101, 64, 4, False), "2f0d1c9d343d140775bfa7548dd3a881a35855de",
                         80.69, 95.17, True, True),
    "se_resnext50_32x4d": (resnext_config(_R50, 32, 4, True), "7906e0e16013ef8d195cbc05463cc37783ec7a8a",
                           79.95, 94.93, False, False),
    "se_resnext101_32x4d": (resnext_config(_R101, 32, 4, True), "688e238985d45a38803c62cf345af2813d0e8aa0",
                            80.91, 95.39, False, True),
    "se_resnext101_64x4d": (resnext_config(_R101, 64, 4, True), "11c50114a0483e27e74dc4236904254ef05b634b",
                            81.01, 95.32, False, True),
    "senet_154": (SENET_154, "b5538ef10557243511b9b46063aa4c40790d74ba", 81.26, 95.51, False, True),
}


def _notes(cfg: ResNeXtConfig) -> tuple[str, ...]:
    if cfg.deep_stem:
        return ("SENet: 3x3 deep stem; stem max-pool 3x3/2 with no padding in ceil mode (MXNet 'full'); "
                "first 1x1 conv at half the group width; 3x3/2 projection shortcuts after stage 1; "
                "SE gate (reduction 16, conv biases); Dropout(0.2) before fc; BN eps 1e-5.",)
    return (f"ResNeXt {cfg.cardinality}x{cfg.bottleneck_width}d: stride on the grouped 3x3 conv; no conv "
            f"biases; 1x1 projection on every stage's first block; BN eps 1e-5"
            + ("; SE gate (reduction 16, conv biases) before the shortcut sum." if cfg.se else "."),)


for _name, (_cfg, _sha1, _top1, _top5, _tv, _slow) in MODELS.items():
    register(ModelSpec(
        name=_name, family="gluon.resnext", framework="gluon", task="classification",
        source_format="mxnet-params", build=functools.partial(ResNeXt, _cfg),
        rules={"gluon": structural_rules(_cfg),
               "export": symbol_rules(_cfg, r"senet\d+_" if _cfg.deep_stem else r"resnext\d+_")},  # any counter
        defaults=BN_DEFAULTS, preprocess=imagenet_eval(224),
        weights=functools.partial(gluoncv_weights, _name, _sha1),
        source_model=_name, seed_output_std={"output": 3.0},
        metrics=(Metric("top1", _top1, "ImageNet val", "gluon-cv model zoo"),
                 Metric("top5", _top5, "ImageNet val", "gluon-cv model zoo")),
        torchvision=_torchvision(_cfg.layers, _cfg.cardinality, _cfg.bottleneck_width) if _tv else None,
        slow=_slow, notes=_notes(_cfg),
    ))
