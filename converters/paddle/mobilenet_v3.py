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
import re
from typing import Iterator

from ..arch.mobilenet_v3 import CONFIGS
from ..arch.mobilenet_v3_cls import MobileNetV3Classifier
from ..rules import Rule, bn_rules
from .paddlex import register_classifier

BN_NAMES = (("weight", "scale"), ("bias", "offset"), ("_mean", "mean"), ("_variance", "variance"))


def conv_bn_layers(arch: str) -> Iterator[tuple[str, str, str]]:
    """(dygraph ConvBNLayer path, static name, our ConvBNAct path) in network order."""
    yield "conv", "conv1", "backbone.stem"
    for i in range(len(CONFIGS[arch])):
        for dy, st, ours in (("expand_conv", "expand", "expand"), ("bottleneck_conv", "depthwise", "dw"),
                             ("linear_conv", "linear", "project")):
            yield f"blocks.{i}.{dy}", f"conv{i + 2}_{st}", f"backbone.blocks.{i}.{ours}"
    yield "last_second_conv", "conv_last", "backbone.last"


def biased_convs(arch: str) -> Iterator[tuple[str, str, str]]:
    """(dygraph conv path, static prefix, our conv path) of the SE convs (weight and bias)."""
    for i, block in enumerate(CONFIGS[arch]):
        if block.se:
            for k, ours in ((1, "reduce"), (2, "expand")):
                yield f"blocks.{i}.mid_se.conv{k}", f"conv{i + 2}_se_{k}", f"backbone.blocks.{i}.se.{ours}"


def dygraph_rules(arch: str) -> list[Rule]:
    rules = []
    for dy, _, ours in conv_bn_layers(arch):
        src = re.escape(dy)
        rules.append(Rule(rf"^{src}\.conv\.weight$", f"{ours}.conv.weight", f"{dy} conv (no bias)"))
        rules += bn_rules(rf"{src}\.bn\.", f"{ours}.bn.", f"{dy} BN", names=tuple(d for d, _ in BN_NAMES))
    for dy, _, ours in biased_convs(arch):
        rules.append(Rule(rf"^{re.escape(dy)}\.(weight|bias)$", rf"{ours}.\1", f"{dy}: squeeze-excite 1x1 conv"))
    rules += [Rule(r"^last_conv\.weight$", "last_conv.weight", "1x1 conv after the pool (no bias)"),
              Rule(r"^fc\.(weight|bias)$", r"fc.\1", "classifier (Linear weight stored [in, out])")]
    return rules


def fluid_rules(arch: str) -> list[Rule]:
    rules = []
    for _, st, ours in conv_bn_layers(arch):
        rules.append(Rule(rf"^{st}_weights$", f"{ours}.conv.weight", f"static conv {st}"))
        rules += bn_rules(rf"{st}_bn_", f"{ours}.bn.", f"static BN {st}_bn", names=tuple(s for _, s in BN_NAMES))
    for _, st, ours in biased_convs(arch):
        rules += [Rule(rf"^{st}_weights$", f"{ours}.weight", f"static squeeze-excite conv {st}"),
                  Rule(rf"^{st}_offset$", f"{ours}.bias", f"static squeeze-excite conv {st} bias")]
    rules += [Rule(r"^last_1x1_conv_weights$", "last_conv.weight", "static 1x1 conv after the pool"),
              Rule(r"^fc_weights$", "fc.weight", "static classifier weight ([in, out])"),
              Rule(r"^fc_offset$", "fc.bias", "static classifier bias")]
    return rules


def fluid_names(arch: str) -> dict[str, str]:
    """dygraph state-dict key -> static variable name."""
    out = {}
    for dy, st, _ in conv_bn_layers(arch):
        out[f"{dy}.conv.weight"] = f"{st}_weights"
        out.update({f"{dy}.bn.{d}": f"{st}_bn_{s}" for d, s in BN_NAMES})
    for dy, st, _ in biased_convs(arch):
        out.update({f"{dy}.weight": f"{st}_weights", f"{dy}.bias": f"{st}_offset"})
    out.update({"last_conv.weight": "last_1x1_conv_weights", "fc.weight": "fc_weights", "fc.bias": "fc_offset"})
    return out


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
    register_classifier(
        _name, "paddle.mobilenet_v3", functools.partial(MobileNetV3Classifier, _arch), dygraph=dygraph_rules(_arch),
        fluid=fluid_rules(_arch), source_model=_factory, stem=_stem, top1=_top1, top5=_top5,
        seed_output_std={"fc": 3.0}, notes=(NOTE,), fluid_names=functools.partial(fluid_names, _arch),
        slow=_name.endswith("_ssld"))  # parity-full only: its seeded net is its plain twin's, bit for bit
