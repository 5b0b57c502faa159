"""Detectron's ImageNet backbones (``R-50.pkl``, ``R-101.pkl``, ``X-101-32x8d.pkl``) -> torchvision's
ResNet/ResNeXt with frozen BN (MSRA R-50/R-101: stride on the 1x1 conv). A bare blobs dict;
``pred_w``/``pred_b`` is the 1000-way classifier, Caffe2 FC (out, in) = torch Linear."""
from __future__ import annotations

import functools
from dataclasses import replace

from ..arch.detectron import DetectronConfig, build
from ..registry import ModelSpec, imagenet_eval, register
from ..rules import Rule
from ._rules import AFFINE_DEFAULTS, IGNORES, body_rules
from .common import CONFIGS, PIXEL_MEANS, detectron_weights


def rules(body: str) -> list:
    return [*IGNORES, *body_rules(body, ""),
            Rule(r"^pred_w$", "fc.weight", "ImageNet classifier (out, in)"),
            Rule(r"^pred_b$", "fc.bias", "ImageNet classifier bias")]


MODELS = (  # name, path under the zoo
    ("R-50", "ImageNetPretrained/MSRA/R-50.pkl"),
    ("R-101", "ImageNetPretrained/MSRA/R-101.pkl"),
    ("X-101-32x8d", "ImageNetPretrained/20171220/X-101-32x8d.pkl"),
)
# Detectron's input convention (BGR 0-255 minus PIXEL_MEANS, std 1) on ImageNet's 256 / 224 centre crop
PREPROCESS = replace(imagenet_eval(224), preset="detectron", color="BGR", scale=1.0, mean=PIXEL_MEANS,
                     std=(1.0, 1.0, 1.0))

for _name, _path in MODELS:
    CONFIGS[_name] = DetectronConfig(_name, "classifier")
    register(ModelSpec(
        name=_name, family="detectron.backbone", framework="detectron", task="classification",
        source_format="detectron-pkl", build=functools.partial(build, CONFIGS[_name]),
        rules={"detectron": rules(_name)}, defaults=AFFINE_DEFAULTS, preprocess=PREPROCESS,
        weights=functools.partial(detectron_weights, _name, _path), source_model=_name,
        notes=("ImageNet backbone for Detectron's detectors; Detectron publishes no accuracy for it "
               "(no published metric).",), slow=_name != "R-50"))
