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
from typing import Iterator

from ..arch.darknet import DarkNet, DarkNetConfig
from ..registry import paddleclas_eval
from .paddlex import ConvBN, Tensor, classifier, layout_tables, register_classifier

# ppcls ConvBNLayer: bias-free conv, paddle.nn.BatchNorm (eps 1e-5) with act="relu"
DARKNET53 = DarkNetConfig(layers=(1, 2, 8, 8, 4), channels=(32, 64, 128, 256, 512, 1024), bn_eps=1e-5,
                          stem_stride=1, act="relu", bn_act=True)
STATIC_BN = (".scale", ".offset", ".mean", ".var")  # PaddleClas 1.x darknet: "<layer>.bn.var"


def _layer(dygraph: str, fluid: str, target: str) -> ConvBN:
    """A ppcls ConvBNLayer (``_conv``, ``_bn``); static ``<fluid>.conv.weights``, ``<fluid>.bn.scale`` ..."""
    return ConvBN(f"{dygraph}._conv", f"{dygraph}._bn", f"{fluid}.conv", f"{fluid}.bn", f"{target}.conv",
                  f"{target}.bn", st_bn_suffixes=STATIC_BN, st_conv_suffix=".weights")


def tensors(cfg: DarkNetConfig = DARKNET53) -> Iterator[ConvBN | Tensor]:
    yield _layer("_conv1", "yolo_input", "stem")
    for s, n in enumerate(cfg.layers):
        if s == 0:
            yield _layer("_conv2", "yolo_input.downsample", "stages.0.down")
        else:  # ppcls numbers a downsampling conv after the stage before it
            yield _layer(f"_downsample_{s - 1}", f"stage.{s - 1}.downsample", f"stages.{s}.down")
        for b in range(n):
            for k in range(2):
                yield _layer(f"_basic_block_{s}{b + 1}._conv{k + 1}", f"stage.{s}.{b}.{k}",
                             f"stages.{s}.blocks.{b}.conv{k + 1}")
    yield from classifier("_out", "fc_weights", "fc_offset")


def fluid_names(cfg: DarkNetConfig = DARKNET53) -> dict[str, str]:
    """dygraph state-dict key -> static name (ppcls's parameters carry these names themselves; the
    table serves the paddle-free tests and is checked against ppcls's net in the parity suite)."""
    return layout_tables(tensors(cfg))[2]


_DYGRAPH, _FLUID, _ = layout_tables(tensors(DARKNET53))
register_classifier(
    "DarkNet53", "paddle.darknet", functools.partial(DarkNet, DARKNET53), dygraph=_DYGRAPH, fluid=_FLUID,
    source_model="DarkNet53", stem="DarkNet53_ImageNet1k_pretrained",
    top1=78.0, top5=94.1, seed_output_std={"_out": 3.0},
    notes=("PaddleClas DarkNet53: gluoncv's DarkNet-53 layers with ReLU (not LeakyReLU) fused into each "
           "BatchNorm (eps 1e-5); eval at 256x256 from a 292 short side; fc weight stored [in, out].",),
    # ppcls/configs/ImageNet/DarkNet/DarkNet53.yaml: ResizeImage(resize_short=292), CropImage(256)
    preprocess=paddleclas_eval(256, 292),
    # in CI despite 41.6M parameters (parity/selection.py's 40M policy): measured cheap, the sweep
    # ~30 s on 2 cores with the seeded build
    slow=False)
