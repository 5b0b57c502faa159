"""PaddleX PPYOLO (converters/paddle/ppyolo.py, converters/arch/ppyolo.py, dcn.py, paddle_nms.matrix_nms)
without paddle: both rule tables cover every tensor and agree, static names by hand, DCNv2 against
plain convolutions where it must reduce to one, the CoordConv grids, the IoU-aware score, matrix NMS
against a loop written from the kernel's definition, and the detector's output contract."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import converters
from converters import registry
from converters.arch.dcn import ModulatedDeformConv2d
from converters.arch.paddle_nms import _std_partial_sort, matrix_nms
from converters.arch.ppyolo import POST, CoordConvBN, coord_grid, iou_aware
from converters.paddle import ppyolo as pp
from converters.registry import ppdet_eval
from test_paddle_cls_fixtures import assert_layouts_agree, convert_tensors, synthetic_source, write_pdparams

TABLE = pp._table


def test_registered_with_the_config_s_contract():
    spec = registry.get("PPYOLO")
    assert (spec.family, spec.task, spec.source_format) == ("paddle.ppyolo", "detection", "paddle-checkpoint")
    assert set(spec.rules) == {"dygraph", "fluid"}
    assert spec.numerics == {"dygraph": "ppdet", "fluid": "paddlex", "inference": "ppdet"}
    assert spec.preprocess == ppdet_eval((608, 608), False)  # ppyolo_reader.yml: 608, interp 2 (bicubic)
    assert spec.preprocess.interp == "bicubic" and spec.slow
    w = spec.weights()
    assert w.url.endswith("/object_detection/ppyolo_2x.pdparams") and w.archive == "none"
    assert (POST.conf_thresh, POST.score_threshold, POST.post_threshold, POST.nms_top_k, POST.keep_top_k,
            POST.normalized, POST.use_gaussian) == (0.01, 0.01, 0.01, -1, 100, False, False)
    assert pp.CONFIG.yolo.scale_x_y == 1.05 and pp.CONFIG.iou_aware_factor == 0.4 and pp.CONFIG.dcn_stages == (3,)


def test_both_layouts_cover_every_tensor_and_agree():
    # stem 3 + 16 blocks x 3 + 4 projections conv-BN units; 3 DCN offset convs (w, b);
    # neck 3 blocks (6 + 5 + 5 units + tips) + 2 transitions; 3 predictors (w, b)
    assert len(TABLE) == (3 + 48 + 4) * 5 + 3 * 2 + (6 + 5 + 5 + 3 + 2) * 5 + 6
    assert_layouts_agree(registry.get("PPYOLO"), TABLE)


def test_static_names_follow_paddlex_1x():
    t = TABLE
    assert t["backbone.conv1.conv1_2.norm._variance"] == "bnv1_2_variance"
    assert t["backbone.res2.res2a.short.conv.weight"] == "res2a_branch1_weights"
    assert t["backbone.res3.res3a.short.conv.norm.weight"] == "bn3a_branch1_scale"  # avg-pool shortcut
    assert t["backbone.res5.res5c.branch2b.conv.weight"] == "res5c_branch2b_weights"  # the DCN's own weight
    assert t["backbone.res5.res5a.branch2b.conv_offset.weight"] == "res5a_branch2b_conv_offset.w_0"
    assert t["backbone.res5.res5b.branch2b.conv_offset.bias"] == "res5b_branch2b_conv_offset.b_0"
    assert t["neck.yolo_block.0.conv_module.conv0.conv.conv.weight"] == "yolo_block.0.0.0.conv.weights"
    assert t["neck.yolo_block.0.conv_module.spp.conv.batch_norm._mean"] == "yolo_block.0.1.spp.conv.bn.mean"
    assert t["neck.yolo_block.0.conv_module.conv3.batch_norm.bias"] == "yolo_block.0.1.1.bn.offset"
    assert t["neck.yolo_block.2.conv_module.route.conv.conv.weight"] == "yolo_block.2.2.conv.weights"
    assert t["neck.yolo_block.1.tip.conv.batch_norm.weight"] == "yolo_block.1.tip.bn.scale"
    assert t["yolo_head.yolo_output.0.weight"] == "yolo_output.0.conv.weights"
    assert not any("res4" in k and "conv_offset" in k for k in t)  # DCN in res5 only


def test_units_land_on_the_right_target_layers():
    spec = registry.get("PPYOLO")
    dy = synthetic_source(spec, TABLE)
    got, _ = convert_tensors(spec, "dygraph", dy)
    assert got["backbone.net.layer4.0.conv2.weight"].shape == (512, 512, 3, 3)
    assert got["backbone.net.layer4.2.conv2.conv_offset.weight"].shape == (27, 512, 3, 3)  # 2*9 offsets + 9 masks
    assert torch.equal(got["backbone.net.layer4.1.conv2.conv_offset.bias"],
                       torch.from_numpy(dy["backbone.res5.res5b.branch2b.conv_offset.bias"]))
    assert got["yolo_blocks.0.body.0.conv.weight"].shape == (512, 2050, 1, 1)  # CoordConv: 2048 + x, y
    assert got["yolo_blocks.0.body.3.conv.conv.weight"].shape == (512, 2048, 1, 1)  # SPP: map ++ 3 pools
    assert got["yolo_blocks.1.body.0.conv.weight"].shape == (256, 256 + 1024 + 2, 1, 1)
    assert got["yolo_blocks.2.tip.conv.weight"].shape == (256, 130, 3, 3)
    assert got["yolo_outputs.0.weight"].shape == (3 * 86, 1024, 1, 1)  # IoU + 4 box + obj + 80 classes


# -- DCNv2 --------------------------------------------------------------------------------------
def _dcn(cin=4, cout=5, stride=1, seed=0):
    torch.manual_seed(seed)
    m = ModulatedDeformConv2d(cin, cout, 3, stride)
    torch.nn.init.normal_(m.weight)
    return m


@pytest.mark.parametrize("stride", [1, 2])
def test_dcn_with_zero_offset_conv_is_a_half_strength_conv(stride):
    """Paddle's initial state: offsets 0 and masks sigmoid(0) = 0.5 everywhere."""
    m, x = _dcn(stride=stride), torch.randn(2, 4, 9, 11)
    want = 0.5 * F.conv2d(x, m.weight, stride=stride, padding=1)
    torch.testing.assert_close(m(x), want, rtol=1e-5, atol=1e-5)


def test_dcn_offsets_are_dy_dx_per_kernel_point():
    """A constant offset of (dy, dx) = (1, -2) at every kernel point samples the input shifted by it,
    zeros past the border; a saturated mask (bias 30) removes the modulation."""
    m, x = _dcn(), torch.randn(1, 4, 10, 12)
    with torch.no_grad():
        m.conv_offset.bias.copy_(torch.tensor([1.0, -2.0] * 9 + [30.0] * 9))
    shifted = torch.zeros_like(x)
    shifted[:, :, :-1, 2:] = x[:, :, 1:, :-2]  # out(y, x) reads in(y + 1, x - 2)
    want = F.conv2d(shifted, m.weight, padding=1)
    # the first row and last column read pixels the conv's zero padding hides from the shifted copy
    torch.testing.assert_close(m(x)[..., 1:, :-1], want[..., 1:, :-1], rtol=1e-5, atol=1e-5)


def test_dcn_refuses_convs_it_cannot_stand_for():
    with pytest.raises(ValueError, match="DCNv2"):
        ModulatedDeformConv2d.like(torch.nn.Conv2d(4, 4, 3, padding=1, groups=2, bias=False))


# -- CoordConv ----------------------------------------------------------------------------------
def test_coord_grids_of_both_sources():
    gx, gy = coord_grid(3, 5, "ppdet", torch.float32)
    assert gx.shape == gy.shape == (1, 1, 3, 5)
    np.testing.assert_allclose(gx[0, 0, 0].numpy(), np.arange(5) / 8 - 1, rtol=0, atol=1e-7)  # [-1, -0.5]
    np.testing.assert_allclose(gy[0, 0, :, 0].numpy(), np.arange(3) / 4 - 1, rtol=0, atol=1e-7)
    gx, gy = coord_grid(3, 5, "paddlex", torch.float32)
    np.testing.assert_allclose(gx[0, 0, 1].numpy(), [-1, -0.5, 0, 0.5, 1], rtol=0, atol=1e-7)  # [-1, 1]
    np.testing.assert_allclose(gy[0, 0, :, 4].numpy(), [-1, 0, 1], rtol=0, atol=1e-7)


def test_set_numerics_switches_every_coordconv_and_only_them():
    torch.manual_seed(0)
    net = registry.get("PPYOLO").build().eval()
    coords = [m for m in net.modules() if isinstance(m, CoordConvBN)]
    assert len(coords) == 3 * 4 and all(m.numerics == "ppdet" for m in coords)  # conv0, conv2, route, tip
    net.set_numerics("paddlex")
    assert all(m.numerics == "paddlex" for m in coords) and net.numerics == "paddlex"
    with pytest.raises(ValueError, match="numerics"):
        net.set_numerics("mxnet")


# -- IoU-aware score ----------------------------------------------------------------------------
def test_iou_aware_objectness_is_conf_and_iou_blended():
    a, c = 3, 4
    torch.manual_seed(0)
    out = torch.randn(2, a * (6 + c), 5, 7) * 3
    fused = iou_aware(out, a, 0.4)
    assert fused.shape == (2, a * (5 + c), 5, 7)
    plain = out[:, a:].reshape(2, a, 5 + c, 5, 7)
    got = fused.reshape(2, a, 5 + c, 5, 7)
    want = torch.sigmoid(plain[:, :, 4]) ** 0.6 * torch.sigmoid(out[:, :a]) ** 0.4
    torch.testing.assert_close(torch.sigmoid(got[:, :, 4]), want, rtol=1e-5, atol=1e-7)
    assert torch.equal(got[:, :, :4], plain[:, :, :4]) and torch.equal(got[:, :, 5:], plain[:, :, 5:])


# -- matrix NMS ---------------------------------------------------------------------------------
def _iou(a, b, normalized):
    one = 0.0 if normalized else 1.0
    if b[0] > a[2] or b[2] < a[0] or b[1] > a[3] or b[3] < a[1]:
        return 0.0
    iw, ih = min(a[2], b[2]) - max(a[0], b[0]) + one, min(a[3], b[3]) - max(a[1], b[1]) + one
    area = lambda r: 0.0 if r[2] < r[0] or r[3] < r[1] else (r[2] - r[0] + one) * (r[3] - r[1] + one)
    return iw * ih / (area(a) + area(b) - iw * ih)


def matrix_nms_loop(boxes, scores, score_threshold, post_threshold, keep_top_k, normalized):
    """The kernel's definition in double precision, one pair at a time (distinct scores only)."""
    rows = []
    for c, s in enumerate(scores):
        order = sorted(np.nonzero(s > score_threshold)[0], key=lambda i: -s[i])
        iou = [[_iou(boxes[order[i]], boxes[order[j]], normalized) for j in range(i)] for i in range(len(order))]
        iou_max = [max(r, default=0.0) for r in iou]
        for i, k in enumerate(order):
            decay = min([1.0] + [(1 - iou[i][j]) / (1 - iou_max[j]) for j in range(i)])
            if decay * s[k] > post_threshold:
                rows.append([c, decay * s[k], *boxes[k]])
    rows.sort(key=lambda r: -r[1])
    return np.array(rows[:keep_top_k]).reshape(-1, 6)


@pytest.mark.parametrize("normalized", [False, True])
def test_matrix_nms_follows_its_definition(normalized):
    rng = np.random.default_rng(3)
    xy = rng.uniform(0, 60, (80, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(2, 30, (80, 2))], 1).astype(np.float32)
    scores = rng.uniform(0, 1, (3, 80)).astype(np.float32)
    rows, index = matrix_nms(boxes, scores, score_threshold=0.2, post_threshold=0.1, nms_top_k=-1, keep_top_k=50,
                             normalized=normalized, background_label=-1)
    want = matrix_nms_loop(boxes.astype(np.float64), scores.astype(np.float64), 0.2, 0.1, 50, normalized)
    assert rows.shape == want.shape and rows.shape[0] == 50  # the cut is exercised
    np.testing.assert_array_equal(rows[:, 0].numpy(), want[:, 0])
    np.testing.assert_allclose(rows[:, 1].numpy(), want[:, 1], rtol=1e-5)
    assert np.array_equal(rows[:, 2:].numpy(), boxes[index.numpy()])  # each row's box is its index's
    assert (np.diff(rows[:, 1].numpy()) <= 0).all()  # by decayed score, across classes


def test_matrix_nms_decays_overlaps_instead_of_dropping():
    boxes = np.float32([[0, 0, 10, 10], [0, 0, 10, 9], [50, 50, 60, 60]])
    rows, index = matrix_nms(boxes, np.float32([[0.9, 0.8, 0.7]]), score_threshold=0.01, post_threshold=0.01,
                             nms_top_k=-1, keep_top_k=100, normalized=True, background_label=-1)
    assert index.tolist() == [0, 2, 1]  # the overlapped box stays, with a decayed score
    np.testing.assert_allclose(rows[:, 1].numpy(), [0.9, 0.7, 0.8 * (1 - 0.9)], rtol=1e-6)


def test_std_partial_sort_orders_without_ties_like_any_sort_and_keeps_ties_grouped():
    keys = np.float32([0.3, 0.9, 0.1, 0.5, 0.7])
    assert _std_partial_sort(keys, 3) == [1, 4, 3]
    tied = np.float32([0.5, 0.5, 0.9, 0.5, 0.1, 0.5])
    order = _std_partial_sort(tied, 6)
    assert order[0] == 2 and sorted(order[1:5]) == [0, 1, 3, 5] and order[5] == 4
    assert _std_partial_sort(tied, 0) == []


# -- the detector ---------------------------------------------------------------------------------
def test_forward_returns_rows_sorted_by_decayed_score():
    torch.manual_seed(0)
    net = registry.get("PPYOLO").build().eval()
    with torch.no_grad():
        for p in net.yolo_outputs.parameters():  # spread the logits so that NMS has work
            p.mul_(30)
        ids, scores, boxes = net(torch.randn(1, 3, 128, 128))
    assert ids.shape == (1, 100, 1) and scores.shape == (1, 100, 1) and boxes.shape == (1, 100, 4)
    n = int((ids[0, :, 0] >= 0).sum())
    assert n > 0 and (ids[0, n:] == -1).all()
    assert (torch.diff(scores[0, :n, 0]) <= 0).all() and (scores[0, :n] > 0.01).all()
    assert boxes[0, :n].min() >= 0 and boxes[0, :n].max() <= 127  # clipped to the input


def test_multiclass_nms_when_configured():
    """PaddleX 1.x PPYOLO(use_matrix_nms=False): multiclass_nms (IoU 0.45, +1 pixel widths), rows
    grouped by label as Paddle returns them."""
    import dataclasses
    from converters.arch.paddle_yolo import MultiClassNMS
    from converters.arch.ppyolo import MULTICLASS_POST, PPYOLO
    torch.manual_seed(0)
    net = PPYOLO(dataclasses.replace(pp.CONFIG, post=MULTICLASS_POST)).eval()
    assert isinstance(net.nms, MultiClassNMS) and net.decode.conf_thresh == 0.01
    assert (MULTICLASS_POST.nms_threshold, MULTICLASS_POST.nms_top_k, MULTICLASS_POST.normalized) == (0.45, 1000, False)
    with torch.no_grad():
        for p in net.yolo_outputs.parameters():
            p.mul_(30)
        ids, _, _ = net(torch.randn(1, 3, 96, 96))
    n = int((ids[0, :, 0] >= 0).sum())
    assert n > 0 and (torch.diff(ids[0, :n, 0]) >= 0).all()


def test_ppyolov2_dygraph_table_covers_every_tensor():
    """PP-YOLOv2: PP-YOLO's backbone and predictors, the PAN neck's 49 conv-BN units (3 FPN + 2 PAN CSP
    blocks of 9 units, 2 + 2 transitions); every source tensor mapped, every target tensor filled."""
    spec = registry.get("PPYOLOv2")
    assert set(spec.rules) == {"dygraph"} and spec.preprocess == ppdet_eval((640, 640), False)
    assert spec.weights().url == "https://paddledet.bj.bcebos.com/models/ppyolov2_r50vd_dcn_365e_coco.pdparams"
    table = pp._table_v2
    assert len(table) == (3 + 48 + 4) * 5 + 3 * 2 + (5 * 9 + 4) * 5 + 6
    dy = synthetic_source(spec, table)
    got, rows = convert_tensors(spec, "dygraph", dy)
    assert all(r.status in ("mapped", "default") for r in rows)
    assert got["neck.fpn_blocks.0.body.3.conv.conv.weight"].shape == (512, 2048, 1, 1)  # SPP in the deepest
    assert got["neck.fpn_blocks.1.conv1.conv.weight"].shape == (256, 1024 + 512, 1, 1)
    assert got["neck.pan_transitions.0.conv.weight"].shape == (512, 512, 3, 3)  # 3x3 stride 2, on FPN 1
    assert got["neck.pan_blocks.0.conv2.conv.weight"].shape == (512, 1024 + 512, 1, 1)  # FPN 0 tip ++ PAN route
    assert got["yolo_outputs.0.weight"].shape == (258, 1024, 1, 1)
    assert torch.equal(got["neck.pan_blocks.1.body.5.bn.running_var"],
                       torch.from_numpy(dy["neck.pan.1.conv_module.2.1.batch_norm._variance"]))
    net = spec.build().eval()
    assert isinstance(net.neck.fpn_blocks[0].conv1.act, torch.nn.Mish) and not any(
        isinstance(m, CoordConvBN) for m in net.modules())
    with torch.no_grad():
        outs = net.head(torch.randn(1, 3, 64, 96))
    assert [tuple(o.shape) for o in outs] == [(1, 258, 2, 3), (1, 258, 4, 6), (1, 258, 8, 12)]


def test_ppyolo_tiny_dygraph_table_covers_every_tensor():
    """PP-YOLO tiny: YOLOv3_MobileNetV3_large's backbone names at x0.5, the tiny FPN's SPP and 3 x (4 + tip)
    units and 2 transitions, plain predictors (no IoU channels); multiclass NMS; runs in the CI sweep."""
    from converters.arch.paddle_yolo import MultiClassNMS
    spec = registry.get("PPYOLOTiny")
    assert set(spec.rules) == {"dygraph"} and spec.preprocess == ppdet_eval((320, 320), False) and not spec.slow
    assert spec.weights().url == "https://paddledet.bj.bcebos.com/models/ppyolo_tiny_650e_coco.pdparams"
    table = pp._table_tiny
    assert len(table) == (1 + 45 + 1 + 15 + 2) * 5 + 8 * 4 + 6
    dy = synthetic_source(spec, table)
    got, rows = convert_tensors(spec, "dygraph", dy)
    assert all(r.status in ("mapped", "default") for r in rows)
    assert got["neck.spp.conv.conv.weight"].shape == (80, 320, 1, 1)  # SPP on the x0.5 net's 80-wide map
    assert got["neck.blocks.1.body.1.conv.weight"].shape == (128, 1, 5, 5)  # depthwise 5x5
    assert got["neck.blocks.2.body.0.conv.weight"].shape == (96, 24 + 128, 1, 1)  # 40 x 0.5 rounds up to 24
    assert got["yolo_outputs.0.weight"].shape == (255, 160, 1, 1)
    assert torch.equal(got["neck.blocks.0.body.3.bn.weight"],
                       torch.from_numpy(dy["neck.yolo_block.0.conv_module.yolo_block.0.route.batch_norm.weight"]))
    net = spec.build().eval()
    assert isinstance(net.nms, MultiClassNMS) and net.nms.post.normalized and net.decode.conf_thresh == 0.005
    assert net.decode.anchors[0] == [(220, 125), (128, 222), (264, 266)]
    with torch.no_grad():
        ids, _, _ = net(torch.randn(1, 3, 96, 128))
    assert ids.shape == (1, 100, 1)


def test_single_pdparams_link_reads_as_the_fluid_layout(tmp_path):
    """PaddleX links ppyolo_2x.pdparams, a fluid.save pickle of static names: it converts as "fluid"
    with PaddleX 1.x's grid; the same values under dygraph names give the same state dict."""
    spec = registry.get("PPYOLO")
    dygraph = synthetic_source(spec, TABLE)
    a = converters.convert(spec.name, weights=write_pdparams(tmp_path / "dy.pdparams", dygraph))
    b = converters.convert(spec.name, weights=write_pdparams(tmp_path / "ppyolo_2x.pdparams",
                                                             {TABLE[k]: v for k, v in dygraph.items()}))
    assert (a.layout, b.layout) == ("dygraph", "fluid") and (a.module.numerics, b.module.numerics) == ("ppdet", "paddlex")
    assert all(torch.equal(a.state_dict[k], b.state_dict[k]) for k in a.state_dict)
