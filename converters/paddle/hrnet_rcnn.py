"""PaddleX FasterRCNN_HRNet_W18_FPN (PaddleDetection 2.6 FasterRCNN on ``HRNet`` + ``HRFPN``) ->
converters.arch.paddle_rcnn.PaddleFasterRCNN with the HRNet + HRFPN body (arch/hrfpn.py).

Layout "dygraph" (``paddle.save`` of ppdet's state dict): the trunk is named as PaddleSeg's HRNet
(hrnet_seg.py's table) with ppdet's sublayer names (``.conv``/``.norm``, layer1 ``la1.block_layer2_<b>``)
and no ``backbone.`` nesting beyond the first; HRFPN ``neck.reduction`` and ``neck.fpn_conv_<k>``
(bias-free); RPN and box head as every ppdet Faster R-CNN (rcnn.py's table).

Layout "fluid" (PaddleX 1.x static checkpoints, one file per variable; names from PaddleX release/1.3
at a76b3413: ``cv/nets/hrnet.py``, HRFPN in ``cv/nets/detection/fpn.py``, heads as the ResNet FPN
nets): the trunk named as HRNet_W18_C's static table (hrnet.py's ``trunk``), HRFPN
``hrfpn_reduction_weights`` and ``shared_fpn_conv_<k>_weights`` (k = 0..4, bias-free), RPN
``conv_rpn_fpn2_*`` ..., head ``fc6_*``, ``fc7_*``, ``cls_score_*``, ``bbox_pred_*`` with rcnn.py's
static fix-ups (background first, background box rows)."""
from __future__ import annotations

import functools
import re
from typing import Iterator

from ..arch.hrfpn import hrnet_hrfpn
from ..arch.hrnet import HRNetConfig
from ..arch.paddle_rcnn import PaddleFasterRCNN, RCNNConfig
from ..frameworks import paddle_build_scope
from ..registry import Metric, ModelSpec, ppdet_eval, register
from ..rules import Rule
from . import ppcls
from .hrnet_seg import PPDET, Triple, static_names, trunk_dygraph, trunk_fluid
from .paddlex import BN_DEFAULTS
from .rcnn import FIXUPS, NOTES as RCNN_NOTES, PD_ZOO, fpn_faster_rcnn, neck_head_entries, rcnn_weights, source_run

W18 = HRNetConfig(18)  # ppdet pads (k - 1) // 2 and fuses by nearest upsampling, as PaddleClas


def dygraph(cfg: HRNetConfig = W18, levels: int = 5) -> Iterator[Triple]:
    yield from trunk_dygraph(cfg, "backbone.", "backbone.", PPDET)
    yield "neck.reduction.weight", "fpn.reduction.weight", "HRFPN 1x1 reduction of the concatenated branches"
    for k in range(levels):
        yield f"neck.fpn_conv_{k}.weight", f"fpn.fpn_convs.{k}.weight", f"HRFPN 3x3 output P{k + 2}"
    for t in neck_head_entries(fpn=True):
        if not t.dygraph.startswith("neck."):  # the ResNet FPN's tensors
            yield t.dygraph, t.target, t.why


def fluid(cfg: HRNetConfig = W18, levels: int = 5) -> Iterator[Triple]:
    yield from trunk_fluid(cfg, "backbone.")
    yield "hrfpn_reduction_weights", "fpn.reduction.weight", "static HRFPN 1x1 reduction (no bias)"
    for k in range(levels):
        yield f"shared_fpn_conv_{k}_weights", f"fpn.fpn_convs.{k}.weight", f"static HRFPN 3x3 output P{k + 2}"
    for t in neck_head_entries(fpn=True):
        if not t.dygraph.startswith("neck."):  # the ResNet FPN's tensors
            yield t.fluid, t.target, f"static {t.fluid}: {t.why}"


def fluid_names() -> dict[str, str]:
    """{ppdet state-dict key: static name}: the seeded oracle's weights written as a fluid directory."""
    return static_names(dygraph(), fluid())


def rules(triples: Iterator[Triple]) -> list[Rule]:
    return [Rule(rf"^{re.escape(s)}$", t, why) for s, t, why in triples]


def source_net(seed: int | None = None):
    """ppdet 2.6's FasterRCNN with faster_rcnn_hrnetv2p_w18.yml's values (v2.6.0): HRNet width 18,
    freeze_at 0, return_idx 0..3; HRFPN 256, no shared conv (extra stage: P6 by average pool); the
    rest as faster_rcnn_r50_fpn.yml (rcnn.fpn_faster_rcnn)."""
    from ..frameworks import import_paddle, import_ppdet
    paddle = import_paddle()
    import_ppdet()
    from ppdet.modeling.backbones.hrnet import HRNet
    from ppdet.modeling.necks.hrfpn import HRFPN
    with paddle_build_scope(paddle, seed):
        backbone = HRNet(width=18, freeze_at=0, return_idx=[0, 1, 2, 3])
        shapes = backbone.out_shape
        neck = HRFPN(in_channels=[s.channels for s in shapes], out_channel=256, share_conv=False,
                     spatial_scales=[1.0 / s.stride for s in shapes])
        return fpn_faster_rcnn(paddle, backbone, neck)


NOTES = (
    "Ported: PaddleDetection 2.6 FasterRCNN on HRNet_W18 (the trunk shared with HRNet_W18_C and the HRNet_W18 "
    "segmenter; ppdet's padding and nearest fusion are PaddleClas's) + HRFPN (own module: torchvision has no "
    "HRFPN): branches upsampled bilinearly to 1/4, concatenated, 1x1 to 256, P3-P6 by average pools, a 3x3 conv "
    "per level; RPN, RoIAlign on P2-P5, TwoFCHead and post-processing as the ResNet FPN nets.",
    *RCNN_NOTES[1:2],
    "'fluid' (the link, a static checkpoint; names and ops verified against PaddleX release/1.3 at a76b3413, "
    "cv/nets/hrnet.py and cv/nets/detection/fpn.py's HRFPN, whose names PaddleDetection 0.x's hrfpn.py shares): "
    "numerics 'paddlex' as the ResNet FPN nets (see rcnn.py) plus HRFPN's upsampling with align_corners True "
    "(fluid resize_bilinear's default; ppdet 2.x: False). The trunk fuses by nearest upsampling with "
    "align_corners False, as PaddleX 1.3 runs it (PaddleX before its commit 00533d50, like other static HRNets, "
    "called resize_nearest with fluid's default align_corners True: a checkpoint trained that way differs).",
)

CFG = RCNNConfig(W18, body=hrnet_hrfpn)

register(ModelSpec(
    name="FasterRCNN_HRNet_W18_FPN", family="paddle.rcnn.hrnet", framework="paddle", task="detection",
    source_format="paddle-checkpoint", build=functools.partial(PaddleFasterRCNN, CFG),
    rules={"dygraph": rules(dygraph()), "fluid": rules(fluid())}, fixups=FIXUPS, defaults=BN_DEFAULTS,
    preprocess=ppdet_eval((800, 1333), True, pad_to=32),
    weights=functools.partial(rcnn_weights, "FasterRCNN_HRNet_W18_FPN", f"{PD_ZOO}faster_rcnn_hrnetv2p_w18_1x.tar"),
    source_model="FasterRCNN", metrics=(Metric("mAP", 36.0, "COCO val2017 (bbox)", "PaddleX model library"),),
    notes=NOTES,
    seed_output_std={"rpn_head.rpn_rois_score": 2.0, "rpn_head.rpn_rois_delta": 0.3,
                     "bbox_head.bbox_score": 3.0, "bbox_head.bbox_delta": 1.0},
    floor_points={"score": "cls_prob", "box": "decoder"},
    replay=(("bbox_head.roi_extractor.rois", "collect"),),
    seed_size=(512, 768), source_net=source_net, source_run=source_run,
    numerics={"dygraph": "ppdet", "fluid": "paddlex"}, slow=True, parity_images=1))
ppcls.register_fluid_names("FasterRCNN_HRNet_W18_FPN", fluid_names)
