"""PaddleX Faster R-CNN (converters/paddle/rcnn.py, converters/arch/paddle_rcnn*.py), without paddle:
rules of both layouts over every tensor, fluid == dygraph through the readers (with the static
background fix-ups), the static names, and each op against an independent numpy implementation
written from the op's definition (issue7_facts.md section 3)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import converters
from converters import registry
from converters.arch import paddle_rcnn as arch
from converters.arch import paddle_rcnn_ops as ops
from converters.paddle import rcnn
from test_paddle_cls_fixtures import convert_both_layouts, write_fluid_dir

# name: (depth, vd, FPN)
DEPTH = {"FasterRCNN_ResNet101": (101, False, False), "FasterRCNN_ResNet101_FPN": (101, False, True),
         "FasterRCNN_ResNet101_vd_FPN": (101, True, True), "FasterRCNN_ResNet18_FPN": (18, False, True),
         "FasterRCNN_ResNet50": (50, False, False), "FasterRCNN_ResNet50_FPN": (50, False, True),
         "FasterRCNN_ResNet50_vd": (50, True, False),
         "FasterRCNN_ResNet50_vd_FPN": (50, True, True)}
NAMES = sorted(DEPTH)


def table(name: str) -> dict[str, str]:
    depth, vd, fpn = DEPTH[name]
    return rcnn.fluid_names(rcnn.model_config(depth, vd, fpn).backbone, depth, fpn)


def test_registered_family():
    specs = [s for s in registry.specs() if s.family == "paddle.rcnn"]
    assert sorted(s.name for s in specs) == NAMES
    assert [s.name for s in specs if not s.slow] == ["FasterRCNN_ResNet18_FPN"]  # one CI-cheap model
    for s in specs:
        assert s.task == "detection" and set(s.rules) == {"dygraph", "fluid"}
        assert s.numerics == {"dygraph": "ppdet", "fluid": "paddlex", "inference": "ppdet"}
        assert s.preprocess.pad_to == (32 if DEPTH[s.name][2] else 0) and s.preprocess.resize == "scale-within"
        assert s.weights().archive == "tar" and s.weights().url.endswith(".tar")


@pytest.mark.parametrize("name", NAMES)
def test_every_target_tensor_has_one_source_in_both_layouts(name):
    spec = registry.get(name)
    target = {k for k in spec.build().state_dict() if not k.endswith("num_batches_tracked")}
    t = table(name)
    assert len(set(t.values())) == len(t)  # static names unique
    for layout, names in (("dygraph", list(t)), ("fluid", list(t.values()))):
        hits = [next(r.apply(n) for r in spec.rules[layout] if r.apply(n)) for n in names]
        assert sorted(hits) == sorted(target), layout


def test_static_names_follow_paddlex_1x():
    t = table("FasterRCNN_ResNet50_vd_FPN")
    assert t["backbone.conv1.conv1_1.conv.weight"] == "conv1_1_weights"
    assert t["backbone.conv1.conv1_1.norm._mean"] == "bnv1_1_mean"  # NameAdapter: "bn" + name[3:]
    assert t["backbone.res3.res3a.short.conv.conv.weight"] == "res3a_branch1_weights"
    assert t["backbone.res2.res2a.short.norm.weight"] == "bn2a_branch1_scale"
    assert t["neck.fpn_inner_res5_sum.weight"] == "fpn_inner_res5_sum_w"
    assert t["neck.fpn_inner_res2_sum_lateral.bias"] == "fpn_inner_res2_sum_lateral_b"
    assert t["rpn_head.rpn_feat.rpn_conv.weight"] == "conv_rpn_fpn2_w"
    assert t["bbox_head.bbox_score.weight"] == "cls_score_w"
    assert t["bbox_head.bbox_delta.bias"] == "bbox_pred_b"
    assert table("FasterRCNN_ResNet101_FPN")["backbone.res4.res4b22.branch2c.conv.weight"] == "res4b22_branch2c_weights"
    c4 = table("FasterRCNN_ResNet50")
    assert c4["bbox_head.head.res5.res5a.short.conv.weight"] == "res5a_branch1_weights"  # res5 in the box head
    assert c4["rpn_head.rpn_feat.rpn_conv.weight"] == "conv_rpn_w"
    assert c4["rpn_head.rpn_rois_score.bias"] == "rpn_cls_logits_b"


def _synthetic(name: str) -> dict[str, np.ndarray]:
    """Random dygraph tensors shaped as ppdet stores them (Linear [in, out]); variances positive."""
    spec = registry.get(name)
    target = spec.build().state_dict()
    rng = np.random.default_rng(0)
    out = {}
    for key in table(name):
        tname = next(r.apply(key) for r in spec.rules["dygraph"] if r.apply(key))
        shape = tuple(target[tname].shape)
        if key.endswith(".weight") and len(shape) == 2:
            shape = shape[::-1]
        a = rng.standard_normal(shape).astype(np.float32)
        out[key] = np.abs(a) + 0.5 if key.endswith("_variance") else a
    return out


def _to_static(key: str, a: np.ndarray) -> np.ndarray:
    """The inverse of the static fix-ups: background class first, 4 background box columns in front."""
    if key.startswith("bbox_head.bbox_score."):
        return np.roll(a, 1, axis=-1)
    if key.startswith("bbox_head.bbox_delta."):
        bg = np.full(a.shape[:-1] + (4,), 7.0, np.float32)  # any values: they are dropped
        return np.concatenate([bg, a], axis=-1)
    return a


def test_fluid_and_dygraph_files_convert_to_one_state_dict(tmp_path):
    name = "FasterRCNN_ResNet18_FPN"
    dy = _synthetic(name)
    t = table(name)
    a, b = convert_both_layouts(name, dy, {t[k]: _to_static(k, v) for k, v in dy.items()}, tmp_path,
                                "faster_rcnn_r18_fpn_1x")
    assert torch.equal(a.state_dict["score.weight"], torch.from_numpy(dy["bbox_head.bbox_score.weight"].T.copy()))
    fixed = {r.target: r.fixup for r in b.mapping if r.status == "mapped"}
    assert fixed["score.weight"] == "static_score_weight_bg_last" and fixed["delta.bias"] == "static_delta_bias_drop_bg"
    assert fixed["box_head.fc6.weight"] == "transpose_linear"
    assert a.module.numerics == arch.NUMERICS["ppdet"] and b.module.numerics == arch.NUMERICS["paddlex"]


def test_affine_channel_fluid_files_get_identity_statistics(tmp_path):
    """Static checkpoints trained with affine_channel have no BN mean/variance files: named defaults
    (mean 0, var 1 - eps) make each BN exactly x * scale + offset."""
    name = "FasterRCNN_ResNet18_FPN"
    dy = _synthetic(name)
    t = table(name)
    fluid = {t[k]: _to_static(k, v) for k, v in dy.items() if not k.endswith(("_mean", "_variance"))}
    r = converters.convert(name, weights=write_fluid_dir(tmp_path / "affine", fluid))
    assert torch.equal(r.state_dict["backbone.bn1.running_mean"], torch.zeros(64))
    assert torch.allclose(r.state_dict["backbone.bn1.running_var"] + 1e-5, torch.ones(64), atol=1e-7)
    assert {row.status for row in r.mapping if row.target.endswith("running_var")} == {"default"}


def test_static_fixups_are_exact():
    w = np.arange(2 * 81, dtype=np.float32).reshape(2, 81)  # [in, out], bg at column 0
    score_w = rcnn.STATIC_FIXUPS[0].fn(w)
    assert score_w.shape == (81, 2) and np.array_equal(score_w[-1], w[:, 0]) and np.array_equal(score_w[0], w[:, 1])
    d = np.arange(2 * 324, dtype=np.float32).reshape(2, 324)
    assert np.array_equal(rcnn.STATIC_FIXUPS[2].fn(d), d[:, 4:].T)
    with pytest.raises(ValueError):
        rcnn.STATIC_FIXUPS[3].fn(np.zeros(6, np.float32))


# --------------------------------------------------------------------------- ops vs numpy

def test_ppdet_anchors_match_the_definition():
    got = ops.ppdet_anchors((64, 128), (0.5, 1.0, 2.0), 8, 3, 5).numpy()
    want = []
    for y in range(3):
        for x in range(5):
            for size in (64, 128):  # size-major, ratio-minor
                for r in (0.5, 1.0, 2.0):
                    w = math.sqrt(size * size / r)
                    h = r * w
                    want.append([x * 8 - w / 2, y * 8 - h / 2, x * 8 + w / 2, y * 8 + h / 2])
    assert np.allclose(got, np.array(want), atol=1e-5)


def test_static_anchors_are_ratio_major():
    both = ops.static_anchors((32, 64), (0.5, 1.0), 16, 1, 1).numpy()
    assert np.array_equal(both[[0, 2]], ops.static_anchors((32,), (0.5, 1.0), 16, 1, 1).numpy())


def test_static_anchors_match_paddle_s_known_values():
    """issue7_facts.md [LOCAL]: anchor_generator stride 16, size 32, ratios .5/1/2 at (0, 0)."""
    got = ops.static_anchors((32,), (0.5, 1.0, 2.0), 16, 2, 2).numpy()
    assert np.array_equal(got[:3], [[-15, -4, 30, 19], [-8, -8, 23, 23], [-3, -14, 18, 29]])
    assert np.array_equal(got[3:6], got[:3] + [16, 0, 16, 0])  # next column
    # stride 32, ratio 0.5: base_w = round(45.25) = 45, base_h = round(22.5) = 23 (C++ rounds halves up)
    w, h = 256 / 32 * 45, 256 / 32 * 23
    c = 0.5 * 31
    assert ops.static_anchors((256,), (0.5,), 32, 1, 1).tolist() == [[c - (w - 1) / 2, c - (h - 1) / 2,
                                                                      c + (w - 1) / 2, c + (h - 1) / 2]]


def _np_decode(a, d, off):
    w, h = a[:, 2] - a[:, 0] + off, a[:, 3] - a[:, 1] + off
    cx, cy = a[:, 0] + 0.5 * w, a[:, 1] + 0.5 * h
    x, y = d[:, 0] * w + cx, d[:, 1] * h + cy
    pw, ph = np.exp(np.minimum(d[:, 2], np.log(1000 / 16))) * w, np.exp(np.minimum(d[:, 3], np.log(1000 / 16))) * h
    return np.stack([x - pw / 2, y - ph / 2, x + pw / 2 - off, y + ph / 2 - off], 1)


def _np_nms(boxes, thr, off):
    keep = []
    for i in range(len(boxes)):
        ok = True
        for j in keep:
            a, b = boxes[i], boxes[j]
            iw = min(a[2], b[2]) - max(a[0], b[0]) + off
            ih = min(a[3], b[3]) - max(a[1], b[1]) + off
            if iw <= 0 or ih <= 0:
                continue
            inter = iw * ih
            union = (a[2] - a[0] + off) * (a[3] - a[1] + off) + (b[2] - b[0] + off) * (b[3] - b[1] + off) - inter
            if inter / union > thr:
                ok = False
                break
        if ok:
            keep.append(i)
    return keep


@pytest.mark.parametrize("pixel_offset", [False, True])
def test_generate_proposals_matches_the_definition(pixel_offset):
    rng = np.random.default_rng(1)
    A, H, W = 3, 6, 7
    scores = rng.standard_normal((A, H, W)).astype(np.float32)
    deltas = (rng.standard_normal((4 * A, H, W)) * 0.5).astype(np.float32)
    deltas[2, 0, 0] = 9.0  # beyond the dw clamp
    anchors = ops.ppdet_anchors((16,), (0.5, 1.0, 2.0), 8, H, W)
    rois, s = ops.generate_proposals(torch.from_numpy(scores), torch.from_numpy(deltas), anchors, (48, 56),
                                     60, 20, 0.5, 0.0, pixel_offset)
    off = 1.0 if pixel_offset else 0.0
    sc = scores.transpose(1, 2, 0).reshape(-1)
    dl = deltas.transpose(1, 2, 0).reshape(-1, 4)
    order = np.argsort(-sc, kind="stable")[:60]
    b = _np_decode(anchors.numpy()[order].astype(np.float64), dl[order].astype(np.float64), off)
    b[:, 0::2] = np.clip(b[:, 0::2], 0, 56 - off)
    b[:, 1::2] = np.clip(b[:, 1::2], 0, 48 - off)
    ws, hs = b[:, 2] - b[:, 0] + off, b[:, 3] - b[:, 1] + off
    ok = (ws >= 1) & (hs >= 1)
    if pixel_offset:
        ok &= (b[:, 0] + ws / 2 <= 56) & (b[:, 1] + hs / 2 <= 48)
    b, ss = b[ok], sc[order][ok]
    keep = _np_nms(b, 0.5, off)[:20]
    assert np.allclose(rois.numpy(), b[keep], atol=1e-3) and np.array_equal(s.numpy(), ss[keep])


def test_generate_proposals_with_nothing_left_returns_one_zero_box():
    rois, s = ops.generate_proposals(torch.zeros(1, 1, 1), torch.full((4, 1, 1), -9.0),
                                     torch.tensor([[0.0, 0.0, 0.5, 0.5]]), (8, 8), 10, 10, 0.7, 0.0, False)
    assert rois.tolist() == [[0.0, 0.0, 0.0, 0.0]] and s.tolist() == [0.0]


def test_fpn_levels_match_the_definition():
    rois = torch.tensor([[0, 0, 223, 223], [0, 0, 224, 224], [0, 0, 111, 111], [0, 0, 10, 10],
                         [0, 0, 900, 900], [5, 5, 4, 4], [0, 0, 447, 447]], dtype=torch.float32)
    for off, eps in ((0.0, 1e-6), (1.0, 0.0)):
        w, h = (rois[:, 2] - rois[:, 0]).numpy(), (rois[:, 3] - rois[:, 1]).numpy()
        area = np.where((w < 0) | (h < 0), 0, (w + off) * (h + off)).astype(np.float32)
        with np.errstate(divide="ignore"):
            want = np.clip(np.nan_to_num(np.floor(np.log2(np.sqrt(area) / 224 + np.float32(eps)) + 4), neginf=2), 2, 5)
        assert ops.fpn_levels(rois, 2, 5, bool(off), eps).tolist() == want.astype(int).tolist()
    assert ops.fpn_levels(rois, 2, 5, True, 0.0).tolist() == [4, 4, 3, 2, 5, 2, 5]


def test_collect_keeps_level_order_unless_over_top_n():
    r = [torch.tensor([[0.0, 0, 1, 1]]), torch.tensor([[1.0, 1, 2, 2], [2.0, 2, 3, 3]])]
    s = [torch.tensor([0.1]), torch.tensor([0.9, 0.5])]
    assert ops.collect(r, s, 3, False)[:, 0].tolist() == [0, 1, 2]  # ppdet: concatenated as is
    assert ops.collect(r, s, 2, False)[:, 0].tolist() == [1, 2]  # more than top_n: topk
    assert ops.collect(r, s, 3, True)[:, 0].tolist() == [1, 2, 0]  # static: always sorted


def _np_roi_align(feat, box, scale, size, ratio, aligned):
    """RoIAlign of one RoI on feat [C, H, W] from its definition (bilinear samples averaged per bin)."""
    C, H, W = feat.shape
    off = 0.5 if aligned else 0.0
    x1, y1, x2, y2 = (v * scale - off for v in box)
    rw, rh = x2 - x1, y2 - y1
    if not aligned:
        rw, rh = max(rw, 1.0), max(rh, 1.0)
    bw, bh = rw / size, rh / size
    gh = ratio if ratio > 0 else math.ceil(rh / size)
    gw = ratio if ratio > 0 else math.ceil(rw / size)
    out = np.zeros((C, size, size))
    for py in range(size):
        for px in range(size):
            acc = np.zeros(C)
            for iy in range(gh):
                for ix in range(gw):
                    y = y1 + py * bh + (iy + 0.5) * bh / gh
                    x = x1 + px * bw + (ix + 0.5) * bw / gw
                    if y < -1 or y > H or x < -1 or x > W:
                        continue
                    y, x = min(max(y, 0), H - 1), min(max(x, 0), W - 1)
                    y0, x0 = int(y), int(x)
                    y1_, x1_ = min(y0 + 1, H - 1), min(x0 + 1, W - 1)
                    ly, lx = y - y0, x - x0
                    acc += ((1 - ly) * (1 - lx) * feat[:, y0, x0] + (1 - ly) * lx * feat[:, y0, x1_]
                            + ly * (1 - lx) * feat[:, y1_, x0] + ly * lx * feat[:, y1_, x1_])
            out[:, py, px] = acc / (gh * gw)
    return out


@pytest.mark.parametrize("aligned,ratio", [(True, 0), (False, 2)])
def test_multilevel_roi_align_matches_the_definition(aligned, ratio):
    rng = np.random.default_rng(2)
    feats = [torch.from_numpy(rng.standard_normal((1, 2, 32 // 2 ** k, 32 // 2 ** k)).astype(np.float32))
             for k in range(4)]
    rois = torch.tensor([[3.0, 4.0, 40.0, 50.0], [10.0, 2.0, 11.5, 3.0], [0.0, 0.0, 127.0, 100.0]])
    levels = torch.tensor([2, 2, 5])
    got = ops.multilevel_roi_align(feats, rois, levels, 2, 3, ratio, aligned).numpy()
    for i, lv in enumerate(levels.tolist()):
        feat = feats[lv - 2][0].numpy().astype(np.float64)
        want = _np_roi_align(feat, rois[i].tolist(), 1 / 2 ** lv, 3, ratio, aligned)
        assert np.allclose(got[i], want, atol=1e-5), i


def test_static_decode_matches_box_coder_definition():
    rois = torch.tensor([[10.0, 20.0, 50.0, 40.0]])
    d = torch.tensor([[[1.0, -2.0, 0.5, 30.0]]])  # dh 30 * 0.2 = 6: no clamp in the static op
    got = arch.static_decode(d, rois).numpy()[0, 0]
    pw, ph = 41.0, 21.0
    cx, cy = 0.1 * 1.0 * pw + 10 + pw / 2, 0.1 * -2.0 * ph + 20 + ph / 2
    w, h = math.exp(0.1) * pw, math.exp(6.0) * ph
    assert np.allclose(got, [cx - w / 2, cy - h / 2, cx + w / 2 - 1, cy + h / 2 - 1], rtol=1e-6)


def test_detection_output_relabels_empty_boxes_and_pads():
    out = arch.DetectionOutput({"score_threshold": 0.05, "nms_top_k": -1, "keep_top_k": 5, "nms_threshold": 0.5})
    boxes = torch.tensor([[[0.0, 0.0, 10.0, 10.0], [3.0, 3.0, 3.0, 9.0]]])  # [M=1, C=2, 4]; class 1 empty
    rows = out(boxes, torch.tensor([[0.9, 0.8]]))
    assert rows.shape == (5, 6) and rows[:2, 0].tolist() == [0, -1] and rows[2:].eq(-1).all()
    out.numerics = arch.NUMERICS["paddlex"]  # PaddleX keeps the row
    assert out(boxes, torch.tensor([[0.9, 0.8]]))[:2, 0].tolist() == [0, 1]


@pytest.mark.parametrize("numerics", ["ppdet", "paddlex"])
@pytest.mark.parametrize("name", ["FasterRCNN_ResNet18_FPN", "FasterRCNN_ResNet50"])
def test_forward_runs_in_both_numerics(name, numerics):
    torch.manual_seed(0)
    m = registry.get(name).build().eval()
    m.set_numerics(numerics)
    with torch.no_grad():
        for p in m.parameters():
            p.mul_(0.1)
        ids, scores, boxes = m(torch.randn(1, 3, 96, 128))
    assert ids.shape == (1, 100, 1) and scores.shape == (1, 100, 1) and boxes.shape == (1, 100, 4)
    with pytest.raises(ValueError):
        m.set_numerics("fluid")
