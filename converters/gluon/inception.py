"""gluoncv Inception v3 (ImageNet, 299x299) -> torchvision.models.Inception3(aux_logits=False,
transform_input=False), the same architecture.

Checked against gluoncv's model_zoo/inception.py:
- every conv is conv (no bias) + BatchNorm(eps 1e-3) + ReLU, torchvision's BasicConv2d exactly;
- branch order, kernel shapes and paddings of blocks A (5b-5d), B (6a), C (6b-6e), D (7a) and E
  (7b, 7c) match torchvision's Inception{A..E}, E's split 1x3/3x1 pairs concatenated in that order;
- pool branches: AvgPool2D(3, 1, pad 1) with MXNet's count_include_pad=True == F.avg_pool2d's
  default; MaxPool2D(3, 2) 'valid' == torch floor mode;
- no auxiliary head (gluon builds none) and no input transform (gluoncv normalises outside);
- AvgPool2D(8), Dropout(0.5), Dense: torchvision's adaptive (1, 1) pool equals it only on the 8x8
  map of the native 299x299 input."""
from __future__ import annotations

import functools
import re

from torchvision import models

from ..registry import Metric, ModelSpec, imagenet_eval, register
from ..rules import Rule, bn_rules
from ..sources import gluoncv_weights
from .resnet import BN_DEFAULTS

# stem: (gluon ``features`` index, torchvision name); indices 3 and 6 are max pools
STEM = ((0, "Conv2d_1a_3x3"), (1, "Conv2d_2a_3x3"), (2, "Conv2d_2b_3x3"), (4, "Conv2d_3b_1x1"), (5, "Conv2d_4a_3x3"))

# a block's basic convs in creation order: (gluon path inside the block, torchvision name)
BRANCHES = {
    "A": (("0.0", "branch1x1"), ("1.0", "branch5x5_1"), ("1.1", "branch5x5_2"), ("2.0", "branch3x3dbl_1"),
          ("2.1", "branch3x3dbl_2"), ("2.2", "branch3x3dbl_3"), ("3.1", "branch_pool")),  # 3.0 is the avg pool
    "B": (("0.0", "branch3x3"), ("1.0", "branch3x3dbl_1"), ("1.1", "branch3x3dbl_2"), ("1.2", "branch3x3dbl_3")),
    "C": (("0.0", "branch1x1"), ("1.0", "branch7x7_1"), ("1.1", "branch7x7_2"), ("1.2", "branch7x7_3"),
          ("2.0", "branch7x7dbl_1"), ("2.1", "branch7x7dbl_2"), ("2.2", "branch7x7dbl_3"),
          ("2.3", "branch7x7dbl_4"), ("2.4", "branch7x7dbl_5"), ("3.1", "branch_pool")),
    "D": (("0.0", "branch3x3_1"), ("0.1", "branch3x3_2"), ("1.0", "branch7x7x3_1"), ("1.1", "branch7x7x3_2"),
          ("1.2", "branch7x7x3_3"), ("1.3", "branch7x7x3_4")),
    # E nests: branch 1 = (1x1, concat(1x3, 3x1)), branch 2 = ((1x1, 3x3), concat(1x3, 3x1))
    "E": (("0.0", "branch1x1"), ("1.0.0", "branch3x3_1"), ("1.1.0.0", "branch3x3_2a"), ("1.1.1.0", "branch3x3_2b"),
          ("2.0.0", "branch3x3dbl_1"), ("2.0.1", "branch3x3dbl_2"), ("2.1.0.0", "branch3x3dbl_3a"),
          ("2.1.1.0", "branch3x3dbl_3b"), ("3.1", "branch_pool")),
}

# (gluon ``features`` index, gluon name prefix, block type, torchvision name)
BLOCKS = ((7, "A1", "A", "Mixed_5b"), (8, "A2", "A", "Mixed_5c"), (9, "A3", "A", "Mixed_5d"),
          (10, "B", "B", "Mixed_6a"), (11, "C1", "C", "Mixed_6b"), (12, "C2", "C", "Mixed_6c"),
          (13, "C3", "C", "Mixed_6d"), (14, "C4", "C", "Mixed_6e"), (15, "D", "D", "Mixed_7a"),
          (16, "E1", "E", "Mixed_7b"), (17, "E2", "E", "Mixed_7c"))

WHY_BN = "BN eps 1e-3 (gluoncv's and torchvision's BasicConv2d)"


def _basic(src_conv: str, src_bn: str, dst: str, what: str, bn_names=("gamma", "beta", "running_mean", "running_var")):
    return [Rule(rf"^{src_conv}weight$", f"{dst}.conv.weight", f"{what} conv (no bias)"),
            *bn_rules(src_bn, f"{dst}.bn.", f"{what} {WHY_BN}", names=bn_names)]


def structural_rules() -> list[Rule]:
    rules = []
    for i, name in STEM:
        rules += _basic(rf"features\.{i}\.0\.", rf"features\.{i}\.1\.", name, f"stem {name}")
    for i, _, kind, block in BLOCKS:
        for path, branch in BRANCHES[kind]:
            src = rf"features\.{i}\.{re.escape(path)}\."
            rules += _basic(f"{src}0\\.", f"{src}1\\.", f"{block}.{branch}", f"{block}.{branch}")
    rules.append(Rule(r"^output\.(weight|bias)$", r"fc.\1",
                      "classifier (after AvgPool2D(8) and Dropout; Dense is [out, in])"))
    return rules


def symbol_rules(src: str = r"inception3\d+_") -> list[Rule]:
    """Export names count conv/batchnorm in creation order: stem at the top scope, blocks in their
    own scope (``A1_conv3``...)."""
    rules = []
    for k, (_, name) in enumerate(STEM):
        rules += _basic(f"{src}conv{k}_", f"{src}batchnorm{k}_", name, f"symbol conv{k}/batchnorm{k}: {name}")
    for _, prefix, kind, block in BLOCKS:
        for k, (_, branch) in enumerate(BRANCHES[kind]):
            rules += _basic(f"{src}{prefix}_conv{k}_", f"{src}{prefix}_batchnorm{k}_", f"{block}.{branch}",
                            f"symbol {prefix}_conv{k}: {block}.{branch}")
    rules.append(Rule(rf"^{src}dense0_(weight|bias)$", r"fc.\1", "symbol dense0: classifier"))
    return rules


_factory = functools.partial(models.inception_v3, weights=None, num_classes=1000, aux_logits=False,
                             transform_input=False, init_weights=False)  # random init is overwritten

register(ModelSpec(
    name="inceptionv3", family="gluon.inception", framework="gluon", task="classification",
    source_format="mxnet-params", build=_factory, torchvision=_factory,
    rules={"gluon": structural_rules(), "export": symbol_rules()},
    defaults=BN_DEFAULTS, preprocess=imagenet_eval(299),
    weights=functools.partial(gluoncv_weights, "inceptionv3", "a5050dbcbfc54908fc1b7700698eb7ffbc150417"),
    source_model="inceptionv3", seed_output_std={"output": 3.0},
    metrics=(Metric("top1", 78.77, "ImageNet val", "gluon-cv model zoo"),
             Metric("top5", 94.39, "ImageNet val", "gluon-cv model zoo")),
    notes=("Inception v3 at 299x299: torchvision's Inception3 without aux head or input transform; "
           "BN eps 1e-3; its adaptive pool equals gluon's AvgPool2D(8) only at 299x299.",),
))
