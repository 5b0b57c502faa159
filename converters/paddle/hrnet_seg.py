"""PaddleX HRNet_W18 segmenter (PaddleSeg 2.8 ``FCN`` on ``backbones.HRNet_W18``) ->
converters.arch.hrnet.HRNetFCN (the classifier's trunk, built with PaddleSeg's switches).

Layout "dygraph" (``paddle.save`` of the PaddleSeg model's state dict): every conv-BN is a ConvBN /
ConvBNReLU (``._conv``, ``._batch_norm``), named by ``add_sublayer`` strings, 1-based:
``backbone.conv_layer1_1/2``; layer1 ``la1.bb_layer2_<b>.conv1..3/conv_down``; transitions
``tr1.transition_tr1_layer_1/2``, ``tr2.transition_tr2_layer_3``, ``tr3.transition_tr3_layer_4``
(the others are identities: same widths); modules ``st<s>.stage_st<s>_<m>`` with blocks
``branches_func.bb_st<s>_<m>_branch_layer_<i>_<b>.conv1/2`` and fusion
``fuse_func.residual_st<s>_<m>_layer_<i>_<j>`` (j > i) or ``..._<i>_<j>_<k>`` (j < i); head
``head.conv_1`` (biased conv) and ``head.cls``. PaddleDetection 2.x's HRNet names the same layers
the same way but for its sublayers (``PPDET``): the trunk table serves hrnet_rcnn.py too.

Layout "fluid" (PaddleX 1.x ``cv/nets/segmentation/hrnet.py`` on ``cv/nets/hrnet.py``, release/1.3
at a76b3413; one file per variable): the trunk named as HRNet_W18_C's static table (hrnet.py's
``trunk``, ``layer1_1`` ... ``st4_3_layer_4_2_2``), the head ``conv-2`` (a conv_bn_layer:
``conv-2_weights``, ``conv-2_bn_{scale,offset,mean,variance}``) and ``conv-1_weights`` (the
classifier, no bias). The static net differs from PaddleSeg 2.x's, so the target is rebuilt for it
(numerics "paddlex", arch/hrnet.py's HRNetFCN)."""
from __future__ import annotations

import functools
from typing import Iterator

from ..arch.hrnet import SEG_W18, HRNetConfig, HRNetFCN
from ..frameworks import paddle_build_scope
from ..registry import ModelSpec, paddleseg_eval, register
from . import hrnet as cls_hrnet
from .paddlex import BN_DEFAULTS, triples
from .segmentation import BN_DY, BN_TG, SEG, Triple, dy_conv_bn, miou, rules, run_logits, seg_weights, st_layer


PADDLESEG = ("_conv", "_batch_norm", "bb")  # conv, norm sublayer names; layer1's block prefix
PPDET = ("conv", "norm", "block")  # PaddleDetection 2.x's HRNet: the same net, other sublayer names


def _conv_bn(prefix: str, conv: str, bn: str, names: tuple[str, str, str]) -> Iterator[Triple]:
    """A bias-free conv-BN(-ReLU) at ``prefix`` onto our conv ``conv`` and BatchNorm ``bn``."""
    yield f"{prefix}.{names[0]}.weight", f"{conv}.weight", f"{prefix} conv"
    for d, t in zip(BN_DY, BN_TG):
        yield f"{prefix}.{names[1]}.{d}", f"{bn}.{t}", f"{prefix} BN {d.lstrip('_')}"


def _module(cfg: HRNetConfig, stage: int, m: int, src: str, tgt: str, names) -> Iterator[Triple]:
    name = f"st{stage}_{m + 1}"
    src, tgt = f"{src}st{stage}.stage_{name}", f"{tgt}stage{stage}.{m}"
    for i in range(stage):  # stage s runs s parallel branches
        for b in range(cfg.blocks):
            block, ours = f"{src}.branches_func.bb_{name}_branch_layer_{i + 1}_{b + 1}", f"{tgt}.branches.{i}.{b}"
            for p in (1, 2):
                yield from _conv_bn(f"{block}.conv{p}", f"{ours}.conv{p}", f"{ours}.bn{p}", names)
    for i in range(stage):
        for j in range(stage):
            fuse, ours = f"{src}.fuse_func.residual_{name}_layer_{i + 1}_{j + 1}", f"{tgt}.fuse.{i}.{j}"
            if j > i:
                yield from _conv_bn(fuse, f"{ours}.conv", f"{ours}.bn", names)
            for k in range(i - j):  # j < i: one strided 3x3 per step
                yield from _conv_bn(f"{fuse}_{k + 1}", f"{ours}.{k}.conv", f"{ours}.{k}.bn", names)


def trunk_dygraph(cfg: HRNetConfig, src: str = "backbone.", tgt: str = "backbone.",
                  names: tuple[str, str, str] = PADDLESEG) -> Iterator[Triple]:
    """PaddleSeg 2.x's (or, with ``PPDET`` names, PaddleDetection 2.x's) HRNet onto our HRNetBody;
    ``src``/``tgt``: the trunk's key prefixes."""
    def cba(prefix: str, target: str) -> Iterator[Triple]:
        return _conv_bn(f"{src}{prefix}", f"{tgt}{target}.conv", f"{tgt}{target}.bn", names)

    yield from cba("conv_layer1_1", "conv1")
    yield from cba("conv_layer1_2", "conv2")
    for b in range(4):
        block, ours = f"{src}la1.{names[2]}_layer2_{b + 1}", f"{tgt}layer1.{b}"
        for p in (1, 2, 3):
            yield from _conv_bn(f"{block}.conv{p}", f"{ours}.conv{p}", f"{ours}.bn{p}", names)
        if b == 0:
            yield from _conv_bn(f"{block}.conv_down", f"{ours}.downsample.0", f"{ours}.downsample.1", names)
    yield from cba("tr1.transition_tr1_layer_1", "transition1.0")
    yield from cba("tr1.transition_tr1_layer_2", "transition1.1")
    for stage, modules in zip((2, 3, 4), cfg.modules):
        if stage > 2:  # only the new branch's transition has weights
            yield from cba(f"tr{stage - 1}.transition_tr{stage - 1}_layer_{stage}", f"transition{stage - 1}")
        for m in range(modules):
            yield from _module(cfg, stage, m, src, tgt, names)


def trunk_fluid(cfg: HRNetConfig, tgt: str = "backbone.") -> Iterator[Triple]:
    """PaddleX 1.x's static HRNet trunk (the classifier's static names, hrnet.py) onto our HRNetBody
    at ``tgt``."""
    for _, st, target, _ in triples(cls_hrnet.trunk(cfg)):
        yield st, f"{tgt}{target}", f"static {st}: PaddleX 1.x HRNet trunk"


def static_names(dygraph: Iterator[Triple], fluid: Iterator[Triple]) -> dict[str, str]:
    """{dygraph key: static name} of two tables onto the same target keys (the oracle's map)."""
    by_target = {t: s for s, t, _ in fluid}
    return {s: by_target[t] for s, t, _ in dygraph}


def fcn_fluid(cfg: HRNetConfig = SEG_W18) -> Iterator[Triple]:
    yield from trunk_fluid(cfg)
    yield from st_layer("conv-2", "head")
    yield "conv-1_weights", "logit.weight", "static classifier 1x1 conv (no bias)"


def fcn_dygraph(cfg: HRNetConfig = SEG_W18) -> Iterator[Triple]:
    yield from trunk_dygraph(cfg)
    yield from dy_conv_bn("head.conv_1", "head", True)
    yield "head.cls.weight", "logit.weight", "FCN classifier 1x1 conv"
    yield "head.cls.bias", "logit.bias", "FCN classifier bias"


def build_fcn(seed: int | None, num_classes: int = 19):
    """PaddleSeg's FCN on its HRNet_W18 (backbone built inside the same seed and name guard)."""
    from ..frameworks import import_paddle, import_paddleseg
    paddle, paddleseg = import_paddle(), import_paddleseg()
    with paddle_build_scope(paddle, seed):
        net = paddleseg.models.FCN(num_classes, paddleseg.models.backbones.HRNet_W18())
    net.eval()
    return net


NOTES = (
    "Ported: PaddleSeg 2.8's FCN on HRNet_W18 (PaddleX 2.x's paddlex.seg.HRNet, width 18): HRNet's trunk "
    "(shared with HRNet_W18_C) with PaddleSeg's switches: stride-2 convs padded 'same' (the odd pixel after), "
    "fusion upsampling bilinear to the branch size, align_corners False; the four branches resized to 1/4 and "
    "concatenated (270 ch), 1x1 conv-BN-ReLU, 1x1 classifier, logits resized to the input size.",
    "'fluid' (PaddleX 1.x static net, names and ops verified against PaddleX release/1.3 at a76b3413, "
    "paddlex/cv/nets/hrnet.py and cv/nets/segmentation/hrnet.py): numerics 'paddlex' rebuilds the target as "
    "that net: the trunk's convs padded (k - 1) // 2, fusion bilinear to the branch size with align_mode 1 "
    "(source index = output index x in / out), head conv-2 and classifier conv-1 without biases, the concat "
    "and logit resizes with align_corners True. The link itself (PaddleSeg 0.x's hrnet_w18_bn_cityscapes) "
    "was trained by PaddleSeg 0.x, whose fusion resize differed (align_corners True, before PaddleX's "
    "commit a20bc127); the port runs PaddleX 1.x's net, as PaddleX 1.3 does.",
    "Input: (x / 255 - 0.5) / 0.5; output logits (B, 19, H, W) at input size.",
)

register(ModelSpec(
    name="HRNet_W18", family="paddle.segmentation", framework="paddle", task="segmentation",
    source_format="paddle-checkpoint", build=functools.partial(HRNetFCN, 19),
    rules={"dygraph": rules(fcn_dygraph()), "fluid": rules(fcn_fluid())},
    numerics={"dygraph": "paddleseg", "fluid": "paddlex"},
    preprocess=paddleseg_eval((512, 512), "BGR"),
    weights=functools.partial(seg_weights, "HRNet_W18", f"{SEG}hrnet_w18_bn_cityscapes.tgz"),
    source_model="FCN", defaults=BN_DEFAULTS, metrics=miou(79.36), notes=NOTES,
    source_net=build_fcn, source_run=run_logits,
    seed_size=(128, 160),  # calibration at a small input: seeding at 512x512 costs ~90 s
    slow=True))  # the sweep at 512x512: ~16 s a photograph (x3); CI checks 128x160 and 100x140
