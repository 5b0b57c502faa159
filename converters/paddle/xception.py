"""PaddleX Xception41 / Xception65 -> converters.arch.xception.Xception.

PaddleX's model library links ``Xception41_deeplab_pretrained.tar`` / ``Xception65_deeplab_pretrained.tar``:
the DeepLab-style Xception of ppcls ``model_zoo/xception_deeplab.py`` (factories ``Xception41_deeplab``
/ ``Xception65_deeplab``), not ppcls's ``model_zoo/xception.py`` (Chollet's Xception, another net).

The ppcls net names every parameter itself, with the names PaddleClas 1.x's static program gave
them (TF DeepLab's scheme), so the "fluid" layout's names are the parameters' own ``.name``s:
``xception_<41|65>/entry_flow/conv<1|2>/weights``; blocks ``xception_<n>/<entry|middle|exit>_flow/
block<i>`` holding ``separable_conv<j>/{depthwise,pointwise}/weights`` and ``shortcut/weights``;
each conv's BN ``<conv scope>/BatchNorm/{gamma,beta,moving_mean,moving_variance}``; classifier
``fc_weights`` ([in, out]) and ``fc_bias``. Paddle saves a variable per file at its name, so the
"/" make a nested directory. The "dygraph" layout (``paddle.save`` of the state dict) names
entry/middle blocks by those scopes too (``xception_41/entry_flow/block1._conv1._bn1._mean``) and
the rest by attribute (``_conv1._conv.weight``, ``_exit_flow_2._conv3._conv2.weight``, ``_fc``)."""
from __future__ import annotations

import functools
from typing import Iterator

from ..arch.xception import Xception, XceptionConfig
from ..registry import paddleclas_eval
from .paddlex import ConvBN, Tensor, classifier, layout_tables, register_classifier


TF_BN = ("/BatchNorm/gamma", "/BatchNorm/beta", "/BatchNorm/moving_mean", "/BatchNorm/moving_variance")


def _layer(conv: str, bn: str, scope: str, target_conv: str, target_bn: str) -> ConvBN:
    """ppcls's conv and BN sublayers; static ``<scope>/weights``, ``<scope>/BatchNorm/gamma`` ..."""
    return ConvBN(conv, bn, scope, scope, target_conv, target_bn, st_bn_suffixes=TF_BN, st_conv_suffix="/weights")


def _block(dy: str, st: str, target: str, shortcut: bool) -> Iterator[ConvBN]:
    for j in (1, 2, 3):
        sep, scope, ours = f"{dy}._conv{j}", f"{st}/separable_conv{j}", f"{target}.sep{j}"
        yield _layer(f"{sep}._conv1", f"{sep}._bn1", f"{scope}/depthwise", f"{ours}.depthwise", f"{ours}.bn_depth")
        yield _layer(f"{sep}._conv2", f"{sep}._bn2", f"{scope}/pointwise", f"{ours}.pointwise", f"{ours}.bn_point")
    if shortcut:
        yield _layer(f"{dy}._short._conv", f"{dy}._short._bn", f"{st}/shortcut", f"{target}.shortcut_conv",
                     f"{target}.shortcut_bn")


def tensors(cfg: XceptionConfig, backbone: str) -> Iterator[ConvBN | Tensor]:
    """``backbone``: ppcls's scope name, "xception_41" / "xception_65"."""
    for k in (1, 2):
        yield _layer(f"_conv{k}._conv", f"_conv{k}._bn", f"{backbone}/entry_flow/conv{k}", f"conv{k}", f"bn{k}")
    for flow, n, shortcut in (("entry", len(cfg.entry), True), ("middle", cfg.middle_blocks, False)):
        for i in range(n):
            scope = f"{backbone}/{flow}_flow/block{i + 1}"  # ppcls's sublayer name is the scope itself
            yield from _block(scope, scope, f"{flow}.{i}", shortcut)
    yield from _block("_exit_flow_1", f"{backbone}/exit_flow/block1", "exit1", True)
    yield from _block("_exit_flow_2", f"{backbone}/exit_flow/block2", "exit2", False)
    yield from classifier("_fc", "fc_weights", "fc_bias")


def fluid_names(cfg: XceptionConfig, backbone: str) -> dict[str, str]:
    """dygraph state-dict key -> static variable name (what ppcls's parameters are named)."""
    return layout_tables(tensors(cfg, backbone))[2]


NOTE = ("PaddleClas Xception*_deeplab: BN eps 1e-3; ReLU before each separable conv (after each BN in "
        "exit block 2, whose convs dilate by 2); symmetric padding (k // 2) * dilation; eval-mode "
        "Dropout(0.5, downscale_in_infer) = x * 0.5 before the pool; fc weight stored [in, out].")

# zooport (= PaddleX) name, middle-flow blocks, ppcls scope, ppcls factory, .tar stem, top-1, top-5
MODELS = (
    ("Xception41", 8, "xception_41", "Xception41_deeplab", "Xception41_deeplab_pretrained", 79.6, 94.4),
    ("Xception65", 16, "xception_65", "Xception65_deeplab", "Xception65_deeplab_pretrained", 80.3, 94.5),
)

for _name, _middle, _backbone, _factory, _stem, _top1, _top5 in MODELS:
    _cfg = XceptionConfig(_middle)
    _dygraph, _fluid, _ = layout_tables(tensors(_cfg, _backbone))
    register_classifier(
        _name, "paddle.xception", functools.partial(Xception, _cfg), dygraph=_dygraph, fluid=_fluid,
        source_model=_factory, stem=_stem, top1=_top1, top5=_top5, seed_output_std={"_fc": 3.0}, notes=(NOTE,),
        # PaddleClas's Xception*_deeplab eval: resize short side 320, centre crop 299
        preprocess=paddleclas_eval(299, 320),
        # Xception65: 133 conv + linear layers, ~40M parameters (parity/selection.py's policy)
        slow=_middle > 8)
