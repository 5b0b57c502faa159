"""PaddleClas / PaddleX ImageNet ResNets -> converters.arch.resnet.ResNet (one target, configured).

Source nets: ppcls ``legendary_models/resnet.py`` (PaddleClas 2.x). Version "vb" (ResNet18..101):
stride on the 3x3 conv, no conv biases; unlike torchvision, PaddleClas gives the first block of
*every* stage a projection shortcut, so ResNet18/34 carry a 1x1 64->64 conv in stage 1. Version
"vd" (ResNet50/101_vd and their SSLD-distilled checkpoints): deep stem (3x3/2 32, 3x3 32, 3x3 64)
and, from stage 2 on, an average-pool projection: AvgPool2D(2, 2, padding "SAME", ceil_mode,
exclusive) then a stride-1 1x1 conv; stage 1's projection is a plain 1x1 conv.

Two source layouts:
- "dygraph" (``paddle.save`` of the ppcls state dict): ``stem.<i>.conv.weight``,
  ``stem.<i>.bn._mean``, ``blocks.<k>.conv<j>.{conv,bn}``, ``blocks.<k>.short.{conv,bn}``, ``fc``;
  blocks are numbered flat over all stages.
- "fluid" (PaddleX's .tar links: PaddleClas 1.x static checkpoints, one file per variable),
  named as PaddleClas's ``ppcls/modeling/architectures/resnet.py``/``resnet_vd.py`` (release 1.x/2.0)
  name them: stem ``conv1`` (vd: ``conv1_1``..``conv1_3``), blocks ``res<stage + 2><a, b, ..>`` with
  ``_branch2a/2b/2c`` body convs and a ``_branch1`` projection (ResNet101/152's third stage counts
  ``res4a``, ``res4b1``, ``res4b2``, ..); conv ``<name>_weights``; BN ``bn<name without "res">``
  (``bn_conv1`` for the 7x7 stem, ``bnv1_1`` for ``conv1_1``) with ``_scale/_offset/_mean/_variance``;
  classifier ``fc_0.w_0`` ([in, out]) and ``fc_0.b_0``."""
from __future__ import annotations

import functools
from dataclasses import replace
from typing import Iterator

import torchvision

from ..arch.resnet import ResNet, ResNetConfig
from .paddlex import ConvBN, Tensor, classifier, layout_tables, register_classifier

# paddle.nn.BatchNorm (ppcls's ConvBNLayer) and the static batch_norm op: epsilon 1e-5
EPS = 1e-5
DEPTHS = {18: ("basic", (2, 2, 2, 2)), 34: ("basic", (3, 4, 6, 3)), 50: ("bottleneck", (3, 4, 6, 3)),
          101: ("bottleneck", (3, 4, 23, 3))}
WIDTHS = {"basic": (64, 64, 128, 256, 512), "bottleneck": (64, 256, 512, 1024, 2048)}


def config(depth: int, vd: bool) -> ResNetConfig:
    block, layers = DEPTHS[depth]
    cfg = ResNetConfig(block, layers, WIDTHS[block], bn_eps=EPS, stride_in_1x1=False,
                       projections=(True,) * len(layers))  # every stage's first block projects
    # vd: our stage-1 projection pool is AvgPool(1, 1), an identity, where ppcls has none
    return replace(cfg, deep_stem=(32, 32), avg_down=True) if vd else cfg


def _block_name(depth: int, stage: int, index: int) -> str:
    if depth >= 101 and stage == 2:  # 23 blocks: letters would run out
        return "res4a" if index == 0 else f"res4b{index}"
    return f"res{stage + 2}{chr(97 + index)}"


def _convbn(dygraph: str, fluid: str, conv: str, norm: str) -> ConvBN:
    """A ppcls ConvBNLayer; its static BN drops "res" (``bn2a_branch2a``), the stem's is ``bn_conv1``."""
    fluid_bn = "bn_" + fluid if fluid == "conv1" else "bn" + fluid[3:]
    return ConvBN(f"{dygraph}.conv", f"{dygraph}.bn", fluid, fluid_bn, conv, norm)


def tensors(cfg: ResNetConfig, depth: int) -> Iterator[ConvBN | Tensor]:
    if cfg.deep_stem:
        for k, (conv, norm) in enumerate((("conv1.0", "conv1.1"), ("conv1.3", "conv1.4"), ("conv1.6", "bn1"))):
            yield _convbn(f"stem.{k}", f"conv1_{k + 1}", conv, norm)
    else:
        yield _convbn("stem.0", "conv1", "conv1", "bn1")
    body = ("conv1", "conv2", "conv3") if cfg.block == "bottleneck" else ("conv1", "conv2")
    pc, pn = ("1", "2") if cfg.avg_down else ("0", "1")
    flat = 0
    for s, n in enumerate(cfg.layers):
        for j in range(n):
            name, block = _block_name(depth, s, j), f"layer{s + 1}.{j}"
            for p, conv in enumerate(body):
                yield _convbn(f"blocks.{flat}.conv{p}", f"{name}_branch2{'abc'[p]}", f"{block}.{conv}",
                              f"{block}.bn{p + 1}")
            if j == 0 and cfg.has_projection(s):
                yield _convbn(f"blocks.{flat}.short", f"{name}_branch1", f"{block}.downsample.{pc}",
                              f"{block}.downsample.{pn}")
            flat += 1
    yield from classifier("fc", "fc_0.w_0", "fc_0.b_0")


def fluid_names(cfg: ResNetConfig, depth: int) -> dict[str, str]:
    """dygraph state-dict key -> static variable name: the same net under both naming schemes."""
    return layout_tables(tensors(cfg, depth))[2]


NOTES = {
    "vb": ("PaddleClas ResNet (vb): stride on the 3x3 conv, no conv biases, BN eps 1e-5; every stage's "
           "first block has a projection shortcut (ResNet18/34 too); fc weight stored [in, out]."),
    "vd": ("PaddleClas ResNet_vd: deep stem 3x3/2 32, 3x3 32, 3x3 64; projections from stage 2 on are "
           "AvgPool(2, 2, ceil_mode, exclusive: count_include_pad=False) then a stride-1 1x1 conv + BN."),
}
# torchvision.models.resnet50/101 are exactly ppcls's vb bottleneck nets (stride on the 3x3, no
# biases, projections only where the shape changes, which is every stage's first block there too)
TORCHVISION = {50: torchvision.models.resnet50, 101: torchvision.models.resnet101}

# zooport (= PaddleX) name, depth, vd, ppcls factory, .tar stem, top-1, top-5 (PaddleX model library)
MODELS = (
    ("ResNet18", 18, False, "ResNet18", "ResNet18_pretrained", 71.0, 89.9),
    ("ResNet34", 34, False, "ResNet34", "ResNet34_pretrained", 74.6, 92.1),
    ("ResNet50", 50, False, "ResNet50", "ResNet50_pretrained", 76.5, 93.0),
    ("ResNet101", 101, False, "ResNet101", "ResNet101_pretrained", 77.6, 93.6),
    ("ResNet50_vd", 50, True, "ResNet50_vd", "ResNet50_vd_pretrained", 79.1, 94.4),
    ("ResNet101_vd", 101, True, "ResNet101_vd", "ResNet101_vd_pretrained", 80.2, 95.0),
    ("ResNet50_vd_ssld", 50, True, "ResNet50_vd", "ResNet50_vd_ssld_pretrained", 82.4, 96.1),
    ("ResNet101_vd_ssld", 101, True, "ResNet101_vd", "ResNet101_vd_ssld_pretrained", 83.7, 96.7),
)

for _name, _depth, _vd, _factory, _stem, _top1, _top5 in MODELS:
    _cfg = config(_depth, _vd)
    _dygraph, _fluid, _ = layout_tables(tensors(_cfg, _depth))
    register_classifier(
        _name, "paddle.resnet", functools.partial(ResNet, _cfg), dygraph=_dygraph, fluid=_fluid,
        source_model=_factory, stem=_stem, top1=_top1, top5=_top5,
        seed_output_std={"fc": 3.0}, notes=(NOTES["vd" if _vd else "vb"],),
        fluid_names=functools.partial(fluid_names, _cfg, _depth),
        torchvision=None if _vd or _depth < 50 else TORCHVISION[_depth],
        # parity-full only: > 40M parameters (parity/selection.py's policy); an SSLD twin, whose net
        # and seeded source are its plain twin's bit for bit (same ppcls factory and seed); ResNet34
        # and ResNet50, whose blocks ResNet18 and ResNet50_vd run in CI (CI time)
        slow=_depth >= 101 or _name.endswith("_ssld") or _name in ("ResNet34", "ResNet50"))
