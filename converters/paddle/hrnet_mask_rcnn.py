"""PaddleX MaskRCNN_HRNet_W18_FPN (PaddleX 2.x ``MaskRCNN(backbone='HRNet_W18')`` = PaddleDetection
2.6 MaskRCNN on ``HRNet`` + ``HRFPN``) -> converters.arch.paddle_mask_rcnn.PaddleMaskRCNN with the
HRNet + HRFPN body: FasterRCNN_HRNet_W18_FPN (hrnet_rcnn.py) plus the FPN mask branch of the ResNet
Mask R-CNNs (mask_rcnn.py), names, oracle and parity run reused from both.

Layouts "dygraph" (``paddle.save`` of ppdet's state dict) and "fluid" (PaddleX 1.x static checkpoint,
as the link: the Faster R-CNN's static names, hrnet_rcnn.py, plus the ResNet Mask R-CNNs' static mask
head ``mask_inter_feat_<i>``, ``conv5_mask``, ``mask_fcn_logits`` with its background channel)."""
from __future__ import annotations

import functools
from typing import Iterator

from ..arch.paddle_mask_rcnn import MaskConfig, PaddleMaskRCNN
from ..registry import Metric, ModelSpec, ppdet_eval, register
from . import hrnet_rcnn, mask_rcnn, rcnn
from . import ppcls
from .hrnet_seg import Triple, static_names
from .paddlex import BN_DEFAULTS

NAME = "MaskRCNN_HRNet_W18_FPN"
CFG = MaskConfig(hrnet_rcnn.CFG, mask_convs=4)


def dygraph() -> Iterator[Triple]:
    yield from hrnet_rcnn.dygraph()
    for t in mask_rcnn.mask_entries(fpn=True):
        yield t.dygraph, t.target, t.why


def fluid() -> Iterator[Triple]:
    yield from hrnet_rcnn.fluid()
    for t in mask_rcnn.mask_entries(fpn=True):
        yield t.fluid, t.target, f"static {t.fluid}: {t.why}"


def fluid_names() -> dict[str, str]:
    return static_names(dygraph(), fluid())


def source_net(seed: int | None = None):
    """ppdet 2.6's MaskRCNN: hrnet_rcnn.source_net's FasterRCNN (faster_rcnn_hrnetv2p_w18.yml's
    values) with mask_rcnn_r50_fpn_1x.yml's MaskHead (4 convs + deconv 256, RoIAlign 14 on P2-P5)."""
    return mask_rcnn.with_mask_head(hrnet_rcnn.source_net(seed), fpn=True)


NOTES = (
    "Ported: PaddleDetection 2.6 MaskRCNN = FasterRCNN_HRNet_W18_FPN (HRNet_W18 + HRFPN, see its notes) + "
    "the FPN MaskHead of the ResNet Mask R-CNNs: RoIAlign 14x14 (aligned, adaptive sampling) of each final "
    "box on P2-P5, 4 convs 3x3 + deconv 2x2 (28x28 masks), mask_fcn_logits 80 classes, the detection's "
    "class channel, sigmoid.",
    *mask_rcnn.NOTES[1:2],
    "'fluid' (the link, mask_rcnn_hrnetv2p_w18_2x.tar: PaddleX 1.x's MaskRCNN(backbone='HRNet_W18'), names and "
    "ops verified against PaddleX release/1.3 at a76b3413, cv/nets/hrnet.py, cv/nets/detection/fpn.py's HRFPN, "
    "mask_rcnn.py, mask_head.py): FasterRCNN_HRNet_W18_FPN's static names and numerics (HRFPN upsampling with "
    "align_corners True) plus the mask head's; the background mask channel is dropped, paste_masks is ppdet "
    "2.6's (as the ResNet Mask R-CNNs).",
)

register(ModelSpec(
    name=NAME, family="paddle.mask_rcnn.hrnet", framework="paddle", task="detection",
    source_format="paddle-checkpoint", build=functools.partial(PaddleMaskRCNN, CFG),
    rules={"dygraph": hrnet_rcnn.rules(dygraph()), "fluid": hrnet_rcnn.rules(fluid())}, fixups=mask_rcnn.FIXUPS,
    defaults=BN_DEFAULTS,
    preprocess=ppdet_eval((800, 1333), True, pad_to=32),
    weights=functools.partial(rcnn.rcnn_weights, NAME, f"{rcnn.PX_ZOO}mask_rcnn_hrnetv2p_w18_2x.tar"),
    source_model="MaskRCNN",
    metrics=(Metric("mAP", 38.7, "COCO val2017 (bbox)", "PaddleX model library"),
             Metric("mask_mAP", 34.7, "COCO val2017 (segm)", "PaddleX model library")),
    notes=NOTES,
    seed_output_std={"rpn_head.rpn_rois_score": 2.0, "rpn_head.rpn_rois_delta": 0.3,
                     "bbox_head.bbox_score": 3.0, "bbox_head.bbox_delta": 1.0,
                     "mask_head.mask_fcn_logits": 3.0},
    floor_points={"score": "cls_prob", "box": "decoder", "mask": "mask_prob"},
    replay=(("bbox_head.roi_extractor.rois", "collect"), ("mask_head.roi_extractor.rois", "mask_rois")),
    seed_size=(384, 640),  # calibration photographs (padded to 32); the slow parity's size
    source_net=source_net, source_run=mask_rcnn.source_run,
    numerics={"dygraph": "ppdet", "fluid": "paddlex"}, slow=True, parity_images=1))
ppcls.register_fluid_names(NAME, fluid_names)
