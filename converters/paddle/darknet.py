"""PaddleClas / PaddleX DarkNet53 -> converters.arch.darknet.DarkNet (gluoncv's target, switched).

Source net: ppcls ``model_zoo/darknet.py`` (PaddleClas 2.x). The layers are gluoncv's DarkNet-53
(3x3/1 stem 32, five stages of a 3x3/2 conv then residual blocks 1x1 half width, 3x3 back, plain
add), with two differences: ReLU instead of LeakyReLU(0.1), and each BN is Paddle's legacy
``BatchNorm(act="relu")``, whose output is already activated (target switch ``bn_act``). The
classifier is a Linear with bias on the pooled 1024 features.

Two layouts: "dygraph" (``paddle.save`` of the ppcls state dict: ``_conv1``, ``_conv2``,
``_basic_block_<stage + 1><block + 1>._conv<1|2>``, ``_downsample_<stage>``, each with
``_conv.weight`` and ``_bn.{weight, bias, _mean, _variance}``; ``_out``) and "fluid" (PaddleX's .tar:
PaddleClas 1.x static names, which ppcls passes to every parameter: a conv-BN ``<name>`` is
``<name>.conv.weights`` and ``<name>.bn.{scale, offset, mean, var}``, named ``yolo_input``,
``yolo_input.downsample``, ``stage.<s>.<b>.<0|1>``, ``stage.<s>.downsample``; ``fc_weights`` /
``fc_offset``)."""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Iterator

from ..arch.darknet import DarkNet, DarkNetConfig
from ..registry import paddleclas_eval
from ..rules import Rule, bn_rules
from .paddlex import register_classifier

# ppcls ConvBNLayer: bias-free conv, paddle.nn.BatchNorm (eps 1e-5) with act="relu"
DARKNET53 = DarkNetConfig(layers=(1, 2, 8, 8, 4), channels=(32, 64, 128, 256, 512, 1024), bn_eps=1e-5,
                          stem_stride=1, act="relu", bn_act=True)
BN_NAMES = (("weight", "scale"), ("bias", "offset"), ("_mean", "mean"), ("_variance", "var"))


@dataclass(frozen=True)
class Layer:
    """One ppcls ConvBNLayer: its dygraph path, its static name, our ConvBNLeaky cell."""

    dygraph: str
    fluid: str
    target: str


def layers(cfg: DarkNetConfig) -> Iterator[Layer]:
    yield Layer("_conv1", "yolo_input", "stem")
    for s, n in enumerate(cfg.layers):
        if s == 0:
            yield Layer("_conv2", "yolo_input.downsample", "stages.0.down")
        else:  # ppcls numbers a downsampling conv after the stage before it
            yield Layer(f"_downsample_{s - 1}", f"stage.{s - 1}.downsample", f"stages.{s}.down")
        for b in range(n):
            for k in range(2):
                yield Layer(f"_basic_block_{s}{b + 1}._conv{k + 1}", f"stage.{s}.{b}.{k}",
                            f"stages.{s}.blocks.{b}.conv{k + 1}")


def dygraph_rules(cfg: DarkNetConfig) -> list[Rule]:
    rules = []
    for layer in layers(cfg):
        src = re.escape(layer.dygraph)
        rules.append(Rule(rf"^{src}\._conv\.weight$", f"{layer.target}.conv.weight", f"{layer.dygraph} conv (no bias)"))
        rules += bn_rules(rf"{src}\._bn\.", f"{layer.target}.bn.", f"{layer.dygraph} BN (ReLU inside)",
                          names=tuple(dy for dy, _ in BN_NAMES))
    rules.append(Rule(r"^_out\.(weight|bias)$", r"fc.\1", "classifier (Linear weight stored [in, out])"))
    return rules


def fluid_rules(cfg: DarkNetConfig) -> list[Rule]:
    rules = []
    for layer in layers(cfg):
        src = re.escape(layer.fluid)
        rules.append(Rule(rf"^{src}\.conv\.weights$", f"{layer.target}.conv.weight", f"static conv {layer.fluid}"))
        rules += bn_rules(rf"{src}\.bn\.", f"{layer.target}.bn.", f"static BN {layer.fluid}.bn",
                          names=tuple(st for _, st in BN_NAMES))
    rules += [Rule(r"^fc_weights$", "fc.weight", "static classifier weight ([in, out])"),
              Rule(r"^fc_offset$", "fc.bias", "static classifier bias")]
    return rules


def fluid_names(cfg: DarkNetConfig = DARKNET53) -> dict[str, str]:
    """dygraph state-dict key -> static name (ppcls's parameters carry these names themselves; the
    table serves the paddle-free tests and is checked against ppcls's net in the parity suite)."""
    out = {}
    for layer in layers(cfg):
        out[f"{layer.dygraph}._conv.weight"] = f"{layer.fluid}.conv.weights"
        out.update({f"{layer.dygraph}._bn.{dy}": f"{layer.fluid}.bn.{st}" for dy, st in BN_NAMES})
    out.update({"_out.weight": "fc_weights", "_out.bias": "fc_offset"})
    return out


register_classifier(
    "DarkNet53", "paddle.darknet", functools.partial(DarkNet, DARKNET53), dygraph=dygraph_rules(DARKNET53),
    fluid=fluid_rules(DARKNET53), source_model="DarkNet53", stem="DarkNet53_ImageNet1k_pretrained",
    top1=78.0, top5=94.1, seed_output_std={"_out": 3.0},
    notes=("PaddleClas DarkNet53: gluoncv's DarkNet-53 layers with ReLU (not LeakyReLU) fused into each "
           "BatchNorm (eps 1e-5); eval at 256x256 from a 292 short side; fc weight stored [in, out].",),
    # ppcls/configs/ImageNet/DarkNet/DarkNet53.yaml: ResizeImage(resize_short=292), CropImage(256)
    preprocess=paddleclas_eval(256, 292),
    # in CI despite 41.6M parameters (parity/selection.py's 40M policy): measured cheap, the sweep
    # ~30 s on 2 cores with the seeded build
    slow=False)
