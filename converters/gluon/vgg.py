"""gluoncv VGG and VGG-BN (ImageNet) -> torchvision.models.VGG, whose architecture is the same.

Checked against gluoncv's model_zoo/vgg.py (its own definition, not mxnet's re-export):
- 3x3 convs (pad 1, bias) [+ BatchNorm eps 1e-5] + ReLU per layer, MaxPool2D(2, 2) after each
  stage with MXNet's 'valid' convention == torch's floor mode; so ``features`` indices coincide;
- gluon's fc6 Dense flattens the 512x7x7 map in NCHW C-major order, as ``torch.flatten(x, 1)``;
  torchvision puts AdaptiveAvgPool2d((7, 7)) in between: the identity on a 7x7 map, i.e. at the
  native 224x224 input only (gluon's Dense accepts no other map size anyway);
- classifier Dense(relu), Dropout, Dense(relu), Dropout, Dense: torchvision's order exactly.
gluon fuses the classifier ReLUs into its Dense blocks, so parity reads their pre-activation
(``<dense>.act#in``) to pair with torchvision's Linear outputs."""
from __future__ import annotations

import functools

from torchvision import models

from ..registry import Metric, ModelSpec, imagenet_eval, register
from ..rules import Rule, bn_rules
from ..sources import gluoncv_weights
from .resnet import BN_DEFAULTS

# layers per stage (widths are 64, 128, 256, 512, 512 for every depth)
VGG_LAYERS = {11: (1, 1, 2, 2, 2), 13: (2, 2, 2, 2, 2), 16: (2, 2, 3, 3, 3), 19: (2, 2, 4, 4, 4)}

SHA1 = {"vgg11": "dd221b160977f36a53f464cb54648d227c707a05",
        "vgg13": "6bc5de58a05a5e2e7f493e2d75a580d83efde38c",
        "vgg16": "e660d4569ccb679ec68f1fd3cce07a387252a90a",
        "vgg19": "ad2f660d101905472b83590b59708b71ea22b2e5",
        "vgg11_bn": "ee79a8098a91fbe05b7a973fed2017a6117723a8",
        "vgg13_bn": "7d97a06c3c7a1aecc88b6e7385c2b373a249e95e",
        "vgg16_bn": "7f01cf050d357127a73826045c245041b0df7363",
        "vgg19_bn": "f360b758e856f1074a85abd5fd873ed1d98297c3"}

# gluon-cv model zoo (top-1, top-5) on ImageNet val
METRICS = {"vgg11": (66.62, 87.34), "vgg13": (67.74, 88.11), "vgg16": (73.23, 91.31),
           "vgg19": (74.11, 91.35), "vgg11_bn": (68.59, 88.72), "vgg13_bn": (68.84, 88.82),
           "vgg16_bn": (73.10, 91.76), "vgg19_bn": (74.33, 91.85)}

# torchvision Linear index in ``classifier`` for gluon's fc6 / fc7 / output Dense
CLASSIFIER = (0, 3, 6)


def conv_positions(depth: int, bn: bool) -> tuple[list[int], int]:
    """Index in ``features`` of every conv (the same in gluon and torchvision), and the index of
    gluon's first Dense, which gluon appends to ``features`` after the last max pool."""
    step, i, out = 3 if bn else 2, 0, []  # conv[, BN], ReLU
    for n in VGG_LAYERS[depth]:
        for _ in range(n):
            out.append(i)
            i += step
        i += 1  # the stage's max pool
    return out, i


def structural_rules(depth: int, bn: bool) -> list[Rule]:
    convs, fc6 = conv_positions(depth, bn)
    rules = []
    for k, i in enumerate(convs):
        rules.append(Rule(rf"^features\.{i}\.(weight|bias)$", rf"features.{i}.\1", f"conv {k + 1} (3x3, pad 1)"))
        if bn:
            rules += bn_rules(rf"features\.{i + 1}\.", f"features.{i + 1}.", f"BN after conv {k + 1} (eps 1e-5)")
    rules += [Rule(rf"^features\.{fc6}\.(weight|bias)$", rf"classifier.{CLASSIFIER[0]}.\1",
                   "fc6 Dense (flattens NCHW C-major like torch.flatten; Dense is [out, in] like Linear)"),
              Rule(rf"^features\.{fc6 + 2}\.(weight|bias)$", rf"classifier.{CLASSIFIER[1]}.\1",
                   "fc7 Dense (after fc6's Dropout)"),
              Rule(r"^output\.(weight|bias)$", rf"classifier.{CLASSIFIER[2]}.\1", "classifier Dense")]
    return rules


def symbol_rules(depth: int, bn: bool, src: str = r"vgg\d+_") -> list[Rule]:
    """Export names: conv{k} / batchnorm{k} count convs in order; dense0..2 are fc6, fc7, output."""
    convs, _ = conv_positions(depth, bn)
    rules = []
    for k, i in enumerate(convs):
        rules.append(Rule(rf"^{src}conv{k}_(weight|bias)$", rf"features.{i}.\1", f"symbol conv{k}"))
        if bn:
            rules += bn_rules(rf"{src}batchnorm{k}_", f"features.{i + 1}.", f"symbol batchnorm{k} (eps 1e-5)")
    for d, t in enumerate(CLASSIFIER):
        rules.append(Rule(rf"^{src}dense{d}_(weight|bias)$", rf"classifier.{t}.\1",
                          f"symbol dense{d} (Dense is [out, in] like Linear)"))
    return rules


def fused_relu_pairs(depth: int, bn: bool) -> tuple[tuple[str, str], ...]:
    """gluon's fc6/fc7 blocks end in their fused ReLU: pair torchvision's Linear with its input."""
    _, fc6 = conv_positions(depth, bn)
    return ((f"features.{fc6}.act#in", f"classifier.{CLASSIFIER[0]}"),
            (f"features.{fc6 + 2}.act#in", f"classifier.{CLASSIFIER[1]}"))


def _factory(name: str):
    return functools.partial(getattr(models, name), weights=None, num_classes=1000)


for _depth in VGG_LAYERS:
    for _bn in (False, True):
        _name = f"vgg{_depth}{'_bn' if _bn else ''}"
        _top1, _top5 = METRICS[_name]
        register(ModelSpec(
            name=_name, family="gluon.vgg", framework="gluon", task="classification",
            source_format="mxnet-params", build=_factory(_name), torchvision=_factory(_name),
            rules={"gluon": structural_rules(_depth, _bn), "export": symbol_rules(_depth, _bn)},
            defaults=BN_DEFAULTS if _bn else (), preprocess=imagenet_eval(224),
            weights=functools.partial(gluoncv_weights, _name, SHA1[_name]),
            source_model=_name, seed_output_std={"output": 3.0},
            extra_pairs=fused_relu_pairs(_depth, _bn),
            metrics=(Metric("top1", _top1, "ImageNet val", "gluon-cv model zoo"),
                     Metric("top5", _top5, "ImageNet val", "gluon-cv model zoo")),
            notes=(f"VGG-{_depth}{' with BatchNorm (eps 1e-5)' if _bn else ''}: torchvision's module; "
                   "its AdaptiveAvgPool2d((7, 7)) is the identity only at the native 224x224 input.",),
        ))
