"""Detectron's legacy numerics (converters.arch.detectron[_ops]) against independent numpy
implementations written from each op's definition (Detectron's utils/boxes.py, generate_anchors.py,
FPN level mapping, Caffe2's RoIAlign, BilinearInterpolation, heatmap and mask post-processing),
and each switch against torchvision's convention when turned off."""
from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch
import torchvision
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.roi_heads import heatmaps_to_keypoints, paste_masks_in_image
from torchvision.ops import FrozenBatchNorm2d

from converters.arch import detectron_ops as ops
from converters.arch.detectron import (DetectronAnchorGenerator, DetectronConfig, DetectronKeypointPredictor,
                                       DetectronRoIAlign, build, resnet_body)


def _boxes(rng, n, size=200.0):
    xy = rng.uniform(0, size, (n, 2))
    wh = rng.uniform(1, size / 2, (n, 2))
    return np.concatenate([xy, xy + wh], 1).astype(np.float32)


# ------------------------------------------------------------------------------- box decode

def np_bbox_transform(boxes, deltas, weights, clip=math.log(1000.0 / 16)):
    """Detectron utils/boxes.py bbox_transform: widths x2 - x1 + 1, x2 = cx + w / 2 - 1."""
    boxes = boxes.astype(np.float64)
    w = boxes[:, 2] - boxes[:, 0] + 1.0
    h = boxes[:, 3] - boxes[:, 1] + 1.0
    cx, cy = boxes[:, 0] + 0.5 * w, boxes[:, 1] + 0.5 * h
    wx, wy, ww, wh = weights
    dx, dy = deltas[:, 0::4] / wx, deltas[:, 1::4] / wy
    dw, dh = np.minimum(deltas[:, 2::4] / ww, clip), np.minimum(deltas[:, 3::4] / wh, clip)
    px, py = dx * w[:, None] + cx[:, None], dy * h[:, None] + cy[:, None]
    pw, ph = np.exp(dw) * w[:, None], np.exp(dh) * h[:, None]
    out = np.zeros(deltas.shape)
    out[:, 0::4], out[:, 1::4] = px - 0.5 * pw, py - 0.5 * ph
    out[:, 2::4], out[:, 3::4] = px + 0.5 * pw - 1, py + 0.5 * ph - 1
    return out


@pytest.mark.parametrize("weights", [(10.0, 10.0, 5.0, 5.0), (1.0, 1.0, 1.0, 1.0)])
def test_decode_plus_one_matches_bbox_transform(weights):
    rng = np.random.default_rng(0)
    boxes = _boxes(rng, 300)
    deltas = rng.normal(0, 2, (300, 8)).astype(np.float32)
    deltas[0, 2] = 50.0  # exercises the log(1000 / 16) clamp
    coder = ops.DetectronBoxCoder(weights)
    got = coder.decode_single(torch.from_numpy(deltas), torch.from_numpy(boxes)).numpy()
    want = np_bbox_transform(boxes, deltas, weights)
    assert np.abs(got - want).max() <= 1e-4 * max(1.0, np.abs(want).max())
    coder.plus_one = False  # the switch: torchvision's decode, which differs
    tv = torchvision.models.detection._utils.BoxCoder(weights).decode_single(torch.from_numpy(deltas), torch.from_numpy(boxes))
    assert torch.equal(coder.decode_single(torch.from_numpy(deltas), torch.from_numpy(boxes)), tv)
    assert np.abs(tv.numpy() - want).max() > 0.4


def test_clip_to_w_minus_one():
    boxes = torch.tensor([[-5.0, -3.0, 700.0, 500.0], [10.0, 20.0, 30.0, 40.0]])
    assert ops.clip_boxes(boxes, (480, 640), True).tolist() == [[0, 0, 639, 479], [10, 20, 30, 40]]
    assert ops.clip_boxes(boxes, (480, 640), False).tolist() == [[0, 0, 640, 480], [10, 20, 30, 40]]


# ------------------------------------------------------------------------------- NMS

def np_nms(dets, thresh):
    """Detectron's cython nms: greedy by score, IoU with +1 widths, suppress IoU > thresh."""
    x1, y1, x2, y2, s = dets.T.astype(np.float64)
    areas = (x2 - x1 + 1) * (y2 - y1 + 1)
    order, keep = s.argsort()[::-1], []
    while order.size:
        i = order[0]
        keep.append(i)
        w = np.maximum(0.0, np.minimum(x2[i], x2[order[1:]]) - np.maximum(x1[i], x1[order[1:]]) + 1)
        h = np.maximum(0.0, np.minimum(y2[i], y2[order[1:]]) - np.maximum(y1[i], y1[order[1:]]) + 1)
        inter = w * h
        iou = inter / (areas[i] + areas[order[1:]] - inter)
        order = order[1:][iou <= thresh]
    return np.array(keep)


def test_nms_plus_one_matches_detectron_nms():
    rng = np.random.default_rng(1)
    boxes = _boxes(rng, 400, 60.0)  # crowded and small: +1 matters
    scores = rng.permutation(400).astype(np.float32) / 400
    idx = torch.zeros(400, dtype=torch.int64)
    got = ops.batched_nms(torch.from_numpy(boxes), torch.from_numpy(scores), idx, 0.5, True).numpy()
    want = np_nms(np.concatenate([boxes, scores[:, None]], 1), 0.5)
    assert got.tolist() == want.tolist()
    plain = ops.batched_nms(torch.from_numpy(boxes), torch.from_numpy(scores), idx, 0.5, False).numpy()
    assert plain.tolist() != want.tolist()  # the switch changes the kept set on small boxes


# ------------------------------------------------------------------------------- anchors

def np_generate_anchors(stride, sizes, ratios):
    """Detectron's generate_anchors: ratio enumeration of [0, 0, stride - 1, stride - 1] with
    np.round, then scale enumeration; ratio-major, size-minor."""
    def mk(ws, hs, cx, cy):
        return np.stack([cx - 0.5 * (ws - 1), cy - 0.5 * (hs - 1), cx + 0.5 * (ws - 1), cy + 0.5 * (hs - 1)], 1)
    base = np.array([0, 0, stride - 1, stride - 1], dtype=np.float64)
    w, h = base[2] - base[0] + 1, base[3] - base[1] + 1
    cx, cy = base[0] + 0.5 * (w - 1), base[1] + 0.5 * (h - 1)
    ws = np.round(np.sqrt(w * h / np.array(ratios)))
    hs = np.round(ws * np.array(ratios))
    out = []
    for a in mk(ws, hs, cx, cy):
        aw, ah = a[2] - a[0] + 1, a[3] - a[1] + 1
        acx, acy = a[0] + 0.5 * (aw - 1), a[1] + 0.5 * (ah - 1)
        scales = np.array(sizes, dtype=np.float64) / stride
        out.append(mk(aw * scales, ah * scales, acx, acy))
    return np.concatenate(out)


@pytest.mark.parametrize("stride", [4, 8, 16, 32, 64])
def test_rpn_anchors_match_generate_anchors(stride):
    gen = DetectronAnchorGenerator([stride], [[(32.0 * stride / 4, r) for r in (0.5, 1.0, 2.0)]])
    want = np_generate_anchors(stride, (32.0 * stride / 4,), (0.5, 1.0, 2.0))
    assert np.abs(gen.cell_anchors[0].numpy() - want).max() <= 1e-4


def test_c4_anchors_ratio_major_size_minor():
    sizes = (32, 64, 128, 256, 512)
    gen = DetectronAnchorGenerator([16], [[(s, r) for r in (0.5, 1.0, 2.0) for s in sizes]])
    assert np.abs(gen.cell_anchors[0].numpy() - np_generate_anchors(16, sizes, (0.5, 1.0, 2.0))).max() <= 1e-4


def test_retinanet_anchors_octave_major():
    """test_retinanet's _create_cell_anchors: per octave, per ratio (1, 2, 0.5), one anchor."""
    model = build(DetectronConfig("R-50", "retinanet"))
    gen = model.anchor_generator
    for lvl, cell in zip(range(3, 8), gen.cell_anchors):
        stride = 2 ** lvl
        want = [np_generate_anchors(stride, (stride * 2 ** (o / 3) * 4,), (r,))[0]
                for o in range(3) for r in (1.0, 2.0, 0.5)]
        assert np.abs(cell.numpy() - np.array(want)).max() <= 1e-3


def test_anchor_switch_off_is_torchvision_rule():
    gen = DetectronAnchorGenerator([8], [[(32.0, r) for r in (0.5, 1.0, 2.0)]], legacy=False)
    tv = AnchorGenerator(((32,),), ((0.5, 1.0, 2.0),))
    assert torch.equal(gen.cell_anchors[0], tv.cell_anchors[0])


def test_anchor_grid_shifts_by_stride():
    gen = DetectronAnchorGenerator([16], [[(32.0, 1.0)]])
    images = torchvision.models.detection.image_list.ImageList(torch.zeros(1, 3, 64, 96), [(64, 96)])
    a = gen(images, [torch.zeros(1, 8, 4, 6)])[0]
    cell = np_generate_anchors(16, (32.0,), (1.0,))[0]
    ys, xs = np.meshgrid(np.arange(4) * 16, np.arange(6) * 16, indexing="ij")
    want = cell[None] + np.stack([xs.ravel(), ys.ravel()] * 2, 1)
    assert np.array_equal(a.numpy(), want.astype(np.float32))


# ------------------------------------------------------------------------------- FPN levels, RoIAlign

def np_fpn_levels(rois, k_min, k_max):
    """Detectron map_rois_to_fpn_levels: floor(4 + log2(sqrt(area + 1-widths) / 224 + 1e-6))."""
    w, h = rois[:, 2] - rois[:, 0] + 1, rois[:, 3] - rois[:, 1] + 1
    lvl = np.floor(4 + np.log2(np.sqrt(w * h) / 224 + 1e-6))
    return np.clip(lvl, k_min, k_max).astype(np.int64)


def test_fpn_levels_plus_one():
    rng = np.random.default_rng(2)
    rois = _boxes(rng, 500, 900.0)
    rois[:4] = [[0, 0, 111, 111], [0, 0, 222, 223], [0, 0, 447, 447], [0, 0, 0, 0]]  # near boundaries
    got = ops.fpn_levels(torch.from_numpy(rois), 2, 5, True).numpy()
    assert got.tolist() == np_fpn_levels(rois, 2, 5).tolist()


def np_roi_align(feat, roi, scale, out, sr):
    """Caffe2 RoIAlign (aligned=False): RoI at scale, size max(w, 1), bins sampled on an sr x sr
    grid of bin centres, bilinear with Caffe2's border rules, averaged."""
    c, hgt, wid = feat.shape
    x1, y1, x2, y2 = (v * scale for v in roi)
    rw, rh = max(x2 - x1, 1.0), max(y2 - y1, 1.0)
    bw, bh = rw / out, rh / out
    res = np.zeros((c, out, out))

    def bil(y, x):
        if y < -1.0 or y > hgt or x < -1.0 or x > wid:
            return np.zeros(c)
        y, x = max(y, 0.0), max(x, 0.0)
        y0, x0 = int(y), int(x)
        if y0 >= hgt - 1:
            y0 = y1_ = hgt - 1
            y = float(y0)
        else:
            y1_ = y0 + 1
        if x0 >= wid - 1:
            x0 = x1_ = wid - 1
            x = float(x0)
        else:
            x1_ = x0 + 1
        ly, lx = y - y0, x - x0
        return ((1 - ly) * (1 - lx) * feat[:, y0, x0] + (1 - ly) * lx * feat[:, y0, x1_]
                + ly * (1 - lx) * feat[:, y1_, x0] + ly * lx * feat[:, y1_, x1_])
    for ph in range(out):
        for pw in range(out):
            acc = np.zeros(c)
            for iy in range(sr):
                for ix in range(sr):
                    acc += bil(y1 + ph * bh + (iy + 0.5) * bh / sr, x1 + pw * bw + (ix + 0.5) * bw / sr)
            res[:, ph, pw] = acc / (sr * sr)
    return res


def test_roi_align_unaligned_sampling_2_matches_caffe2_definition():
    rng = np.random.default_rng(3)
    feats = {str(i): torch.from_numpy(rng.normal(size=(1, 2, 64 // 2 ** i, 64 // 2 ** i)).astype(np.float32))
             for i in range(4)}
    rois = np.array([[3.2, 5.1, 40.7, 33.3], [0.0, 0.0, 0.4, 0.3], [100.0, 90.0, 255.0, 250.0],
                     [10.0, 10.0, 200.0, 240.0], [250.0, 250.0, 300.0, 300.0]], np.float32)
    pool = DetectronRoIAlign(["0", "1", "2", "3"], 7, 2, [4, 8, 16, 32])
    got = pool(feats, [torch.from_numpy(rois)], [(256, 256)]).numpy()
    levels = np_fpn_levels(rois, 2, 5)
    for r, lvl in zip(range(len(rois)), levels):
        want = np_roi_align(feats[str(lvl - 2)][0].numpy().astype(np.float64), rois[r], 1 / 2 ** lvl, 7, 2)
        assert np.abs(got[r] - want).max() <= 1e-5, r


# ------------------------------------------------------------------------------- AffineChannel, stride_in_1x1

def test_affine_channel_is_exact_in_frozen_bn():
    """Frozen BN with mean 0, var 1 - eps computes x * s + b bit for bit (1 - eps + eps == 1 in fp32)."""
    rng = np.random.default_rng(4)
    s, b = rng.normal(size=16).astype(np.float32), rng.normal(size=16).astype(np.float32)
    bn = FrozenBatchNorm2d(16)
    bn.weight.copy_(torch.from_numpy(s))
    bn.bias.copy_(torch.from_numpy(b))
    bn.running_mean.zero_()
    bn.running_var.fill_(1.0 - 1e-5)
    x = torch.from_numpy(rng.normal(size=(2, 16, 5, 5)).astype(np.float32))
    assert torch.equal(bn(x), x * torch.from_numpy(s)[:, None, None] + torch.from_numpy(b)[:, None, None])


@pytest.mark.parametrize("body, msra", [("R-50", True), ("R-101", True), ("X-101-32x8d", False)])
def test_stride_in_1x1_variant(body, msra):
    net = resnet_body(body)
    for layer in (net.layer2, net.layer3, net.layer4):
        assert (layer[0].conv1.stride, layer[0].conv2.stride) == (((2, 2), (1, 1)) if msra else ((1, 1), (2, 2)))
        assert layer[0].downsample[0].stride == (2, 2)
    assert net.layer1[0].conv1.stride == net.layer1[0].conv2.stride == (1, 1)


# ------------------------------------------------------------------------------- keypoints, masks

def np_conv_transpose(x, w, b, stride, pad):
    """out[o, y*s - p + ky, x*s - p + kx] += x[i, y, x] * w[i, o, ky, kx] (Caffe2/torch ConvTranspose)."""
    cin, h, wd = x.shape
    cout, k = w.shape[1], w.shape[2]
    full = np.zeros((cout, (h - 1) * stride + k, (wd - 1) * stride + k))
    for i in range(cin):
        for yy in range(h):
            for xx in range(wd):
                full[:, yy * stride:yy * stride + k, xx * stride:xx * stride + k] += x[i, yy, xx] * w[i]
    ho, wo = (h - 1) * stride + k - 2 * pad, (wd - 1) * stride + k - 2 * pad
    return full[:, pad:pad + ho, pad:pad + wo] + b[:, None, None]


def test_keypoint_bilinear_deconv_upsample():
    """Detectron's kps_score: ConvTranspose k 4, stride 2, pad 1 with the bilinear filter; inside
    the map it equals interpolate(align_corners=False), at the border it sees zeros."""
    rng = np.random.default_rng(5)
    pred = DetectronKeypointPredictor(4, 3)
    w = ops.bilinear_upsample_weight(3, 2)
    assert w[0, 0, :, 0].tolist() == [0.0625, 0.1875, 0.1875, 0.0625] and w[0, 1].abs().sum() == 0
    with torch.no_grad():
        pred.kps_score.weight.copy_(w)
        pred.kps_score.bias.zero_()
    x = torch.from_numpy(rng.normal(size=(1, 4, 5, 6)).astype(np.float32))
    with torch.no_grad():
        low = pred.kps_score_lowres(x)
        got = pred(x)[0].numpy()
        pred.deconv_upsample = False
        interp = pred(x)[0].numpy()
    want = np_conv_transpose(low[0].numpy().astype(np.float64), w.numpy().astype(np.float64), np.zeros(3), 2, 1)
    assert got.shape == want.shape == interp.shape
    assert np.abs(got - want).max() <= 1e-5
    assert np.abs(got[:, 1:-1, 1:-1] - interp[:, 1:-1, 1:-1]).max() <= 1e-5  # interior: the same bilinear
    assert np.abs(got[:, 0] - interp[:, 0]).max() > 1e-3  # border: zero padding vs clamping


def np_heatmaps_to_keypoints(maps, rois):
    """Detectron keypoint_utils.heatmaps_to_keypoints: cv2 INTER_CUBIC resize of each heatmap to
    the ceil'ed RoI size (w, h >= 1), argmax, (index + 0.5) * w / ceil(w) + x1."""
    out = np.zeros((len(rois), 3, maps.shape[1]), np.float32)
    for i, r in enumerate(rois):
        w, h = max(r[2] - r[0], 1), max(r[3] - r[1], 1)
        wc, hc = int(np.ceil(w)), int(np.ceil(h))
        m = cv2.resize(np.transpose(maps[i], (1, 2, 0)), (wc, hc), interpolation=cv2.INTER_CUBIC)
        m = np.transpose(m.reshape(hc, wc, -1), (2, 0, 1))
        for k in range(maps.shape[1]):
            pos = m[k].argmax()
            xi, yi = pos % wc, pos // wc
            out[i, :, k] = ((xi + 0.5) * w / wc + r[0], (yi + 0.5) * h / hc + r[1], m[k, yi, xi])
    return out


def test_heatmap_to_keypoint_convention():
    """torchvision's heatmaps_to_keypoints is Detectron's rule (bicubic a = -0.75, +0.5 cell
    centre, ceil'ed RoI size): positions equal, scores within fp32 resize noise."""
    rng = np.random.default_rng(6)
    maps = rng.normal(size=(4, 5, 56, 56)).astype(np.float32)
    rois = np.array([[10.5, 20.2, 100.7, 180.1], [0, 0, 30, 40], [5, 5, 5.5, 90], [50, 60, 300, 200]], np.float32)
    xy, scores = heatmaps_to_keypoints(torch.from_numpy(maps), torch.from_numpy(rois))
    want = np_heatmaps_to_keypoints(maps, rois)
    assert np.abs(xy[:, :, :2].numpy().transpose(0, 2, 1) - want[:, :2]).max() <= 1e-4
    assert np.abs(scores.numpy() - want[:, 2]).max() <= 1e-4


def np_paste_mask(mask, box, h, w, thresh=0.5):
    """Detectron segm_results: pad the M x M mask by 1, scale the box by (M + 2) / M, int boxes,
    size x2 - x1 + 1, cv2 bilinear resize, > thresh, clip into the image."""
    m = mask.shape[0]
    padded = np.zeros((m + 2, m + 2), np.float32)
    padded[1:-1, 1:-1] = mask
    scale = (m + 2.0) / m
    cx, cy = (box[0] + box[2]) * 0.5, (box[1] + box[3]) * 0.5
    bw, bh = (box[2] - box[0]) * 0.5 * scale, (box[3] - box[1]) * 0.5 * scale
    ref = np.array([cx - bw, cy - bh, cx + bw, cy + bh]).astype(np.int32)
    ww, hh = max(ref[2] - ref[0] + 1, 1), max(ref[3] - ref[1] + 1, 1)
    r = cv2.resize(padded, (int(ww), int(hh))) > thresh
    out = np.zeros((h, w), bool)
    x0, x1 = max(ref[0], 0), min(ref[2] + 1, w)
    y0, y1 = max(ref[1], 0), min(ref[3] + 1, h)
    out[y0:y1, x0:x1] = r[y0 - ref[1]:y1 - ref[1], x0 - ref[0]:x1 - ref[0]]
    return out


def test_mask_pasting_convention():
    """torchvision's paste_masks_in_image then > 0.5 (MRCNN.THRESH_BINARIZE) is Detectron's
    segm_results paste; disagreement only where the bilinear value sits on the threshold."""
    rng = np.random.default_rng(7)
    masks = rng.uniform(size=(6, 1, 28, 28)).astype(np.float32)
    boxes = np.array([[10.3, 12.8, 90.1, 70.6], [0, 0, 50, 50], [-5, 100, 60, 190], [120, 30, 199, 149],
                      [40.5, 40.5, 41.2, 44.9], [3, 3, 180, 140]], np.float32)
    got = paste_masks_in_image(torch.from_numpy(masks), torch.from_numpy(boxes), (150, 200), padding=1)[:, 0] > 0.5
    for i in range(len(boxes)):
        want = np_paste_mask(masks[i, 0], boxes[i], 150, 200)
        assert (got[i].numpy() != want).mean() <= 0.002, i


# ------------------------------------------------------------------------------- composite post-processing

def np_softmax(x):
    e = np.exp(x - x.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def np_box_results(scores, boxes, thresh=0.05, nms=0.5, limit=100):
    """Detectron test.box_results_with_nms_and_limit: per class j >= 1, scores > thresh, NMS (+1),
    then keep detections scoring at least the limit-th best over all classes."""
    out = []
    for j in range(1, scores.shape[1]):
        inds = np.where(scores[:, j] > thresh)[0]
        dets = np.concatenate([boxes[inds, 4 * j:4 * j + 4], scores[inds, j:j + 1]], 1)
        out += [(j, *dets[k]) for k in np_nms(dets, nms)]
    out.sort(key=lambda r: -r[5])
    if len(out) > limit:
        th = out[limit - 1][5]
        out = [r for r in out if r[5] >= th]
    return out


def test_box_postprocess_matches_detectron():
    """DetectronRoIHeads.postprocess_detections: decode (10, 10, 5, 5) +1, clip to W - 1, softmax,
    per-class NMS +1, top 100, against numpy bbox_transform + clip_tiled_boxes + box_results."""
    rng = np.random.default_rng(8)
    model = build(DetectronConfig("R-50", "faster"))
    rois = _boxes(rng, 400, 300.0)
    logits = rng.normal(0, 2, (400, 81)).astype(np.float32)
    deltas = rng.normal(0, 1, (400, 324)).astype(np.float32)
    boxes, scores, labels = model.roi_heads.postprocess_detections(
        torch.from_numpy(logits), torch.from_numpy(deltas), [torch.from_numpy(rois)], [(320, 480)])
    dec = np_bbox_transform(rois, deltas, (10.0, 10.0, 5.0, 5.0))
    dec[:, 0::2], dec[:, 1::2] = np.clip(dec[:, 0::2], 0, 479), np.clip(dec[:, 1::2], 0, 319)
    want = np_box_results(np_softmax(logits.astype(np.float64)), dec)
    got = sorted(zip(labels[0].tolist(), *boxes[0].T.tolist(), scores[0].tolist()), key=lambda r: -r[5])
    assert len(got) == len(want) == 100
    assert [g[0] for g in got] == [w[0] for w in want]
    assert np.abs(np.array(got)[:, 1:] - np.array(want)[:, 1:]).max() <= 1e-3


def test_rpn_filter_matches_generate_proposals():
    """DetectronRPN.filter_proposals on one level: top-n by score, clip to W - 1, Detectron's
    _filter_boxes (min size 0, centre inside the image), NMS 0.7 (+1), top post_nms_top_n."""
    rng = np.random.default_rng(9)
    model = build(DetectronConfig("R-50", "faster"))
    rpn = model.rpn
    rpn._pre_nms_top_n, rpn._post_nms_top_n = {"testing": 300}, {"testing": 100}
    anchors = _boxes(rng, 2000, 260.0) - 20
    deltas = rng.normal(0, 0.5, (2000, 4)).astype(np.float32)
    logits = rng.normal(0, 2, 2000).astype(np.float32)
    props = np_bbox_transform(anchors, deltas, (1.0, 1.0, 1.0, 1.0)).astype(np.float32)
    got, got_s = rpn.filter_proposals(torch.from_numpy(props)[None], torch.from_numpy(logits)[None], [(200, 240)], [2000])
    order = np.argsort(-logits, kind="stable")[:300]
    b, s = props[order].astype(np.float64), 1 / (1 + np.exp(-logits[order].astype(np.float64)))
    b[:, 0::2], b[:, 1::2] = np.clip(b[:, 0::2], 0, 239), np.clip(b[:, 1::2], 0, 199)
    ws, hs = b[:, 2] - b[:, 0] + 1, b[:, 3] - b[:, 1] + 1
    keep = (ws >= 0) & (hs >= 0) & (b[:, 0] + ws / 2 < 240) & (b[:, 1] + hs / 2 < 200)
    b, s = b[keep], s[keep]
    k = np_nms(np.concatenate([b, s[:, None]], 1), 0.7)[:100]
    assert np.abs(got[0].numpy() - b[k]).max() <= 1e-4 and np.abs(got_s[0].numpy() - s[k]).max() <= 1e-6


def test_c4_unpadded_input_keeps_stride_16():
    """Detectron pads only FPN inputs: a C4 input 1201 wide gives a 76-wide res4 map whose anchors
    still step by 16 (torchvision would infer 1201 // 76 = 15)."""
    model = build(DetectronConfig("R-50", "faster", fpn=False, sampling_ratio=0))
    images, _ = model.transform([torch.zeros(3, 161, 1201)])
    assert tuple(images.tensors.shape[-2:]) == (161, 1201)
    anchors = model.rpn.anchor_generator(images, [torch.zeros(1, 8, 11, 76)])[0].reshape(11, 76, 15, 4)
    assert torch.equal(anchors[0, 1] - anchors[0, 0], torch.tensor([16.0, 0, 16, 0]).expand(15, 4))
    assert torch.equal(anchors[1, 0] - anchors[0, 0], torch.tensor([0, 16.0, 0, 16]).expand(15, 4))


def test_retinanet_reads_logits_anchor_major_in_detectron_anchor_order():
    """Only output channel a * 80 + c of retnet_cls_pred fires (Detectron's (A, C) layout): every
    detection is class c + 1 with the shape of Detectron's anchor a (octave a // 3, ratio
    (1, 2, 0.5)[a % 3]); zero deltas decode (+1) to the anchor itself."""
    model = build(DetectronConfig("R-50", "retinanet"))
    a, c = 5, 17  # octave 1, ratio 0.5
    head = model.head
    with torch.no_grad():
        for p in (head.classification_head.cls_logits.weight, head.regression_head.bbox_reg.weight,
                  head.regression_head.bbox_reg.bias):
            p.zero_()
        head.classification_head.cls_logits.bias.fill_(-10.0)
        head.classification_head.cls_logits.bias[a * 80 + c] = 10.0
        out = model([torch.zeros(3, 256, 256)])[0]
    assert len(out["boxes"]) > 0 and torch.all(out["labels"] == c + 1)
    sizes = {tuple(np_generate_anchors(2 ** k, (4 * 2 ** k * 2 ** (1 / 3),), (0.5,))[0, 2:] + 1
                   - np_generate_anchors(2 ** k, (4 * 2 ** k * 2 ** (1 / 3),), (0.5,))[0, :2]) for k in range(3, 8)}
    b = out["boxes"].numpy()
    inside = (b[:, 0] > 0) & (b[:, 1] > 0) & (b[:, 2] < 255) & (b[:, 3] < 255)  # unclipped ones
    assert inside.any()
    for w, h in zip(b[inside, 2] - b[inside, 0] + 1, b[inside, 3] - b[inside, 1] + 1):
        assert any(abs(w - sw) < 1e-3 and abs(h - sh) < 1e-3 for sw, sh in sizes), (w, h)
