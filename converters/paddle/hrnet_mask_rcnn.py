"""PaddleX MaskRCNN_HRNet_W18_FPN (PaddleX 2.x ``MaskRCNN(backbone='HRNet_W18')`` = PaddleDetection
2.6 MaskRCNN on ``HRNet`` + ``HRFPN``) -> converters.arch.paddle_mask_rcnn.PaddleMaskRCNN with the
HRNet + HRFPN body: FasterRCNN_HRNet_W18_FPN (hrnet_rcnn.py) plus the FPN mask branch of the ResNet
Mask R-CNNs (mask_rcnn.py), names, oracle and parity run reused from both.

Layout "dygraph" only (``paddle.save`` of ppdet's state dict), as the Faster R-CNN on this body."""
from __future__ import annotations

import functools
from typing import Iterator

from ..arch.paddle_mask_rcnn import MaskConfig, PaddleMaskRCNN
from ..registry import Metric, ModelSpec, ppdet_eval, register
from . import hrnet_rcnn, mask_rcnn, rcnn
from .hrnet_seg import Triple
from .paddlex import BN_DEFAULTS

NAME = "MaskRCNN_HRNet_W18_FPN"
CFG = MaskConfig(hrnet_rcnn.CFG, mask_convs=4)


def dygraph() -> Iterator[Triple]:
    yield from hrnet_rcnn.dygraph()
    for t in mask_rcnn.mask_entries(fpn=True):
        yield t.dygraph, t.target, t.why


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
    "Not ported: the PaddleX 1.x static checkpoint of the link (mask_rcnn_hrnetv2p_w18_2x.tar): no 'fluid' "
    "layout (its static HRNet / HRFPN names are unverified here).",
)

register(ModelSpec(
    name=NAME, family="paddle.mask_rcnn.hrnet", framework="paddle", task="detection",
    source_format="paddle-checkpoint", build=functools.partial(PaddleMaskRCNN, CFG),
    rules={"dygraph": hrnet_rcnn.rules(dygraph())}, fixups=mask_rcnn.FIXUPS, defaults=BN_DEFAULTS,
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
    numerics={"dygraph": "ppdet"}, slow=True, parity_images=1))
