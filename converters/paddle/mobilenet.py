"""PaddleClas / PaddleX MobileNetV1 and MobileNetV2 -> converters.arch.mobilenet.MobileNet.

Source nets (PaddleClas 2.x): MobileNetV1 is ``legendary_models/mobilenet_v1.py`` (stem 3x3/2,
13 depthwise-separable blocks, each conv-BN-ReLU, pool, Linear ``fc``; parameters named
automatically); MobileNetV2 is ``model_zoo/mobilenet_v2.py`` (conv-BN-ReLU6 layers named
explicitly with PaddleClas 1.x's static names; unlike gluoncv's, the t = 1 block keeps its 1x1
expansion conv, and the classifier is a Linear ``out`` with a bias).

Two layouts each: "dygraph" (``paddle.save`` of the ppcls state dict) and "fluid" (PaddleX's .tar
links: one file per variable, static names as PaddleClas's release 1.x/2.0 ``mobilenet_v1.py`` /
``mobilenet_v2.py`` write them): a conv-BN layer ``<name>`` is ``<name>_weights`` and
``<name>_bn_scale/_offset/_mean/_variance``; V1 layers ``conv1``, ``conv2_1_dw``/``conv2_1_sep``
.. ``conv6_*`` and ``fc7_weights``/``fc7_offset``; V2 layers ``conv1_1``, ``conv<s>_<b>_expand`` /
``_dwise`` / ``_linear`` (stage s = 2..8, block b from 1), ``conv9`` and ``fc10_weights``/``fc10_offset``."""
from __future__ import annotations

import functools
from typing import Iterator

from ..arch.mobilenet import V2_STAGES, MobileNet, MobileNetConfig
from .paddlex import ConvBN, Tensor, classifier, layout_tables, register_classifier

# paddle.nn.BatchNorm default epsilon 1e-5; V1 ReLU, V2 relu6 (min(max(x, 0), 6))
V1 = MobileNetConfig(1, 1.0, "relu", bn_eps=1e-5)
V2 = MobileNetConfig(2, 1.0, "relu6", bn_eps=1e-5, expand_t1=True, v2_classifier="linear")
# V1's block names in the static program, in order (two stride-2 blocks per stage 2..4, conv5_1..6, conv6)
V1_NAMES = ("conv2_1", "conv2_2", "conv3_1", "conv3_2", "conv4_1", "conv4_2",
            *(f"conv5_{i}" for i in range(1, 7)), "conv6")


def _convbn(dygraph: str, conv_attr: str, bn_attr: str, fluid: str, target: str) -> ConvBN:
    """A conv-BN layer: static ``<fluid>_weights`` / ``<fluid>_bn_*``; ours a ConvBN at ``target``."""
    return ConvBN(f"{dygraph}.{conv_attr}", f"{dygraph}.{bn_attr}", fluid, f"{fluid}_bn",
                  f"{target}.conv", f"{target}.bn")


def v1_layers() -> Iterator[ConvBN]:
    yield _convbn("conv", "conv", "bn", "conv1", "stem")
    for i, name in enumerate(V1_NAMES):
        yield _convbn(f"blocks.{i}.depthwise_conv", "conv", "bn", f"{name}_dw", f"blocks.{i}.dw")
        yield _convbn(f"blocks.{i}.pointwise_conv", "conv", "bn", f"{name}_sep", f"blocks.{i}.pw")


def v2_layers() -> Iterator[ConvBN]:
    yield _convbn("conv1", "_conv", "_batch_norm", "conv1_1", "stem")
    flat = 0
    for s, (_, _, n, _) in enumerate(V2_STAGES):
        stage = f"conv{s + 2}"
        for b in range(n):
            block = f"{stage}._first_block" if b == 0 else f"{stage}.{stage}_{b + 1}"
            for part, suffix, target in (("_expand_conv", "expand", "expand"), ("_bottleneck_conv", "dwise", "dw"),
                                         ("_linear_conv", "linear", "project")):
                yield _convbn(f"{block}.{part}", "_conv", "_batch_norm", f"{stage}_{b + 1}_{suffix}",
                              f"blocks.{flat}.{target}")
            flat += 1
    yield _convbn("conv9", "_conv", "_batch_norm", "conv9", "head")


# classifier: (dygraph prefix, static weight, static bias)
CLASSIFIERS = {1: ("fc", "fc7_weights", "fc7_offset"), 2: ("out", "fc10_weights", "fc10_offset")}


def tensors(version: int) -> Iterator[ConvBN | Tensor]:
    yield from v1_layers() if version == 1 else v2_layers()
    fc, w, b = CLASSIFIERS[version]
    yield from classifier(fc, w, b)


def fluid_names(version: int) -> dict[str, str]:
    """dygraph state-dict key -> static variable name."""
    return layout_tables(tensors(version))[2]


NOTES = {
    1: "PaddleClas MobileNetV1: conv-BN-ReLU layers (BN eps 1e-5), widths int(c * scale); fc weight stored [in, out].",
    2: ("PaddleClas MobileNetV2: conv-BN-ReLU6; the t = 1 block keeps a 1x1 expansion conv (32 -> 32); "
        "classifier a Linear with bias on the pooled 1280 features, weight stored [in, out]."),
}

# zooport (= PaddleX) name, version, config, ppcls factory, .tar stem, top-1, top-5 (PaddleX model library)
MODELS = (
    ("MobileNetV1", 1, V1, "MobileNetV1", "MobileNetV1_pretrained", 71.0, 89.7),
    ("MobileNetV2", 2, V2, "MobileNetV2", "MobileNetV2_pretrained", 72.2, 90.7),
)

for _name, _version, _cfg, _factory, _stem, _top1, _top5 in MODELS:
    _dygraph, _fluid, _ = layout_tables(tensors(_version))
    register_classifier(
        _name, "paddle.mobilenet", functools.partial(MobileNet, _cfg), dygraph=_dygraph, fluid=_fluid,
        source_model=_factory, stem=_stem, top1=_top1, top5=_top5,
        seed_output_std={CLASSIFIERS[_version][0]: 3.0}, notes=(NOTES[_version],),
        # MobileNetV2's ppcls net names its parameters with the static names itself: the oracle reads them
        fluid_names=functools.partial(fluid_names, 1) if _version == 1 else None)
