"""PaddleX DeepLabv3p with MobileNetV3_large_x1_0_ssld -> converters.arch.deeplab_mobilenet_v3.

Layouts (the two nets are described in the target module):
- "dygraph": ``paddle.save`` of PaddleSeg 2.8's ``DeepLabV3P(MobileNetV3_large_x1_0_os8(),
  aspp_ratios=(1, 12, 24, 36))`` state dict. The backbone names its layers as PaddleClas's
  MobileNetV3 (converters/paddle/mobilenet_v3.py's table: ``conv``, ``blocks.<i>.expand_conv`` ...,
  ``mid_se.conv1/2``), without ``last_second_conv``; the head is PaddleSeg's DeepLabV3P head.
  PaddleX 2.x's own ``DeepLabV3P`` accepts only ResNet50_vd / ResNet101_vd: this net is PaddleSeg's.
- "fluid": the PaddleX 1.x model-library link (PaddleSeg 0.x ``deeplabv3p_mobilenetv3_large_
  cityscapes``): the trunk under PaddleClas 1.x static names (``conv1``, ``conv<i + 2>_{expand,
  depthwise,linear}``, ``_se_1/_se_2``, ``conv_last``), the head under ``scope()`` paths
  (``encoder/image_pool/weights``, ``encoder/aspp0/...``, ``decoder/weights``, ``decoder/merge/weights``)."""
from __future__ import annotations

import functools
from typing import Iterator

from ..arch.deeplab_mobilenet_v3 import deeplab_mobilenet_v3
from ..registry import ModelSpec, paddleseg_eval, register
from . import mobilenet_v3 as ppcls_mobilenet_v3
from .paddlex import BN_DEFAULTS, Tensor
from .segmentation import (SEG, Triple, _build_deeplab, deeplab_head_dygraph, dy_conv_bn, miou, rules, run_logits,
                           seg_weights, st_layer, st_scope)


def _trunk():
    """PaddleClas's MobileNetV3 large table without what follows the trunk (pool, 1x1 conv, fc)."""
    for e in ppcls_mobilenet_v3.tensors("large"):
        target = e.target if isinstance(e, Tensor) else e.conv
        if target.startswith("backbone."):
            yield e


def trunk_dygraph() -> Iterator[Triple]:
    for e in _trunk():
        if isinstance(e, Tensor):
            yield f"backbone.{e.dygraph}", e.target, f"backbone {e.why}"
        elif not e.dy_conv.startswith("last_second_conv"):  # PaddleSeg's trunk ends at block 14
            yield from dy_conv_bn(f"backbone.{e.dy_conv.rpartition('.')[0]}", e.conv.rpartition(".")[0], False,
                                  conv="conv", bn="bn")


def trunk_fluid() -> Iterator[Triple]:
    for e in _trunk():
        if isinstance(e, Tensor):
            yield e.fluid, e.target, f"static {e.why}"
        else:
            yield from st_layer(e.st_conv, e.conv.rpartition(".")[0])


def lite_head_fluid() -> Iterator[Triple]:
    yield "encoder/image_pool/weights", "head.pool.weight", "static image-pool gate 1x1 conv (no BN: qsigmoid)"
    yield from st_scope("encoder/aspp0", "head.aspp0", False)
    yield "decoder/weights", "head.project.weight", "static sum-merge: encoder 1x1 conv to the classes"
    yield "decoder/merge/weights", "head.merge.weight", "static sum-merge: low-level 1x1 conv to the classes"


NOTES = (
    "'dygraph': PaddleSeg 2.8 DeepLabV3P on MobileNetV3_large_x1_0_os8 (blocks 6 and 12 unstrided, "
    "depthwise dilations 2 for blocks 7-12 and 4 for 13-14; low-level feature block 2's 24 ch at 1/4, "
    "ASPP on block 14's 160 ch at 1/8), aspp_ratios (1, 12, 24, 36), align_corners False; checked end to "
    "end against PaddleSeg. No published weights exist for it (PaddleX 2.x's DeepLabV3P takes ResNet_vd only).",
    "'fluid' (the link, PaddleSeg 0.x / PaddleX 1.x static): numerics 'paddlex' builds a different net, "
    "a Lite R-ASPP: halved last three blocks and a 480-ch last conv at output stride 32, aspp0 (128) gated "
    "by a 25x25 / stride (4, 5) average pool, 1x1 conv and relu6(x + 3) * 0.16667, a sum-merge decoder with "
    "block 5's depthwise output, no logit conv, align_corners True. The pool needs inputs of at least "
    "769x769. Checked against our own Paddle definition of it (PaddleSeg 2.8's MobileNetV3 layers).",
    "Input: (x / 255 - 0.5) / 0.5 (the static checkpoint expects BGR); output logits (B, 19, H, W) at input "
    "size. Cityscapes eval runs the 1024x2048 frame; parity runs 769x769 stand-ins (the training crop).",
)

register(ModelSpec(
    name="DeepLabv3_MobileNetV3_large_x1_0_ssld", family="paddle.segmentation", framework="paddle",
    task="segmentation", source_format="paddle-checkpoint", build=functools.partial(deeplab_mobilenet_v3, 19),
    rules={"dygraph": rules(iter([*trunk_dygraph(), *deeplab_head_dygraph()])),
           "fluid": rules(iter([*trunk_fluid(), *lite_head_fluid()]))},
    numerics={"dygraph": "paddleseg", "fluid": "paddlex"},
    preprocess=paddleseg_eval((769, 769), "BGR"),
    weights=functools.partial(seg_weights, "DeepLabv3_MobileNetV3_large_x1_0_ssld",
                              f"{SEG}deeplabv3p_mobilenetv3_large_cityscapes.tar.gz"),
    source_model="DeepLabV3P", defaults=BN_DEFAULTS, metrics=miou(73.28), notes=NOTES,
    source_net=functools.partial(_build_deeplab, "MobileNetV3_large_x1_0_os8", num_classes=19,
                                 aspp_ratios=(1, 12, 24, 36)),
    source_run=run_logits,
    seed_size=(256, 320),  # calibration: PaddleSeg's os8 net at 769x769 takes ~10 s a photograph on one core
    slow=True))  # the sweep at 769x769 is parity-full's; CI checks it at a small size (parity/tests)
