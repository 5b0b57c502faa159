"""PaddleClas / PaddleX DenseNet121/161/201 -> torchvision's DenseNet (converters.arch.densenet).

Source net: ppcls ``model_zoo/densenet.py`` (PaddleClas 2.x), the same function as torchvision's
densenet121/161/201: stem conv 7x7/2 pad 3 (no bias), BN + ReLU, MaxPool2D(3, 2, pad 1) (floor);
dense layer BN + ReLU, 1x1 conv (4 x growth), BN + ReLU, 3x3 conv pad 1 (growth), output
concat(input, new); transition BN + ReLU, 1x1 conv halving the width, AvgPool2D(2, 2) unpadded;
final BN + ReLU, global average pool, Linear ``out`` (weight stored [in, out]); BN eps 1e-5, no
dropout. Every BN is ``BatchNorm(act="relu")``: its output is after the ReLU, so the target fuses
each BN with its ReLU (same torchvision state-dict keys) to pair like with like.

Two layouts: "dygraph" (``paddle.save`` of the ppcls state dict: ``conv1_func``,
``db_conv_<s>.conv<s>_<j>.bn_ac_func<1|2>``, ``tr_conv<s>_blk.conv_ac_func``, ``batch_norm``,
``out``; each a ``_conv`` and a ``_batch_norm``) and "fluid" (PaddleX's .tar links, PaddleClas 1.x
static names, which ppcls's net also gives its parameters): ``conv1``, ``conv<s>_<j>_x1|x2``,
``conv<s>_blk`` with ``_weights`` and ``_bn_scale/_offset/_mean/_variance``, the final BN
``conv5_blk_bn_*``, the classifier ``fc_weights``/``fc_offset``; blocks s = 2..5, layers j from 1."""
from __future__ import annotations

import functools
from typing import Iterator

import torchvision

from ..arch.densenet import densenet
from .paddlex import ConvBN, Norm, Tensor, classifier, layout_tables, register_classifier

# depth: layers per dense block (stem width and growth rate are torchvision's: 64/32, 161 96/48)
BLOCKS = {121: (6, 12, 24, 16), 161: (6, 12, 36, 24), 201: (6, 12, 48, 32)}


def _layer(dygraph: str, fluid: str, conv: str, norm: str) -> ConvBN:
    """A ppcls BN(+ReLU)/conv pair (``_conv``, ``_batch_norm``); static ``<fluid>_weights``, ``<fluid>_bn_*``."""
    return ConvBN(f"{dygraph}._conv", f"{dygraph}._batch_norm", fluid, f"{fluid}_bn", conv, norm)


def tensors(depth: int) -> Iterator[ConvBN | Norm | Tensor]:
    yield _layer("conv1_func", "conv1", "features.conv0", "features.norm0")
    blocks = BLOCKS[depth]
    for s, n in enumerate(blocks, 1):
        stage = s + 1  # PaddleClas numbers the blocks from conv2
        for j in range(1, n + 1):
            path, name = f"db_conv_{stage}.conv{stage}_{j}", f"conv{stage}_{j}"
            dst = f"features.denseblock{s}.denselayer{j}"
            for k in (1, 2):
                yield _layer(f"{path}.bn_ac_func{k}", f"{name}_x{k}", f"{dst}.conv{k}", f"{dst}.norm{k}")
        if s < len(blocks):
            yield _layer(f"tr_conv{stage}_blk.conv_ac_func", f"conv{stage}_blk", f"features.transition{s}.conv",
                         f"features.transition{s}.norm")
    yield Norm("batch_norm", "conv5_blk_bn", "features.norm5")  # the final BN + ReLU has no conv
    yield from classifier("out", "fc_weights", "fc_offset", "classifier")


def fluid_names(depth: int) -> dict[str, str]:
    """dygraph state-dict key -> static name (ppcls's parameters carry these names themselves; the
    table serves the tests, the oracle reads the parameters' ``.name``)."""
    return layout_tables(tensors(depth))[2]


NOTE = ("PaddleClas DenseNet: torchvision's architecture (BN eps 1e-5, no dropout); every BN is "
        "BatchNorm(act='relu'), so the target fuses BN and ReLU (keys unchanged); fc weight stored [in, out].")

# zooport (= PaddleX) name, depth, .tar stem, top-1, top-5 (PaddleX model library); ppcls factory = name
MODELS = (
    ("DenseNet121", 121, "DenseNet121_pretrained", 75.7, 92.6),
    ("DenseNet161", 161, "DenseNet161_pretrained", 78.6, 94.1),
    ("DenseNet201", 201, "DenseNet201_pretrained", 77.6, 93.7),
)

for _name, _depth, _stem, _top1, _top5 in MODELS:
    _dygraph, _fluid, _ = layout_tables(tensors(_depth))
    register_classifier(
        _name, "paddle.densenet", functools.partial(densenet, _depth), dygraph=_dygraph, fluid=_fluid,
        source_model=_name, stem=_stem, top1=_top1, top5=_top5, seed_output_std={"out": 3.0}, notes=(NOTE,),
        # the fused BN+ReLU modules hold nn.BatchNorm2d's keys: the state dict loads into torchvision's
        torchvision=functools.partial(getattr(torchvision.models, f"densenet{_depth}"), weights=None),
        # parity-full only: > 125 conv/linear layers (parity/selection.py's policy, as gluon's 161/201)
        slow=_depth > 121)
