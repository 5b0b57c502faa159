"""gluoncv SqueezeNet 1.0 / 1.1 (ImageNet) -> torchvision.models.SqueezeNet, the same architecture.

Checked against gluoncv's model_zoo/squeezenet.py:
- stem conv (7x7/2 in 1.0, 3x3/2 in 1.1, no padding) + ReLU; MaxPool2D(3, 2, ceil_mode=True), i.e.
  MXNet's 'full' pooling convention == torchvision's ceil_mode=True (unpadded, so no window starts
  past the edge and the two rules agree); the same stage layout, so ``features`` indices coincide;
- Fire: squeeze 1x1 + ReLU, then concat(expand 1x1 + ReLU, expand 3x3 pad 1 + ReLU) on channels in
  that order (HybridConcurrent axis=1 == torch.cat dim 1);
- Dropout(0.5), 1x1 conv to classes, ReLU, AvgPool2D(13), Flatten: torchvision's classifier has
  AdaptiveAvgPool2d((1, 1)) instead, equal only on the 13x13 map of the native 224x224 input."""
from __future__ import annotations

import functools

from torchvision import models

from ..registry import Metric, ModelSpec, imagenet_eval, register
from ..rules import Rule
from ..sources import gluoncv_weights

# ``features`` index of every Fire module (same in gluon and torchvision)
FIRES = {"1.0": (3, 4, 5, 7, 8, 9, 10, 12), "1.1": (3, 4, 6, 7, 9, 10, 11, 12)}
SHA1 = {"1.0": "264ba4970a0cc87a4f15c96e25246a1307caf523", "1.1": "33ba0f93753c83d86e1eb397f38a667eaf2e9376"}
METRICS = {"1.0": (56.11, 79.09), "1.1": (54.96, 78.17)}
# a Fire's convs: (gluon sub-path, torchvision name), in creation order
FIRE_CONVS = ((r"0\.0", "squeeze"), (r"1\.0\.0", "expand1x1"), (r"1\.1\.0", "expand3x3"))


def structural_rules(version: str) -> list[Rule]:
    rules = [Rule(r"^features\.0\.(weight|bias)$", r"features.0.\1", "stem conv (unpadded)")]
    for i in FIRES[version]:
        rules += [Rule(rf"^features\.{i}\.{g}\.(weight|bias)$", rf"features.{i}.{t}.\1", f"Fire {i} {t} conv")
                  for g, t in FIRE_CONVS]
    rules.append(Rule(r"^output\.0\.(weight|bias)$", r"classifier.1.\1", "final 1x1 conv to classes (after Dropout)"))
    return rules


def symbol_rules(version: str, src: str = r"squeezenet\d+_") -> list[Rule]:
    """Export names number every conv in creation order: stem, (squeeze, 1x1, 3x3) per Fire, final."""
    rules = [Rule(rf"^{src}conv0_(weight|bias)$", r"features.0.\1", "symbol conv0: stem conv")]
    k = 1
    for i in FIRES[version]:
        for _, t in FIRE_CONVS:
            rules.append(Rule(rf"^{src}conv{k}_(weight|bias)$", rf"features.{i}.{t}.\1",
                              f"symbol conv{k}: Fire {i} {t}"))
            k += 1
    rules.append(Rule(rf"^{src}conv{k}_(weight|bias)$", r"classifier.1.\1", f"symbol conv{k}: final conv"))
    return rules


for _version, _factory_name in (("1.0", "squeezenet1_0"), ("1.1", "squeezenet1_1")):
    _name = f"squeezenet{_version}"
    _factory = functools.partial(getattr(models, _factory_name), weights=None, num_classes=1000)
    register(ModelSpec(
        name=_name, family="gluon.squeezenet", framework="gluon", task="classification",
        source_format="mxnet-params", build=_factory, torchvision=_factory,
        rules={"gluon": structural_rules(_version), "export": symbol_rules(_version)},
        preprocess=imagenet_eval(224),
        weights=functools.partial(gluoncv_weights, _name, SHA1[_version]),
        source_model=_name, seed_output_std={"output": 3.0},
        metrics=(Metric("top1", METRICS[_version][0], "ImageNet val", "gluon-cv model zoo"),
                 Metric("top5", METRICS[_version][1], "ImageNet val", "gluon-cv model zoo")),
        notes=(f"SqueezeNet {_version}: ceil-mode max pools (MXNet 'full'); torchvision's adaptive "
               "average pool equals gluon's AvgPool2D(13) only at the native 224x224 input.",),
    ))
