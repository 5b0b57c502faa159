"""PaddleClas / PaddleX MobileNetV3 large/small x1.0 (and their SSLD checkpoints) ->
converters.arch.mobilenet_v3_cls.MobileNetV3Classifier.

Source net: ppcls ``legendary_models/mobilenet_v3.py`` (parameters named automatically): stem
``conv``, ``blocks.<i>`` with ``expand_conv``/``bottleneck_conv``/``linear_conv`` conv-BN layers and
an optional ``mid_se`` (two biased 1x1 convs, Paddle's hard_sigmoid gate: slope 0.2, offset 0.5),
``last_second_conv``, then after the pool a bias-free ``last_conv``, hard_swish, dropout in
"downscale_in_infer" mode (x 0.8 at inference) and ``fc``.

Layouts: "dygraph" (``paddle.save`` of the ppcls state dict) and "fluid" (PaddleX .tar links,
PaddleClas release 1.x/2.0 ``mobilenet_v3.py`` names): ``conv1``; block i is ``conv<i + 2>`` with
``_expand``/``_depthwise``/``_linear`` conv-BN layers (``<name>_weights``,
``<name>_bn_scale/_offset/_mean/_variance``) and SE convs ``_se_1``/``_se_2``
(``_weights``/``_offset``); ``conv_last``; ``last_1x1_conv_weights``; ``fc_weights``/``fc_offset``."""
from __future__ import annotations

import functools
from typing import Iterator

from ..arch.mobilenet_v3 import CONFIGS
from ..arch.mobilenet_v3_cls import MobileNetV3Classifier
from .paddlex import ConvBN, Tensor, classifier, layout_tables, register_classifier

def tensors(arch: str) -> Iterator[ConvBN | Tensor]:
    def convbn(dy: str, st: str, ours: str) -> ConvBN:
        return ConvBN(f"{dy}.conv", f"{dy}.bn", st, f"{st}_bn", f"{ours}.conv", f"{ours}.bn")

    yield convbn("conv", "conv1", "backbone.stem")
    for i, block in enumerate(CONFIGS[arch]):
        for dy, st, ours in (("expand_conv", "expand", "expand"), ("bottleneck_conv", "depthwise", "dw"),
                             ("linear_conv", "linear", "project")):
            yield convbn(f"blocks.{i}.{dy}", f"conv{i + 2}_{st}", f"backbone.blocks.{i}.{ours}")
        if block.se:  # two biased 1x1 convs
            for k, ours in ((1, "reduce"), (2, "expand")):
                dy, st, tg = f"blocks.{i}.mid_se.conv{k}", f"conv{i + 2}_se_{k}", f"backbone.blocks.{i}.se.{ours}"
                yield Tensor(f"{dy}.weight", f"{st}_weights", f"{tg}.weight", f"{dy}: squeeze-excite 1x1 conv")
                yield Tensor(f"{dy}.bias", f"{st}_offset", f"{tg}.bias", f"{dy}: squeeze-excite 1x1 conv bias")
    yield convbn("last_second_conv", "conv_last", "backbone.last")
    yield Tensor("last_conv.weight", "last_1x1_conv_weights", "last_conv.weight", "1x1 conv after the pool (no bias)")
    yield from classifier("fc", "fc_weights", "fc_offset")


def fluid_names(arch: str) -> dict[str, str]:
    """dygraph state-dict key -> static variable name."""
    return layout_tables(tensors(arch))[2]


NOTE = ("PaddleClas MobileNetV3: every block keeps its 1x1 expansion conv; SE gate is Paddle's hard_sigmoid "
        "(slope 0.2, offset 0.5; torch's hardsigmoid has slope 1/6); hard_swish written out; BN eps 1e-5; "
        "inference dropout multiplies by 0.8 (downscale_in_infer) before the fc, whose weight is stored [in, out].")

# zooport (= PaddleX) name, arch, ppcls factory, .tar stem, top-1, top-5 (PaddleX model library)
MODELS = (
    ("MobileNetV3_large", "large", "MobileNetV3_large_x1_0", "MobileNetV3_large_x1_0_pretrained", 75.3, 93.2),
    ("MobileNetV3_small", "small", "MobileNetV3_small_x1_0", "MobileNetV3_small_x1_0_pretrained", 68.2, 88.1),
    ("MobileNetV3_large_ssld", "large", "MobileNetV3_large_x1_0", "MobileNetV3_large_x1_0_ssld_pretrained", 79.0, 94.5),
    ("MobileNetV3_small_ssld", "small", "MobileNetV3_small_x1_0", "MobileNetV3_small_x1_0_ssld_pretrained", 71.3, 90.1),
)

for _name, _arch, _factory, _stem, _top1, _top5 in MODELS:
    _dygraph, _fluid, _ = layout_tables(tensors(_arch))
    register_classifier(
        _name, "paddle.mobilenet_v3", functools.partial(MobileNetV3Classifier, _arch), dygraph=_dygraph,
        fluid=_fluid, source_model=_factory, stem=_stem, top1=_top1, top5=_top5,
        seed_output_std={"fc": 3.0}, notes=(NOTE,), fluid_names=functools.partial(fluid_names, _arch),
        # parity-full only: an SSLD twin (its seeded net is its plain twin's, bit for bit), and the
        # large net, whose block kinds (SE, hard_swish, hard_sigmoid gate) the small one runs in CI
        slow=_name.endswith("_ssld") or _arch == "large")
