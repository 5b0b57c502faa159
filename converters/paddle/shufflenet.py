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

from typing import Iterator

import torchvision
from torch import nn

from ..arch.paddle_ops import fold_bn_relu
from .paddlex import ConvBN, Tensor, classifier, layout_tables, register_classifier

STAGES = (4, 8, 4)  # blocks per stage (stages 2, 3, 4)
# torchvision block: (ppcls attribute of a stride-2 block, of a stride-1 block, static conv number,
# our conv index); our BN is the next index. Branch 1 exists in stride-2 blocks only.
BRANCHES = (("_conv_dw_1", None, 4, "branch1.0"), ("_conv_linear_1", None, 5, "branch1.2"),
            ("_conv_pw_2", "_conv_pw", 1, "branch2.0"), ("_conv_dw_2", "_conv_dw", 2, "branch2.3"),
            ("_conv_linear_2", "_conv_linear", 3, "branch2.5"))


def build() -> nn.Module:
    """torchvision's shufflenet_v2_x1_0, each BN + ReLU pair folded into one BatchNormAct."""
    return fold_bn_relu(torchvision.models.shufflenet_v2_x1_0(weights=None))


def _next(path: str) -> str:
    head, _, index = path.rpartition(".")
    return f"{head}.{int(index) + 1}"


def _layer(dygraph: str, fluid: str, conv: str, norm: str) -> ConvBN:
    """A ppcls ConvBNLayer (``_conv``, ``_batch_norm``); static ``<fluid>_weights``, ``<fluid>_bn_*``."""
    return ConvBN(f"{dygraph}._conv", f"{dygraph}._batch_norm", fluid, f"{fluid}_bn", conv, norm)


def tensors() -> Iterator[ConvBN | Tensor]:
    yield _layer("_conv1", "stage1_conv", "conv1.0", "conv1.1")
    for s, n in enumerate(STAGES):
        for i in range(n):
            block, ours = f"{s + 2}_{i + 1}", f"stage{s + 2}.{i}"
            for ds_attr, attr, num, conv in BRANCHES:
                name = ds_attr if i == 0 else attr
                if name is not None:
                    yield _layer(f"{block}.{name}", f"stage_{block}_conv{num}", f"{ours}.{conv}", f"{ours}.{_next(conv)}")
    yield _layer("_last_conv", "conv5", "conv5.0", "conv5.1")
    yield from classifier("_fc", "fc6_weights", "fc6_offset")


def fluid_names() -> dict[str, str]:
    """dygraph state-dict key -> static name (ppcls's parameters carry these names themselves; the
    table serves the paddle-free tests and is checked against ppcls's net in the parity suite)."""
    return layout_tables(tensors())[2]


_DYGRAPH, _FLUID, _ = layout_tables(tensors())
register_classifier(
    "ShuffleNetV2", "paddle.shufflenet", build, dygraph=_DYGRAPH, fluid=_FLUID,
    source_model="ShuffleNetV2_x1_0", stem="ShuffleNetV2_pretrained", top1=68.8, top5=88.5,
    seed_output_std={"_fc": 3.0},
    notes=("PaddleClas ShuffleNetV2 (x1.0): torchvision's shufflenet_v2_x1_0 layer for layer, BN eps "
           "1e-5, ReLUs fused into Paddle's BatchNorm(act='relu'); fc weight stored [in, out].",),
    torchvision=lambda: torchvision.models.shufflenet_v2_x1_0(weights=None))
