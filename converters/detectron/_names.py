"""Detectron's blob naming scheme, as data: every blob a checkpoint of a config holds, with its shape.

Used to write synthetic fixtures (tests, ``--init random``); the rule tables in the family files
are written independently as anchored patterns, so a wrong rule fails on these names.
Caffe2 layouts: conv weights (out, in / groups, k, k), FC weights (out, in), ConvTranspose
weights (in, out, k, k); convs in the ResNet body have no bias (AffineChannel follows them)."""
from __future__ import annotations

from dataclasses import dataclass

from ..arch.detectron import BODIES  # (blocks per stage res2..res5, groups, width per group, stride_in_1x1)


@dataclass(frozen=True)
class Layout:
    body: str  # key of BODIES
    head: str  # "faster" | "mask" | "keypoint" | "retinanet" | "classifier" (ImageNet backbone)
    fpn: bool = True  # False: C4 (res5 is the box head)
    num_classes: int = 81  # with background (keypoint: 2)
    num_keypoints: int = 17

    @property
    def blocks(self) -> tuple[int, ...]:
        return BODIES[self.body][0]


def last_sum(layout: Layout, stage: int) -> str:
    """The blob name of a stage's output, e.g. res4_5_sum for R-50 (stage 4)."""
    return f"res{stage}_{layout.blocks[stage - 2] - 1}_sum"


def _conv(name: str, shape: tuple[int, ...], bias: bool = True, transpose: bool = False) -> dict[str, tuple[int, ...]]:
    """A conv/FC's blobs; a ConvTranspose (``transpose``) has its outputs on axis 1."""
    return {f"{name}_w": shape, **({f"{name}_b": (shape[1 if transpose else 0],)} if bias else {})}


def _affine(name: str, c: int) -> dict[str, tuple[int, ...]]:
    return {f"{name}_bn_s": (c,), f"{name}_bn_b": (c,)}


def body_blobs(layout: Layout, stages: tuple[int, ...] = (2, 3, 4, 5)) -> dict[str, tuple[int, ...]]:
    blocks, groups, width, _ = BODIES[layout.body]
    out: dict[str, tuple[int, ...]] = {}
    if 2 in stages:
        out.update(_conv("conv1", (64, 3, 7, 7), bias=False))
        out.update(_affine("res_conv1", 64))
    cin = 64 if 2 in stages else 256 * 2 ** (min(stages) - 3)
    for s in stages:
        inner, cout = groups * width * 2 ** (s - 2), 256 * 2 ** (s - 2)
        for i in range(blocks[s - 2]):
            p = f"res{s}_{i}"
            for br, shape in (("2a", (inner, cin, 1, 1)), ("2b", (inner, inner // groups, 3, 3)),
                              ("2c", (cout, inner, 1, 1))):
                out.update(_conv(f"{p}_branch{br}", shape, bias=False))
                out.update(_affine(f"{p}_branch{br}", shape[0]))
            if i == 0:
                out.update(_conv(f"{p}_branch1", (cout, cin, 1, 1), bias=False))
                out.update(_affine(f"{p}_branch1", cout))
            cin = cout
    return out


def fpn_blobs(layout: Layout, levels: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
    out: dict[str, tuple[int, ...]] = {}
    top = last_sum(layout, 5)
    out.update(_conv(f"fpn_inner_{top}", (256, 2048, 1, 1)))
    for s in levels:
        if s != 5:
            out.update(_conv(f"fpn_inner_{last_sum(layout, s)}_lateral", (256, 256 * 2 ** (s - 2), 1, 1)))
    for s in levels:
        out.update(_conv(f"fpn_{last_sum(layout, s)}", (256, 256, 3, 3)))
    return out


def blobs(layout: Layout) -> dict[str, tuple[int, ...]]:
    """Every parameter blob of a trained checkpoint (or an ImageNet backbone pickle)."""
    k, c = layout.num_classes, layout.head
    if c == "classifier":
        return {**body_blobs(layout), "pred_w": (1000, 2048), "pred_b": (1000,)}
    if c == "retinanet":
        out = {**body_blobs(layout), **fpn_blobs(layout, (3, 4, 5))}
        out.update(_conv("fpn_6", (256, 2048, 3, 3)))
        out.update(_conv("fpn_7", (256, 256, 3, 3)))
        for branch, pred in (("cls", (9 * (k - 1), 256, 3, 3)), ("bbox", (36, 256, 3, 3))):
            for n in range(4):
                out.update(_conv(f"retnet_{branch}_conv_n{n}_fpn3", (256, 256, 3, 3)))
            out.update(_conv(f"retnet_{branch}_pred_fpn3", pred))
        return out
    if not layout.fpn:  # C4: RPN on res4 (15 anchors), res5 as the box head
        out = body_blobs(layout)
        out.update(_conv("conv_rpn", (1024, 1024, 3, 3)))
        out.update(_conv("rpn_cls_logits", (15, 1024, 1, 1)))
        out.update(_conv("rpn_bbox_pred", (60, 1024, 1, 1)))
        out.update(_conv("cls_score", (k, 2048)))
        out.update(_conv("bbox_pred", (4 * k, 2048)))
        return out
    out = {**body_blobs(layout), **fpn_blobs(layout, (2, 3, 4, 5))}
    out.update(_conv("conv_rpn_fpn2", (256, 256, 3, 3)))  # levels 3-6 share fpn2's blobs
    out.update(_conv("rpn_cls_logits_fpn2", (3, 256, 1, 1)))
    out.update(_conv("rpn_bbox_pred_fpn2", (12, 256, 1, 1)))
    out.update(_conv("fc6", (1024, 256 * 7 * 7)))
    out.update(_conv("fc7", (1024, 1024)))
    out.update(_conv("cls_score", (k, 1024)))
    out.update(_conv("bbox_pred", (4 * k, 1024)))
    if c == "mask":
        for n in range(1, 5):
            out.update(_conv(f"_[mask]_fcn{n}", (256, 256, 3, 3)))
        out.update(_conv("conv5_mask", (256, 256, 2, 2), transpose=True))  # ConvTranspose: (in, out, k, k)
        out.update(_conv("mask_fcn_logits", (k, 256, 1, 1)))
    if c == "keypoint":
        for n in range(1, 9):
            out.update(_conv(f"conv_fcn{n}", (512, 256 if n == 1 else 512, 3, 3)))
        out.update(_conv("kps_score_lowres", (512, layout.num_keypoints, 4, 4), transpose=True))  # ConvTranspose
        # the fixed bilinear 2x upsampling (BilinearInterpolation) is a saved ConvTranspose param
        out.update(_conv("kps_score", (layout.num_keypoints, layout.num_keypoints, 4, 4), transpose=True))
    return out
