"""PaddleX Mask R-CNN (FPN and C4) -> converters.arch.paddle_mask_rcnn.PaddleMaskRCNN.

The Faster R-CNN of converters.paddle.rcnn (same body, neck, RPN and box head names in both
layouts, same fix-ups) plus the mask branch:
- "dygraph" (PaddleDetection 2.6 MaskRCNN): ``mask_head.head.upsample.mask_inter_feat_{1..4}``
  (FPN only), ``mask_head.head.upsample.conv5_mask`` (Conv2DTranspose, [in, out, 2, 2] as torch),
  ``mask_head.mask_fcn_logits`` (80 classes, no background).
- "fluid" (PaddleX 1.x / PaddleDetection 0.x MaskHead): ``mask_inter_feat_{1..4}_{w,b}``,
  ``conv5_mask_{w,b}``, ``mask_fcn_logits_{w,b}`` with 81 channels, background FIRST: a named
  fix-up drops the background channel (it fires on targets switched to the "paddlex" numerics).

The oracle's net gets two Identity sublayers (no parameters, no value changed):
``bbox_head.roi_extractor.rois`` (RPN RoIs, as Faster R-CNN) and ``mask_head.roi_extractor.rois``
(the final boxes the mask branch crops): parity replays both, so mask probabilities are compared on
identical boxes."""
from __future__ import annotations

import functools
from dataclasses import replace
from typing import Iterator

import numpy as np

from ..arch.paddle_mask_rcnn import ClassConv, MaskConfig, PaddleMaskRCNN
from ..registry import Metric, ModelSpec, ppdet_eval, register
from . import ppcls, rcnn
from .paddlex import BN_DEFAULTS, Tensor, layout_tables


def mask_entries(fpn: bool = True) -> Iterator[Tensor]:
    for i in range(4 if fpn else 0):
        yield from rcnn._conv(f"mask_head.head.upsample.mask_inter_feat_{i + 1}", f"mask_inter_feat_{i + 1}",
                              f"mask_head.convs.{2 * i}", f"MaskFeat 3x3 conv {i + 1}")
    yield from rcnn._conv("mask_head.head.upsample.conv5_mask", "conv5_mask", "mask_head.deconv",
                          "MaskFeat 2x2 stride-2 transposed conv ([in, out, kh, kw] in both frameworks)")
    yield from rcnn._conv("mask_head.mask_fcn_logits", "mask_fcn_logits", "mask_head.logits",
                          "per-class mask logits (1x1 conv)")


def entries(cfg, depth: int, fpn: bool = True) -> list:
    return [*rcnn.entries(cfg, depth, fpn), *mask_entries(fpn)]


def fluid_names(cfg, depth: int, fpn: bool = True) -> dict[str, str]:
    return layout_tables(entries(cfg, depth, fpn))[2]


def _drop_bg_channel(a: np.ndarray) -> np.ndarray:
    """Static mask_fcn_logits (first axis: output channels) [bg, c1..c80] -> ppdet's [c1..c80]."""
    if a.shape[0] < 2:
        raise ValueError(f"expected (classes + 1) mask logit channels, got shape {a.shape}")
    return np.ascontiguousarray(a[1:])


MASK_FIXUPS = tuple(
    rcnn.SourceFixup(f"static_mask_logits_{p}_drop_bg", (ClassConv,), p, _drop_bg_channel,
                     f"static mask_fcn_logits has a background channel first, ppdet (and our head) none: "
                     f"dropped ({p})", where=r"^mask_head\.logits$", static=True)
    for p in ("weight", "bias"))
FIXUPS = (*rcnn.FIXUPS, *MASK_FIXUPS)


# --------------------------------------------------------------------------- the source net (oracle, seeding)

def source_net(depth: int, vd: bool, seed: int | None = None, fpn: bool = True, cfg=None):
    """ppdet 2.6's MaskRCNN with mask_rcnn_r50_fpn_1x.yml / mask_rcnn_r50_1x.yml's values (v2.6.0):
    the Faster R-CNN of rcnn.source_net, MaskHead with RoIAlign 14 aligned sampling 0; FPN:
    MaskFeat 4 convs + deconv 256 on P2-P5; C4: share_bbox_feat (the box head's res5 on the mask
    RoIs), MaskFeat 0 convs + deconv 256; MaskPostProcess(binary_thresh 0.5)."""
    return with_mask_head(rcnn.source_net(depth, vd, seed, fpn=fpn, cfg=cfg), fpn)


def with_mask_head(faster, fpn: bool = True):
    """ppdet's MaskRCNN on a built ppdet FasterRCNN's parts (any body: hrnet_mask_rcnn reuses it)."""
    from ..frameworks import import_paddle
    paddle = import_paddle()
    from ppdet.modeling.architectures.mask_rcnn import MaskRCNN
    from ppdet.modeling.heads.mask_head import MaskFeat, MaskHead
    from ppdet.modeling.post_process import MaskPostProcess
    with paddle.utils.unique_name.guard("mask_"):  # the box net's guard named from 0: avoid collisions
        cin = 256 if fpn else 2048
        scales = [1.0 / 2 ** k for k in range(2, 6)] if fpn else [1.0 / 16]
        head = MaskHead(MaskFeat(in_channel=cin, out_channel=256, num_convs=4 if fpn else 0),
                        roi_extractor={"resolution": 14, "sampling_ratio": 0, "aligned": True,
                                       "spatial_scale": scales},
                        num_classes=80, share_bbox_feat=not fpn)
        head.roi_extractor = rcnn._roi_probe(paddle, head.roi_extractor)
        net = MaskRCNN(faster.backbone, faster.rpn_head, faster.bbox_head, head, faster.bbox_post_process,
                       MaskPostProcess(binary_thresh=0.5), neck=faster.neck)
    net.eval()
    return net


def source_run(net, x: np.ndarray, keep_top_k: int = 100):
    """ppdet on one padded batch (im_shape = (H, W), scale_factor 1) -> (ids, scores, boxes, mask
    probabilities [B, K, M, M], pasted masks [B, K, H, W] int32), padded with -1 to ``keep_top_k``
    rows; the probabilities are the mask head's output, taken by a hook. Pasted masks come from
    single-image batches only (ppdet's eval batch): with more images, MaskPostProcess misaligns an
    image without detections (get_pred gives it a placeholder row the mask head never saw), so the
    paste is skipped there and its output stays -1 (seeding needs only the forward)."""
    from ..frameworks import import_paddle
    paddle = import_paddle()
    probs, pasted = [], []
    hook = net.mask_head.register_forward_post_hook(lambda _l, _i, out: probs.append(out.numpy().copy()))
    post = net.mask_post_process

    class Keep:  # MaskPostProcess is a plain object: wrap the call to keep its result
        def __call__(self, mask_out, bboxes, bbox_num, origin_shape):
            if bbox_num.shape[0] > 1:
                return paddle.full([bboxes.shape[0], 1, 1], -1, "int32")
            out = post(mask_out, bboxes, bbox_num, origin_shape)
            pasted.append(out.numpy().copy())
            return out

    net.mask_post_process = Keep()
    try:
        ids, scores, boxes = rcnn.source_run(net, x, keep_top_k)
    finally:
        hook.remove()
        net.mask_post_process = post
    n, _, h, w = x.shape
    (prob,) = probs
    m = prob.shape[-1]
    out_p = np.full((n, keep_top_k, m, m), -1.0, np.float32)
    out_m = np.full((n, keep_top_k, h, w), -1, np.int32)
    start = 0
    for b in range(n):
        k = int((scores[b, :, 0] >= 0).sum())  # this image's rows (empty boxes relabelled -1 included)
        out_p[b, :k] = prob[start:start + k]
        if pasted:
            out_m[b, :k] = pasted[0][:k, :h, :w]
        start += k
    return ids, scores, boxes, out_p, out_m


# --------------------------------------------------------------------------- registration

NOTES = (
    "Ported: PaddleDetection 2.6 MaskRCNN = the FasterRCNN of paddle.rcnn (see its notes) + MaskHead: "
    "RoIAlign 14x14 (aligned, adaptive sampling) of each final box, FPN: 4 convs 3x3 + deconv 2x2 on P2-P5 "
    "(28x28 masks), C4: the box head's res5 then deconv (14x14 masks); mask_fcn_logits 80 classes; the "
    "detection's class channel, sigmoid.",
    "Output: (ids, scores, boxes, masks [B, 100, M, M] probabilities, -1 on padding rows). "
    "converters.arch.paddle_mask_rcnn.paste_masks is ppdet's MaskPostProcess (grid_sample at pixel "
    "centres, threshold >= 0.5) and pastes them onto the (network-input) image. `zooport eval` on COCO "
    "pastes them the same way onto the original image (boxes divided by the resize factors and clipped, "
    "as ppdet's get_pred) and reports box AP (AP) and mask AP (mask_AP, pycocotools segm on RLEs).",
    "'fluid' (PaddleX 1.x): the background channel of mask_fcn_logits is dropped by a named fix-up; the "
    "'paddlex' numerics cover the box and mask RoIAlign (aligned=False, sampling 2 on FPN) but not PaddleX "
    "1.x's own mask paste (Detectron's expand-and-resize in its Python post-processing): paste_masks is "
    "ppdet 2.6's.",
)

# zooport (= PaddleX) name, depth, vd, FPN, link, COCO box / mask AP (PaddleX model library), size, slow
MODELS = (
    ("MaskRCNN_ResNet18_FPN", 18, False, True, f"{rcnn.PX_ZOO}mask_rcnn_r18_fpn_1x.tar", 33.6, 30.5, (384, 640),
     False),
    ("MaskRCNN_ResNet50", 50, False, False, f"{rcnn.PD_ZOO}mask_rcnn_r50_2x.tar", 38.2, 33.4, (800, 1333), True),
    ("MaskRCNN_ResNet50_FPN", 50, False, True, f"{rcnn.PD_ZOO}mask_rcnn_r50_fpn_2x.tar", 38.7, 34.7, (800, 1333),
     True),
    ("MaskRCNN_ResNet50_vd_FPN", 50, True, True, f"{rcnn.PD_ZOO}mask_rcnn_r50_vd_fpn_2x.tar", 39.8, 35.4,
     (800, 1333), True),
    ("MaskRCNN_ResNet101_FPN", 101, False, True, f"{rcnn.PD_ZOO}mask_rcnn_r101_fpn_1x.tar", 39.5, 35.2, (800, 1333),
     True),
    ("MaskRCNN_ResNet101_vd_FPN", 101, True, True, f"{rcnn.PD_ZOO}mask_rcnn_r101_vd_fpn_1x.tar", 41.4, 36.8,
     (800, 1333), True),
)


C4_MEASURED = ("Measured (MaskRCNN_ResNet50, seeded, photograph 'astronaut' at 800x800, 100 test proposals): "
               "113 layer pairs, worst 5.6e-5 of max |ref| (box_head.res5.2.bn3, its fp32 floor 3.8e-5), 100/100 "
               "detections identical, mask probabilities within 1.1e-4 on all 100 rows (tolerance 3.3e-4 = 4 x "
               "their fp32 floor), 50 of 64,000,000 pasted pixels differ, each within the threshold band "
               "parity.masks allows.")


def model_config(depth: int, vd: bool, fpn: bool = True) -> MaskConfig:
    return MaskConfig(rcnn.model_config(depth, vd, fpn), mask_convs=4 if fpn else 0)


def parity_config(cfg: MaskConfig) -> MaskConfig:
    """rcnn.parity_config on the box net (C4: fewer test proposals on both sides)."""
    return replace(cfg, rcnn=rcnn.parity_config(cfg.rcnn))


for _name, _depth, _vd, _fpn, _url, _box, _mask, _size, _slow in MODELS:
    _cfg = model_config(_depth, _vd, _fpn)
    _dy, _st, _ = layout_tables(entries(_cfg.rcnn.backbone, _depth, _fpn))
    register(ModelSpec(
        name=_name, family="paddle.mask_rcnn", framework="paddle", task="detection",
        source_format="paddle-checkpoint", build=functools.partial(PaddleMaskRCNN, _cfg),
        rules={"dygraph": _dy, "fluid": _st}, fixups=FIXUPS, defaults=(*BN_DEFAULTS, *rcnn.AFFINE_DEFAULTS),
        preprocess=ppdet_eval(_size, True, pad_to=32 if _fpn else 0),
        weights=functools.partial(rcnn.rcnn_weights, _name, _url), source_model="MaskRCNN",
        metrics=(Metric("mAP", _box, "COCO val2017 (bbox)", "PaddleX model library"),
                 Metric("mask_mAP", _mask, "COCO val2017 (segm)", "PaddleX model library")),
        notes=NOTES + (() if _fpn else (*rcnn.C4_NOTES[:2], C4_MEASURED)) + (() if _size == (800, 1333) else (
            f"CI parity runs a reduced input: short side {_size[0]}, long side at most {_size[1]} "
            "(the model was evaluated at 800/1333).",)),
        seed_output_std={"rpn_head.rpn_rois_score": 2.0, "rpn_head.rpn_rois_delta": 0.3,
                         "bbox_head.bbox_score": 3.0, "bbox_head.bbox_delta": 1.0,
                         "mask_head.mask_fcn_logits": 3.0},
        floor_points={"score": "cls_prob", "box": "decoder", "mask": "mask_prob"},
        replay=(("bbox_head.roi_extractor.rois", "collect"), ("mask_head.roi_extractor.rois", "mask_rois")),
        seed_size=min(_size, (512, 768)),  # calibration photographs (sizes padded to 32); CI: its parity size
        source_net=functools.partial(source_net, _depth, _vd, fpn=_fpn, cfg=parity_config(_cfg).rcnn),
        source_run=source_run, numerics={"dygraph": "ppdet", "fluid": "paddlex", "inference": "ppdet"},
        parity_build=None if _fpn else functools.partial(PaddleMaskRCNN, parity_config(_cfg)),
        # calibrated on the parity photograph (C4: each pass runs res5 on every RoI; the CI model: CI
        # time); the parity-full FPN models keep their all-photograph seeds
        seed_images=0 if _fpn and _slow else 1,
        slow=_slow, parity_images=1))
    ppcls.register_fluid_names(_name, functools.partial(fluid_names, _cfg.rcnn.backbone, _depth, _fpn))
