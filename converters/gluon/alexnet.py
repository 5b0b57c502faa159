"""gluoncv AlexNet (ImageNet) -> converters.arch.classic.AlexNet.

gluoncv's model_zoo/alexnet.py: convs 11x11/4 (pad 2), 5x5 (pad 2), 3x3 x3 (pad 1), each with its
ReLU fused into the Conv2D block; MaxPool2D(3, 2) in MXNet's 'valid' convention (torch floor mode);
Flatten (NCHW C-major, as torch.flatten); Dense(4096, relu), Dropout, Dense(4096, relu), Dropout,
Dense(classes). Not torchvision's module: its Dropouts sit elsewhere (see arch/classic.py); equal in
eval at 224x224, so a torchvision target is offered through a key rename.
Fused ReLUs: parity pairs each target conv/Linear with the input of the gluon block's ``act``."""
from __future__ import annotations

import functools
import re

from torchvision import models

from ..arch.classic import AlexNet, alexnet_torchvision_key
from ..registry import Metric, ModelSpec, imagenet_eval, register
from ..rules import Rule
from ..sources import gluoncv_weights

# (gluon features index, target features index) of the five convs; gluon has no separate ReLUs
CONVS = ((0, 0), (2, 3), (4, 6), (5, 8), (6, 10))
# (gluon block, target Linear) of fc6, fc7 and the classifier
DENSES = (("features.9", "classifier.0"), ("features.11", "classifier.3"), ("output", "classifier.6"))


def structural_rules() -> list[Rule]:
    rules = [Rule(rf"^features\.{g}\.(weight|bias)$", rf"features.{t}.\1", f"conv {k + 1} (ReLU fused in gluon)")
             for k, (g, t) in enumerate(CONVS)]
    whys = ("fc6 (after Flatten: NCHW C-major like torch.flatten; Dense is [out, in] like Linear)",
            "fc7 (after fc6's Dropout)", "classifier Dense (after fc7's Dropout)")
    rules += [Rule(rf"^{re.escape(g)}\.(weight|bias)$", rf"{t}.\1", why)
              for (g, t), why in zip(DENSES, whys)]
    return rules


def symbol_rules(src: str = r"alexnet\d+_") -> list[Rule]:
    rules = [Rule(rf"^{src}conv{k}_(weight|bias)$", rf"features.{t}.\1", f"symbol conv{k}")
             for k, (_, t) in enumerate(CONVS)]
    rules += [Rule(rf"^{src}dense{d}_(weight|bias)$", rf"{t}.\1", f"symbol dense{d} (Dense is [out, in])")
              for d, (_, t) in enumerate(DENSES)]
    return rules


# conv and fc6/fc7 blocks end in their fused ReLU: the target layer is paired with its input
FUSED_RELU_PAIRS = tuple((f"features.{g}.act#in", f"features.{t}") for g, t in CONVS) + tuple(
    (f"{g}.act#in", t) for g, t in DENSES[:2])

register(ModelSpec(
    name="alexnet", family="gluon.alexnet", framework="gluon", task="classification",
    source_format="mxnet-params", build=AlexNet,
    torchvision=functools.partial(models.alexnet, weights=None, num_classes=1000),
    torchvision_key=alexnet_torchvision_key,
    rules={"gluon": structural_rules(), "export": symbol_rules()},
    preprocess=imagenet_eval(224),
    weights=functools.partial(gluoncv_weights, "alexnet", "44335d1f0046b328243b32a26a4fbd62d9057b45"),
    source_model="alexnet", seed_output_std={"output": 3.0}, extra_pairs=FUSED_RELU_PAIRS,
    metrics=(Metric("top1", 54.92, "ImageNet val", "gluon-cv model zoo"),
             Metric("top5", 78.03, "ImageNet val", "gluon-cv model zoo")),
    notes=("AlexNet: Dropout after fc6 and fc7 (torchvision's: before them), no adaptive pool; "
           "torchvision's module is equal in eval at 224x224.",),
))
