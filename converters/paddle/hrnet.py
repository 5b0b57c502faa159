"""PaddleClas / PaddleX HRNet_W18_C -> converters.arch.hrnet.HRNet.

Source net: ppcls ``legendary_models/hrnet.py`` (PaddleClas 2.x): every conv-BN is a ConvBNLayer
(bias-free conv, ``nn.BatchNorm`` eps 1e-5 without activation, then its own ReLU or none); the
fusion's upsampling is nearest with an integer factor; the classifier a Linear ``fc`` on the 2048
pooled features. Its parameters are named automatically (``conv2d_17.w_0``), so the static names
come from a table (``fluid_names``), registered with ppcls.py for the oracle.

Two layouts:
- "dygraph" (``paddle.save`` of the ppcls state dict): ``conv_layer1_1``/``conv_layer1_2``,
  ``layer1.<b>.conv1..3/conv_down``, ``conv_tr1_1``/``conv_tr1_2``/``conv_tr2``/``conv_tr3``,
  ``st<s>.stage_func_list.<m>.basic_block_list.<i>.<b>.conv1/conv2`` and
  ``...fuse_func.residual_func_list.<f>`` (f flat over the (i, j, k) fusion steps),
  ``last_cls.func_list.<i>``, ``cls_head_conv_list.<i>``, ``conv_last``, each ``.conv``/``.bn``; ``fc``.
- "fluid" (PaddleX's .tar: PaddleClas 1.x static checkpoints, one file per variable), named as
  PaddleClas's release/static ``hrnet.py`` (and PaddleX 1.x's ``cv/nets/hrnet.py``) name them, all
  1-based: stem ``layer1_1``/``layer1_2``; layer1 ``layer2_<b>_conv1..3``/``_downsample``; transitions
  ``tr1_layer_1``/``tr1_layer_2``/``tr2_layer_3``/``tr3_layer_4``; modules ``st<s>_<m>``, their blocks
  ``st<s>_<m>_branch_layer_<i>_<b>_conv1/2``, fusion ``st<s>_<m>_layer_<i>_<j>`` (j > i) or
  ``st<s>_<m>_layer_<i>_<j>_<k>`` (j < i); head ``cls_headconv_<i>_conv1..3/_downsample``,
  ``cls_head_add<i>``, ``cls_head_last_conv``; a conv-BN ``<name>`` is ``<name>_weights`` and
  ``<name>_bn_scale/_offset/_mean/_variance``; classifier ``fc_weights`` ([in, out]), ``fc_offset``."""
from __future__ import annotations

import functools
from typing import Iterator

from ..arch.hrnet import HRNet, HRNetConfig
from .paddlex import ConvBN, Tensor, classifier, layout_tables, register_classifier

W18 = HRNetConfig(18)  # paddle.nn.BatchNorm's epsilon is 1e-5, torch's default too


def _layer(dygraph: str, fluid: str, conv: str, norm: str) -> ConvBN:
    """A ppcls ConvBNLayer (``.conv``, ``.bn``); static ``<fluid>_weights``, ``<fluid>_bn_scale`` ..."""
    return ConvBN(f"{dygraph}.conv", f"{dygraph}.bn", fluid, f"{fluid}_bn", conv, norm)


def _convbn(dygraph: str, fluid: str, target: str) -> ConvBN:
    """... onto our ConvBNAct at ``target``."""
    return _layer(dygraph, fluid, f"{target}.conv", f"{target}.bn")


def _bottleneck(dygraph: str, fluid: str, target: str, project: bool) -> Iterator[ConvBN]:
    for p in (1, 2, 3):
        yield _layer(f"{dygraph}.conv{p}", f"{fluid}_conv{p}", f"{target}.conv{p}", f"{target}.bn{p}")
    if project:
        yield _layer(f"{dygraph}.conv_down", f"{fluid}_downsample", f"{target}.downsample.0", f"{target}.downsample.1")


def _module(cfg: HRNetConfig, stage: int, m: int) -> Iterator[ConvBN]:
    dy, st, tg = f"st{stage}.stage_func_list.{m}", f"st{stage}_{m + 1}", f"stage{stage}.{m}"
    n = stage  # stage s runs s parallel branches
    for i in range(n):
        for b in range(cfg.blocks):
            for p in (1, 2):
                yield _layer(f"{dy}.basic_block_list.{i}.{b}.conv{p}", f"{st}_branch_layer_{i + 1}_{b + 1}_conv{p}",
                            f"{tg}.branches.{i}.{b}.conv{p}", f"{tg}.branches.{i}.{b}.bn{p}")
    flat = 0  # ppcls keeps the fusion's conv-BN layers in one flat list, in (i, j, k) order
    for i in range(n):
        for j in range(n):
            # j > i: one 1x1 conv; j < i: i - j strided 3x3 convs (none for j == i)
            steps = [(f"_{i + 1}_{j + 1}", f"{i}.{j}")] if j > i else [
                (f"_{i + 1}_{j + 1}_{k + 1}", f"{i}.{j}.{k}") for k in range(i - j)]
            for suffix, path in steps:
                yield _convbn(f"{dy}.fuse_func.residual_func_list.{flat}", f"{st}_layer{suffix}", f"{tg}.fuse.{path}")
                flat += 1


def trunk(cfg: HRNetConfig) -> Iterator[ConvBN]:
    """Stem, layer1, transitions and stages: the static names PaddleX 1.x's ``cv/nets/hrnet.py``
    gives its detection and segmentation trunks too (hrnet_rcnn.py, hrnet_seg.py)."""
    yield _convbn("conv_layer1_1", "layer1_1", "conv1")
    yield _convbn("conv_layer1_2", "layer1_2", "conv2")
    for b in range(4):
        yield from _bottleneck(f"layer1.{b}", f"layer2_{b + 1}", f"layer1.{b}", b == 0)
    yield _convbn("conv_tr1_1", "tr1_layer_1", "transition1.0")
    yield _convbn("conv_tr1_2", "tr1_layer_2", "transition1.1")
    for stage, modules in zip((2, 3, 4), cfg.modules):
        if stage > 2:  # the new lowest-resolution branch: static index = the branch number
            yield _convbn(f"conv_tr{stage - 1}", f"tr{stage - 1}_layer_{stage}", f"transition{stage - 1}")
        for m in range(modules):
            yield from _module(cfg, stage, m)


def layers(cfg: HRNetConfig) -> Iterator[ConvBN]:
    yield from trunk(cfg)
    for i in range(len(cfg.head_planes)):
        yield from _bottleneck(f"last_cls.func_list.{i}", f"cls_headconv_{i + 1}", f"incre.{i}", True)
    for i in range(len(cfg.head_planes) - 1):
        yield _convbn(f"cls_head_conv_list.{i}", f"cls_head_add{i + 1}", f"downsamp.{i}")
    yield _convbn("conv_last", "cls_head_last_conv", "final")


def tensors(cfg: HRNetConfig) -> Iterator[ConvBN | Tensor]:
    yield from layers(cfg)
    yield from classifier("fc", "fc_weights", "fc_offset")


def fluid_names(cfg: HRNetConfig) -> dict[str, str]:
    """dygraph state-dict key -> static variable name: the same net under both naming schemes."""
    return layout_tables(tensors(cfg))[2]


NOTES = ("PaddleClas HRNet_C: conv-BN layers without biases (BN eps 1e-5); fusion upsamples by nearest "
         "with an integer factor and sums x_i first, then j ascending; the head merges the four "
         "bottleneck-lifted branches downwards before a 1x1 conv to 2048; fc weight stored [in, out]. "
         "Input sides must be multiples of 32 (each fusion adds maps of exactly 2^k times the size).",)

# zooport name, config, ppcls factory, .tar stem, top-1, top-5 (PaddleX model library, row "HRNet_W18")
MODELS = (("HRNet_W18_C", W18, "HRNet_W18_C", "HRNet_W18_C_pretrained", 76.9, 93.4),)

for _name, _cfg, _factory, _stem, _top1, _top5 in MODELS:
    _dygraph, _fluid, _ = layout_tables(tensors(_cfg))
    register_classifier(
        _name, "paddle.hrnet", functools.partial(HRNet, _cfg), dygraph=_dygraph, fluid=_fluid,
        source_model=_factory, stem=_stem, top1=_top1, top5=_top5, seed_output_std={"fc": 3.0}, notes=NOTES,
        fluid_names=functools.partial(fluid_names, _cfg))
