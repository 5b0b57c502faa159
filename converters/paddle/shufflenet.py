"""PaddleClas / PaddleX ShuffleNetV2 (ppcls's ShuffleNetV2_x1_0) -> torchvision's shufflenet_v2_x1_0.

Source net: ppcls ``model_zoo/shufflenet_v2.py`` (PaddleClas 2.x) is torchvision's architecture
layer for layer: stem 3x3/2 24 + BN + ReLU, 3x3/2 max pool (pad 1), stages of 4, 8, 4 blocks
(116, 232, 464 wide; the first of each a stride-2 block with two branches, the others split the
channels in halves and transform the second), concat then channel shuffle (2 groups), 1x1 conv
to 1024, global average pool, Linear with bias. Each ReLU is fused into Paddle's legacy
``BatchNorm(act="relu")``, whose output is already activated: the target is torchvision's module
with those BN + ReLU pairs folded into ``BatchNormAct`` (same state-dict keys, same function), so
parity pairs compare like with like; its state dict loads into torchvision's module unchanged.

Two layouts: "dygraph" (``paddle.save`` of the ppcls state dict: ``_conv1``, blocks ``<stage>_<i>``
(stage 2..4, i from 1) with ``_conv_dw_1``/``_conv_linear_1`` (stride-2 branch 1) and
``_conv_pw[_2]``/``_conv_dw[_2]``/``_conv_linear[_2]`` (branch 2), ``_last_conv``; each
``._conv.weight`` and ``._batch_norm.{weight, bias, _mean, _variance}``; ``_fc``) and "fluid"
(PaddleX's .tar: PaddleClas 1.x static names, which ppcls passes to every parameter: a conv-BN
``<name>`` is ``<name>_weights`` and ``<name>_bn_{scale, offset, mean, variance}``, named
``stage1_conv``, ``stage_<stage>_<i>_conv<1..5>`` (conv4/conv5: branch 1), ``conv5``;
``fc6_weights`` / ``fc6_offset``)."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterator

import torchvision
from torch import nn

from ..arch.paddle_ops import fold_bn_relu
from ..rules import Rule, bn_rules
from .paddlex import register_classifier

STAGES = (4, 8, 4)  # blocks per stage (stages 2, 3, 4)
BN_NAMES = (("weight", "scale"), ("bias", "offset"), ("_mean", "mean"), ("_variance", "variance"))
# torchvision block: (ppcls attribute of a stride-2 block, of a stride-1 block, static conv number,
# our conv index); our BN is the next index. Branch 1 exists in stride-2 blocks only.
BRANCHES = (("_conv_dw_1", None, 4, "branch1.0"), ("_conv_linear_1", None, 5, "branch1.2"),
            ("_conv_pw_2", "_conv_pw", 1, "branch2.0"), ("_conv_dw_2", "_conv_dw", 2, "branch2.3"),
            ("_conv_linear_2", "_conv_linear", 3, "branch2.5"))


def build() -> nn.Module:
    """torchvision's shufflenet_v2_x1_0, each BN + ReLU pair folded into one BatchNormAct."""
    return fold_bn_relu(torchvision.models.shufflenet_v2_x1_0(weights=None))


@dataclass(frozen=True)
class Layer:
    """One ppcls ConvBNLayer: dygraph path, static name, our conv module and our BN module."""

    dygraph: str
    fluid: str
    conv: str
    norm: str


def _next(path: str) -> str:
    head, _, index = path.rpartition(".")
    return f"{head}.{int(index) + 1}"


def layers() -> Iterator[Layer]:
    yield Layer("_conv1", "stage1_conv", "conv1.0", "conv1.1")
    for s, n in enumerate(STAGES):
        for i in range(n):
            block, ours = f"{s + 2}_{i + 1}", f"stage{s + 2}.{i}"
            for ds_attr, attr, num, conv in BRANCHES:
                name = ds_attr if i == 0 else attr
                if name is not None:
                    yield Layer(f"{block}.{name}", f"stage_{block}_conv{num}", f"{ours}.{conv}",
                                f"{ours}.{_next(conv)}")
    yield Layer("_last_conv", "conv5", "conv5.0", "conv5.1")


def dygraph_rules() -> list[Rule]:
    rules = []
    for layer in layers():
        src = re.escape(layer.dygraph)
        rules.append(Rule(rf"^{src}\._conv\.weight$", f"{layer.conv}.weight", f"{layer.dygraph} conv (no bias)"))
        rules += bn_rules(rf"{src}\._batch_norm\.", f"{layer.norm}.", f"{layer.dygraph} BN",
                          names=tuple(dy for dy, _ in BN_NAMES))
    rules.append(Rule(r"^_fc\.(weight|bias)$", r"fc.\1", "classifier (Linear weight stored [in, out])"))
    return rules


def fluid_rules() -> list[Rule]:
    rules = []
    for layer in layers():
        rules.append(Rule(rf"^{layer.fluid}_weights$", f"{layer.conv}.weight", f"static conv {layer.fluid}"))
        rules += bn_rules(rf"{layer.fluid}_bn_", f"{layer.norm}.", f"static BN {layer.fluid}_bn",
                          names=tuple(st for _, st in BN_NAMES))
    rules += [Rule(r"^fc6_weights$", "fc.weight", "static classifier weight ([in, out])"),
              Rule(r"^fc6_offset$", "fc.bias", "static classifier bias")]
    return rules


def fluid_names() -> dict[str, str]:
    """dygraph state-dict key -> static name (ppcls's parameters carry these names themselves; the
    table serves the paddle-free tests and is checked against ppcls's net in the parity suite)."""
    out = {}
    for layer in layers():
        out[f"{layer.dygraph}._conv.weight"] = f"{layer.fluid}_weights"
        out.update({f"{layer.dygraph}._batch_norm.{dy}": f"{layer.fluid}_bn_{st}" for dy, st in BN_NAMES})
    out.update({"_fc.weight": "fc6_weights", "_fc.bias": "fc6_offset"})
    return out


register_classifier(
    "ShuffleNetV2", "paddle.shufflenet", build, dygraph=dygraph_rules(), fluid=fluid_rules(),
    source_model="ShuffleNetV2_x1_0", stem="ShuffleNetV2_pretrained", top1=68.8, top5=88.5,
    seed_output_std={"_fc": 3.0},
    notes=("PaddleClas ShuffleNetV2 (x1.0): torchvision's shufflenet_v2_x1_0 layer for layer, BN eps "
           "1e-5, ReLUs fused into Paddle's BatchNorm(act='relu'); fc weight stored [in, out].",),
    torchvision=lambda: torchvision.models.shufflenet_v2_x1_0(weights=None))
