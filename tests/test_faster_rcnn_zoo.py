"""gluoncv Faster R-CNN (ResNet-50 v1b, VOC and COCO): anchors, box decoding, proposal clipping,
RoIAlign, proposal NMS and the per-class output against independent numpy implementations written
from the op definitions (no mxnet), and both rule tables against every gluoncv parameter name."""
from __future__ import annotations

import dataclasses
from collections import Counter

import numpy as np
import pytest
import torch

from converters import registry
from converters.arch.faster_rcnn import FasterRCNN, FasterRCNNConfig, PerClassNMS, RoIAlign
from converters.arch.nms import DetectionNMS, set_nms
from converters.arch.resnet import ResNetConfig
from converters.arch.rpn import RPN, CornerBoxDecoder, RPNProposal, anchor_grid, base_anchors
from converters.engine import map_tensors
from converters.gluon.faster_rcnn import COCO, VOC

NAMES = ("faster_rcnn_resnet50_v1b_voc", "faster_rcnn_resnet50_v1b_coco")
SIZES, RATIOS = (32, 64, 128, 256, 512), (0.5, 1, 2)

# ------------------------------------------------------------------------------------ anchors


def numpy_base_anchors(stride, sizes, ratios) -> np.ndarray:
    """From the definition: a stride x stride reference box centred at (stride-1)/2; for each ratio
    r (h/w) its width is round(sqrt(stride^2 / r)), its height round(width * r); each then grows by
    size/stride; corners sit (w-1)/2 either side of the centre (pixel-count widths)."""
    c = (stride - 1) / 2
    rows = []
    for r in ratios:
        w0 = float(np.round(np.sqrt(stride * stride / r)))
        h0 = float(np.round(w0 * r))
        for s in sizes:
            w, h = w0 * s / stride, h0 * s / stride
            rows.append([c - (w - 1) / 2, c - (h - 1) / 2, c + (w - 1) / 2, c + (h - 1) / 2])
    return np.array(rows)


def test_base_anchors_match_the_definition_and_the_classic_table():
    assert np.array_equal(base_anchors(16, SIZES, RATIOS), numpy_base_anchors(16, SIZES, RATIOS))
    # py-faster-rcnn's published generate_anchors() table (base 16, scales 8/16/32)
    classic = [[-84, -40, 99, 55], [-176, -88, 191, 103], [-360, -184, 375, 199],
               [-56, -56, 71, 71], [-120, -120, 135, 135], [-248, -248, 263, 263],
               [-36, -80, 51, 95], [-80, -168, 95, 183], [-168, -344, 183, 359]]
    assert np.array_equal(base_anchors(16, (128, 256, 512), RATIOS), np.array(classic, float))


def test_ratio_rounding_is_half_to_even():
    """sqrt(256 / 0.5) = 22.6 -> 23, then 23 * 0.5 = 11.5 -> 12 (half to even, numpy's rule)."""
    a = base_anchors(16, (16,), (0.5,))[0]
    assert (a[2] - a[0] + 1, a[3] - a[1] + 1) == (23, 12)


def test_anchor_grid_is_row_major_cells_then_anchors():
    h, w, stride = 3, 5, 16
    grid = anchor_grid(h, w, stride, SIZES, RATIOS)
    assert grid.dtype == np.float32 and grid.shape == (h * w * 15, 4)
    base = numpy_base_anchors(stride, SIZES, RATIOS)
    want = np.array([base[a] + [x * stride, y * stride] * 2 for y in range(h) for x in range(w) for a in range(15)])
    assert np.array_equal(grid, want.astype(np.float32))
    assert not grid.flags.writeable  # cached: shared between calls


# ---------------------------------------------------------------------------------- decoding


def numpy_box_decode(rel, anchors, stds, clip):
    """MXNet contrib.box_decode(format='corner'): anchor width x2 - x1 (no +1), centre x1 + w/2;
    centre offsets scaled by std and anchor size, log-size offsets by std, capped at clip if > 0."""
    w, h = anchors[..., 2] - anchors[..., 0], anchors[..., 3] - anchors[..., 1]
    cx, cy = anchors[..., 0] + w / 2, anchors[..., 1] + h / 2
    ox, oy = cx + rel[..., 0] * stds[0] * w, cy + rel[..., 1] * stds[1] * h
    dw, dh = rel[..., 2] * stds[2], rel[..., 3] * stds[3]
    if clip is not None and clip > 0:
        dw, dh = np.minimum(dw, clip), np.minimum(dh, clip)
    ow, oh = np.exp(dw) * w / 2, np.exp(dh) * h / 2
    return np.stack([ox - ow, oy - oh, ox + ow, oy + oh], -1)


def _f32(a) -> torch.Tensor:
    return torch.tensor(a, dtype=torch.float32)


def _random_corner_boxes(rng, n, span=500.0):
    xy = rng.uniform(0, span, (n, 2))
    wh = rng.uniform(1, 200, (n, 2))
    return np.concatenate([xy, xy + wh], -1)


@pytest.mark.parametrize("stds,clip", [((0.1, 0.1, 0.2, 0.2), None), ((0.1, 0.1, 0.2, 0.2), 4.14),
                                       ((1.0, 1.0, 1.0, 1.0), None), ((1.0, 1.0, 1.0, 1.0), 4.14)])
def test_corner_box_decode_matches_the_definition(stds, clip):
    rng = np.random.default_rng(0)
    anchors = _random_corner_boxes(rng, 200)[None]
    rel = rng.normal(0, 3, (4, 200, 4))  # large log-size offsets so the clip bites
    got = CornerBoxDecoder(stds, clip)(_f32(rel), _f32(anchors))
    want = numpy_box_decode(rel, anchors, stds, clip)
    # float32 vs float64: a few ulps of the largest coordinate (exp up to e^12 with stds 1 unclipped)
    np.testing.assert_allclose(got.numpy(), want, rtol=2e-6, atol=2e-6 * np.abs(want).max())
    capped = rel[..., 2] * stds[2] > (clip or np.inf)
    if clip is not None and capped.any():  # a capped width is exactly exp(clip) anchor widths
        w = (got[..., 2] - got[..., 0]).numpy()[capped]
        aw = np.broadcast_to(anchors[..., 2] - anchors[..., 0], capped.shape)[capped]
        np.testing.assert_allclose(w, np.exp(clip) * aw, rtol=1e-5)


def test_decoder_without_clip_ignores_non_positive_clip():
    """gluoncv passes clip=None as -1 to box_decode, which only caps when clip > 0."""
    rel, anchors = torch.randn(2, 5, 4) * 10, _f32(_random_corner_boxes(np.random.default_rng(1), 5)[None])
    off, minus_one = CornerBoxDecoder((1, 1, 1, 1), None), CornerBoxDecoder((1, 1, 1, 1), -1.0)
    assert torch.equal(off(rel, anchors), minus_one(rel, anchors))


def test_proposals_are_clipped_to_the_image_and_small_ones_dropped():
    """Clip to [0, W] x [0, H] (W itself, not W - 1); a proposal whose x2 - x1 + 1 or y2 - y1 + 1
    is below min_size becomes an all -1 row (score too)."""
    rng = np.random.default_rng(2)
    anchors = np.concatenate([_random_corner_boxes(rng, 300, span=120), [[10, 10, 20, 30], [0, 0, 3, 50]]])[None]
    rel = rng.normal(0, 0.5, (1, len(anchors[0]), 4))
    scores = rng.uniform(0, 1, (1, len(anchors[0]), 1))
    h, w, min_size = 100, 140, 16
    got = RPNProposal(None, min_size)(_f32(anchors), _f32(scores), _f32(rel), (h, w)).numpy()[0]
    box = numpy_box_decode(rel, anchors, (1, 1, 1, 1), None)[0]
    box = np.minimum(np.maximum(box, 0), [w, h, w, h])
    small = (box[:, 2] - box[:, 0] + 1 < min_size) | (box[:, 3] - box[:, 1] + 1 < min_size)
    assert small.any() and not small.all() and (box[:, 2] == w).any()  # the case is exercised
    assert (got[small] == -1).all()
    np.testing.assert_allclose(got[~small, 1:], box[~small], rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(got[~small, 0], scores[0, ~small, 0], rtol=1e-6)


# --------------------------------------------------------------------------------- RoIAlign


def numpy_roi_align(feat, rois, size, scale, ratio):
    """MXNet contrib.ROIAlign (aligned=False): RoI corners times scale (no half-pixel shift), size
    at least 1, ratio x ratio bilinear samples at bin-cell centres averaged per bin; a sample more
    than one pixel outside the map reads 0, one within reads the clamped border."""
    _, c, fh, fw = feat.shape
    out = np.zeros((len(rois), c, *size))

    def sample(img, y, x):
        if y < -1 or y > fh or x < -1 or x > fw:
            return np.zeros(c)
        y, x = max(y, 0.0), max(x, 0.0)
        y0, x0 = int(y), int(x)
        y1, x1 = (y0, x0)
        if y0 >= fh - 1:
            y0 = y1 = fh - 1
            y = float(y0)
        else:
            y1 = y0 + 1
        if x0 >= fw - 1:
            x0 = x1 = fw - 1
            x = float(x0)
        else:
            x1 = x0 + 1
        ly, lx = y - y0, x - x0
        return ((1 - ly) * (1 - lx) * img[:, y0, x0] + (1 - ly) * lx * img[:, y0, x1]
                + ly * (1 - lx) * img[:, y1, x0] + ly * lx * img[:, y1, x1])

    for n, (b, *box) in enumerate(rois):
        x1, y1, x2, y2 = (v * scale for v in box)
        bw, bh = max(x2 - x1, 1.0) / size[1], max(y2 - y1, 1.0) / size[0]
        for i in range(size[0]):
            for j in range(size[1]):
                ys = [y1 + i * bh + (iy + 0.5) * bh / ratio for iy in range(ratio)]
                xs = [x1 + j * bw + (ix + 0.5) * bw / ratio for ix in range(ratio)]
                acc = sum(sample(feat[int(b)], y, x) for y in ys for x in xs)
                out[n, :, i, j] = acc / (ratio * ratio)
    return out


def test_roi_align_matches_the_definition():
    rng = np.random.default_rng(3)
    feat = rng.normal(size=(2, 3, 9, 13))
    boxes = np.array([[0, 5, 7, 60, 100], [1, -30, -10, 40, 20], [0, 150, 90, 260, 160],
                      [1, 100.5, 20.25, 101, 21], [0, -1, -1, -1, -1]], float)  # edge, tiny, padding rows
    got = RoIAlign((4, 5), 1 / 16, 2)(_f32(feat), _f32(boxes))
    np.testing.assert_allclose(got.numpy(), numpy_roi_align(feat, boxes, (4, 5), 1 / 16, 2), rtol=1e-5, atol=1e-5)


def test_roi_align_configuration_is_gluoncvs():
    net = _tiny()
    assert (net.roi_align.size, net.roi_align.spatial_scale, net.roi_align.sampling_ratio) == ((14, 14), 1 / 16, 2)


# -------------------------------------------------------------------------------- proposal NMS


def numpy_nms(rows, thresh, topk, score_index, coord_start, ids=None):
    """Greedy NMS as box_nms defines it: rows with score > 0, stable sort by score, first topk,
    suppress later rows with IoU > thresh (same id when ids are given), kept rows then -1 rows."""
    idx = [i for i in np.argsort(-rows[:, score_index], kind="stable") if rows[i, score_index] > 0][:topk]
    kept = []
    for i in idx:
        b = rows[i, coord_start:coord_start + 4]
        ok = True
        for k in kept:
            if ids is not None and ids[k] != ids[i]:
                continue
            c = rows[k, coord_start:coord_start + 4]
            iw = max(0.0, min(b[2], c[2]) - max(b[0], c[0]))
            ih = max(0.0, min(b[3], c[3]) - max(b[1], c[1]))
            inter = iw * ih
            union = (b[2] - b[0]) * (b[3] - b[1]) + (c[2] - c[0]) * (c[3] - c[1]) - inter
            if union > 0 and inter / union > thresh:
                ok = False
                break
        if ok:
            kept.append(i)
    out = -np.ones_like(rows)
    out[: len(kept)] = rows[kept]
    return out


def test_rpn_proposals_are_box_nms_then_a_fixed_cut():
    torch.manual_seed(0)
    rpn = RPN(8, 8, 16, (32, 64), (0.5, 1, 2), None, 0.7, pre_nms=60, post_nms=25, min_size=16).eval()
    feat = torch.randn(1, 8, 6, 7)
    with torch.no_grad():
        scores, boxes = rpn(feat, (96, 112))
        x = rpn.relu(rpn.conv(feat))
        s = torch.sigmoid(rpn.score(x).permute(0, 2, 3, 1).reshape(1, -1, 1))
        o = rpn.loc(x).permute(0, 2, 3, 1).reshape(1, -1, 4)
        rows = rpn.region_proposer(rpn.anchor_generator(feat), s, o, (96, 112))[0].numpy()
    want = numpy_nms(rows.astype(np.float64), 0.7, 60, 0, 1)[:25]
    assert scores.shape == (1, 25, 1) and boxes.shape == (1, 25, 4)
    got = torch.cat([scores, boxes], -1)[0].numpy()
    assert np.array_equal(got == -1, want == -1)
    np.testing.assert_allclose(got, want, rtol=1e-6)
    assert (numpy_nms(rows.astype(np.float64), 0.7, 60, 0, 1)[:, 0] > 0).sum() > 25  # the cut is exercised


def test_rpn_eval_counts_follow_gluoncv():
    for cfg, pre, post, min_size, clip in ((VOC, 6000, 300, 16, None), (COCO, 6000, 1000, 1, 4.14)):
        rpn = _meta_rpn(cfg)
        assert (rpn.pre_nms, rpn.post_nms, rpn.nms_thresh) == (pre, post, 0.7)
        assert rpn.region_proposer.min_size == min_size and rpn.region_proposer.box_decoder.clip == clip
        assert rpn.region_proposer.box_decoder.stds == (1.0, 1.0, 1.0, 1.0)
        assert rpn.anchor_generator.num_anchors == 15


def _meta_rpn(cfg: FasterRCNNConfig) -> RPN:
    with torch.device("meta"):
        return FasterRCNN(cfg).rpn


# ------------------------------------------------------------------------- per-class output


TINY_BACKBONE = ResNetConfig("basic", (1, 1, 1, 1), (8, 8, 16, 16, 32), stride_in_1x1=False)


def _tiny(**kw) -> FasterRCNN:
    torch.manual_seed(0)
    cfg = FasterRCNNConfig(TINY_BACKBONE, num_classes=3, rpn_channels=16, rpn_pre_nms=80, rpn_post_nms=12,
                           rpn_min_size=4, **kw)
    net = FasterRCNN(cfg).eval()
    with torch.no_grad():  # spread the class logits so several classes pass the 0.01 threshold
        net.class_predictor.weight.mul_(30)
        net.box_predictor.weight.mul_(10)
    return net


@pytest.mark.parametrize("force", [False, True])
def test_output_is_one_box_nms_per_class_block(force):
    net = _tiny(nms_thresh=0.3, nms_topk=5, force_nms=force)
    x = torch.randn(1, 3, 96, 128)
    with torch.no_grad():
        ids, scores, boxes = net(x)
        rois, cls, box = net.head(x)
    c, r = 3, 12
    assert ids.shape == (1, c * r, 1) and boxes.shape == (1, c * r, 4)
    probs = torch.softmax(cls, -1)[0].numpy().astype(np.float64)
    rows = []
    for k in range(c):  # independent: threshold, decode against the proposals, class-major rows
        p = probs[:, k + 1]
        keep = p > 0.01
        dec = numpy_box_decode(box[0, k].numpy().astype(np.float64), rois[0].numpy()[None].astype(np.float64),
                               (0.1, 0.1, 0.2, 0.2), None)[0]
        rows.append(np.concatenate([np.where(keep, k, -1)[:, None], np.where(keep, p, 0)[:, None], dec], 1))
    got = torch.cat([ids, scores, boxes], -1)[0].numpy()
    if force:  # one block: suppression across classes, one topk for all
        blocks = [numpy_nms(np.concatenate(rows), 0.3, 5, 1, 2)]
    else:
        blocks = [numpy_nms(rows[k], 0.3, 5, 1, 2, ids=rows[k][:, 0]) for k in range(c)]
    want = np.concatenate(blocks)
    assert np.array_equal(got[:, 0], want[:, 0])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)
    assert (got[:, 0] >= 0).sum() > 3  # the case is exercised


def test_per_class_nms_equals_detection_nms_on_each_block():
    rng = np.random.default_rng(4)
    rows = np.concatenate([rng.integers(-1, 1, (2, 3, 40, 1)).astype(float), rng.uniform(0, 1, (2, 3, 40, 1)),
                           np.broadcast_to(_random_corner_boxes(rng, 40, 60), (2, 3, 40, 4))], -1)
    rows[..., 0] = np.where(rows[..., 0] < 0, -1, np.arange(3)[None, :, None])
    rows = _f32(rows)
    nms = PerClassNMS(0.3, 1e-4, 10, 0)
    got = nms(rows)
    plain = DetectionNMS(0.3, 1e-4, 10, 0)
    for b in range(2):
        for k in range(3):
            want = plain(rows[b, k][None])
            for g, w in zip(got, want):
                assert torch.equal(g[b, k * 40:(k + 1) * 40], w[0])
    set_nms(nms, "torchvision")  # still a DetectionNMS: the variant switch reaches it
    assert nms.variant == "torchvision" and nms(rows)[0].shape == (2, 120, 1)


def test_nms_settings_follow_gluoncv():
    voc, coco = (_meta_net(c) for c in (VOC, COCO))
    n = voc.nms
    assert (n.thresh, n.topk, n.valid_thresh, n.post_nms, n.force_suppress) == (0.3, 400, 1e-4, 0, False)
    assert (coco.nms.thresh, coco.nms.topk, coco.nms.post_nms) == (0.5, -1, 0)
    assert voc.box_decoder.stds == (0.1, 0.1, 0.2, 0.2)
    assert voc.box_decoder.clip is None and coco.box_decoder.clip == 4.14
    assert voc.cls_decoder.thresh == 0.01
    assert (voc.class_predictor.out_features, voc.box_predictor.out_features) == (21, 80)
    assert (coco.class_predictor.out_features, coco.box_predictor.out_features) == (81, 320)
    with pytest.raises(ValueError):
        FasterRCNN(dataclasses.replace(VOC, nms_thresh=1.0))


def _meta_net(cfg: FasterRCNNConfig) -> FasterRCNN:
    with torch.device("meta"):
        return FasterRCNN(cfg)


def test_backbone_is_resnet50_v1b_split_after_stage_3():
    net = _meta_net(VOC)
    assert net.backbone.layer2[0].conv2.stride == (2, 2) and net.backbone.layer2[0].conv1.stride == (1, 1)
    assert not hasattr(net.backbone, "fc") and not hasattr(net.backbone, "avgpool")
    assert net.rpn.conv.in_channels == 1024 and net.class_predictor.in_features == 2048
    x = torch.randn(1, 3, 64, 80)
    net = _tiny()
    with torch.no_grad():
        assert net.features(x).shape == (1, 16, 4, 5)  # stride 16 after stage 3


def test_any_batch_equals_one_image_at_a_time():
    net = _tiny()
    x = torch.randn(2, 3, 80, 96)
    with torch.no_grad():
        both = net(x)
        one = [net(x[i:i + 1]) for i in range(2)]
    for k in range(3):
        torch.testing.assert_close(both[k], torch.cat([o[k] for o in one]), rtol=1e-5, atol=1e-4)


# ------------------------------------------------------------------------------------- rules


GLUON_BN = ("gamma", "beta", "running_mean", "running_var")
TORCH_BN = ("weight", "bias", "running_mean", "running_var")
LAYERS = (3, 4, 6, 3)


def _bn(src, dst):
    return [(src + s, dst + t) for s, t in zip(GLUON_BN, TORCH_BN)]


def gluon_names() -> tuple[list[tuple[str, str]], list[str]]:
    """save_parameters names: features = [conv1, bn1, relu, maxpool, layer1, layer2, layer3],
    top_features = [layer4]; resnetv1b blocks name their layers as torchvision does."""
    pairs = [("features.0.weight", "backbone.conv1.weight"), *_bn("features.1.", "backbone.bn1.")]
    for s, n in enumerate(LAYERS, start=1):
        for b in range(n):
            src = f"features.{s + 3}.{b}." if s < 4 else f"top_features.0.{b}."
            dst = f"backbone.layer{s}.{b}."
            for k in (1, 2, 3):
                pairs += [(f"{src}conv{k}.weight", f"{dst}conv{k}.weight"), *_bn(f"{src}bn{k}.", f"{dst}bn{k}.")]
            if b == 0:
                pairs += [(f"{src}downsample.0.weight", f"{dst}downsample.0.weight"),
                          *_bn(f"{src}downsample.1.", f"{dst}downsample.1.")]
    for p in ("weight", "bias"):
        pairs += [(f"rpn.conv1.0.{p}", f"rpn.conv.{p}"), (f"rpn.score.{p}", f"rpn.score.{p}"),
                  (f"rpn.loc.{p}", f"rpn.loc.{p}"), (f"class_predictor.{p}", f"class_predictor.{p}"),
                  (f"box_predictor.{p}", f"box_predictor.{p}")]
    return pairs, ["rpn.anchor_generator.anchors"]


def export_names() -> tuple[list[tuple[str, str]], list[str]]:
    """net.export names: the backbone under resnet50_v1b's fixed ``resnetv1b_`` prefix (stem in the
    root scope, block layers counted per stage in ``layers<i>_``, projections in ``down<i>_``), heads
    under ``fasterrcnn0_`` in creation order."""
    pairs = [("resnetv1b_conv0_weight", "backbone.conv1.weight"), *_bn("resnetv1b_batchnorm0_", "backbone.bn1.")]
    for s, n in enumerate(LAYERS, start=1):
        for b in range(n):
            for k in (1, 2, 3):
                i = 3 * b + k - 1
                dst = f"backbone.layer{s}.{b}."
                pairs += [(f"resnetv1b_layers{s}_conv{i}_weight", f"{dst}conv{k}.weight"),
                          *_bn(f"resnetv1b_layers{s}_batchnorm{i}_", f"{dst}bn{k}.")]
        pairs += [(f"resnetv1b_down{s}_conv0_weight", f"backbone.layer{s}.0.downsample.0.weight"),
                  *_bn(f"resnetv1b_down{s}_batchnorm0_", f"backbone.layer{s}.0.downsample.1.")]
    for p in ("weight", "bias"):
        pairs += [(f"fasterrcnn0_rpn0_conv0_{p}", f"rpn.conv.{p}"), (f"fasterrcnn0_rpn0_conv1_{p}", f"rpn.score.{p}"),
                  (f"fasterrcnn0_rpn0_conv2_{p}", f"rpn.loc.{p}"), (f"fasterrcnn0_dense0_{p}", f"class_predictor.{p}"),
                  (f"fasterrcnn0_dense1_{p}", f"box_predictor.{p}")]
    return pairs, ["fasterrcnn0_rpn0_rpnanchorgenerator0_anchor_"]


@pytest.fixture(scope="module", params=NAMES)
def target(request):
    return request.param, registry.get(request.param).build()


@pytest.mark.parametrize("layout,enumerate_names", [("gluon", gluon_names), ("export", export_names)])
def test_rule_tables_cover_every_gluoncv_name(target, layout, enumerate_names):
    name, net = target
    spec = registry.get(name)
    pairs, ignored = enumerate_names()
    assert len(pairs) + len(ignored) == 276  # gluoncv's parameter count for both models
    expected = net.state_dict()
    rng = np.random.default_rng(0)
    src = {s: rng.standard_normal(tuple(expected[t].shape), dtype=np.float32) for s, t in pairs}
    src.update({n: np.zeros((1, 1, 128, 128, 60), np.float32) for n in ignored})
    state, rows = map_tensors(name, src, net, spec.rules[layout], spec.fixups, spec.defaults)
    counts = Counter(r.status for r in rows)
    n_bn = sum(k.endswith("num_batches_tracked") for k in expected)
    assert [counts[k] for k in ("mapped", "ignored", "default")] == [len(pairs), 1, n_bn]
    want = dict(pairs)
    assert all(r.target == want[r.source] and np.array_equal(state[r.target].numpy(), src[r.source])
               for r in rows if r.status == "mapped")
    assert all("regenerates" in r.why for r in rows if r.status == "ignored")


def test_registry_records():
    voc, coco = (registry.get(n) for n in NAMES)
    for spec, short, max_size in ((voc, 600, 1000), (coco, 800, 1333)):
        p = spec.preprocess
        assert (p.preset, p.resize, p.resize_short, p.max_size, p.interp, p.crop) == (
            "rcnn", "short-within", short, max_size, "bilinear", "none")
        assert spec.task == "detection" and set(spec.rules) == {"gluon", "export"}
        assert set(spec.floor_points.values()) <= {t for _, t in spec.extra_pairs}
        pairs = set(spec.extra_pairs)
        assert {("rpn", "rpn"), ("top_features#in", "roi_align"), ("rpn.region_proposer",) * 2} <= pairs
    assert voc.weights().sha1 == "447328d89d70ae1e2ca49226b8d834e5a5456df3"
    assert coco.weights().sha1 == "5b4690fb7c5b62c44fb36c67d0642b633697f1bb"
    assert [(m.name, m.value) for m in voc.metrics] == [("mAP", 78.3)]
    assert [(m.name, m.value) for m in coco.metrics] == [("AP", 37.0), ("AP50", 57.8), ("AP75", 39.6)]
    assert coco.slow and not voc.slow

