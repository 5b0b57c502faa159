"""PaddleX PPYOLO against paddle itself. CI runs the ops, each against Paddle's own kernel or ppdet's
own layer: deform_conv2d (DCNv2), matrix_nms, the CoordConv grid, the IoU-aware head, and the static
name table against ppdet's net; and the whole detector on photographs at a small input (a source
seeded and calibrated at that size), in both layouts, with a planted error. At the config's 608x608
(a ResNet50-vd with DCN, ~8 s per Paddle forward on 2 cores) it runs in `make parity-full`."""
from __future__ import annotations

import copy
import dataclasses
import importlib.util
import pickle

import numpy as np
import pytest
import torch

import converters
from converters import registry
from converters.arch.dcn import ModulatedDeformConv2d
from converters.arch.paddle_nms import matrix_nms
from converters.arch.ppyolo import coord_grid, iou_aware
from converters.paddle import ppcls
from converters.samples import sample_photos
from parity.verify import verify

pytestmark = [pytest.mark.oracle,
              pytest.mark.skipif(importlib.util.find_spec("paddle") is None, reason="paddle is not installed")]


def _paddle():
    from converters.frameworks import import_paddle
    return import_paddle()


def _ppdet():
    from converters.frameworks import import_ppdet
    _paddle()
    import_ppdet()


# ----------------------------------------------------------------------------------------- DCNv2

@pytest.mark.parametrize("stride", [1, 2])
def test_deform_conv2d_equals_paddle_s(stride):
    """torchvision's deform_conv2d with Paddle's offsets and mask as they come: the same op (offsets
    of several pixels, many samples past the border); the (dy, dx) order matters: swapped, it is off."""
    paddle = _paddle()
    rng = np.random.default_rng(stride)
    x = rng.standard_normal((2, 4, 9, 11)).astype(np.float32)
    w = rng.standard_normal((6, 4, 3, 3)).astype(np.float32)
    ho, wo = (9 - 1) // stride + 1, (11 - 1) // stride + 1
    off = (rng.standard_normal((2, 18, ho, wo)) * 3).astype(np.float32)
    mask = rng.uniform(0, 1, (2, 9, ho, wo)).astype(np.float32)
    want = paddle.vision.ops.deform_conv2d(paddle.to_tensor(x), paddle.to_tensor(off), paddle.to_tensor(w),
                                           stride=stride, padding=1, mask=paddle.to_tensor(mask)).numpy()
    from torchvision.ops import deform_conv2d
    t = torch.from_numpy
    got = deform_conv2d(t(x), t(off), t(w), stride=stride, padding=1, mask=t(mask)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    swapped = off.reshape(2, 9, 2, ho, wo)[:, :, ::-1].reshape(off.shape).copy()
    assert np.abs(deform_conv2d(t(x), t(swapped), t(w), stride=stride, padding=1, mask=t(mask)).numpy() - want).max() > 1


def test_dcn_module_equals_ppdet_s_dcn_unit():
    """ppdet's ResNet ConvNormLayer(dcn_v2=True): its conv_offset, split, sigmoid and DeformConv2D
    against ModulatedDeformConv2d with the same tensors (offset conv given random weights: Paddle
    zero-initialises it)."""
    paddle = _paddle()
    _ppdet()
    from ppdet.modeling.backbones.resnet import ConvNormLayer
    paddle.seed(0)
    unit = ConvNormLayer(8, 6, 3, 2, dcn_v2=True, freeze_norm=False)
    unit.eval()
    rng = np.random.default_rng(0)
    unit.conv_offset.weight.set_value(rng.normal(0, 0.3, unit.conv_offset.weight.shape).astype(np.float32))
    unit.conv_offset.bias.set_value(rng.uniform(-1, 1, unit.conv_offset.bias.shape).astype(np.float32))
    x = rng.standard_normal((2, 8, 13, 10)).astype(np.float32)
    captured = {}
    unit.conv.register_forward_post_hook(lambda _l, _i, out: captured.__setitem__("y", out.numpy()))
    with paddle.no_grad():
        unit(paddle.to_tensor(x))
    ours = ModulatedDeformConv2d(8, 6, 3, 2)
    with torch.no_grad():
        ours.weight.copy_(torch.from_numpy(unit.conv.weight.numpy()))
        ours.conv_offset.weight.copy_(torch.from_numpy(unit.conv_offset.weight.numpy()))
        ours.conv_offset.bias.copy_(torch.from_numpy(unit.conv_offset.bias.numpy()))
        got = ours(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, captured["y"], rtol=1e-4, atol=1e-4 * np.abs(captured["y"]).max())


# ------------------------------------------------------------------------------------ matrix_nms

def _case(seed: int, quantised: bool, m: int = 300, c: int = 4):
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, 100, (m, 2))
    boxes, scores = np.concatenate([xy, xy + rng.uniform(-3, 40, (m, 2))], -1), rng.uniform(0, 1, (c, m))
    if quantised:  # integer corners and eighth scores: ties everywhere (libstdc++'s heap order decides)
        boxes, scores = np.round(boxes), np.round(scores * 8) / 8
    return boxes.astype(np.float32), scores.astype(np.float32)


MATRIX_SETTINGS = [
    dict(score_threshold=0.01, post_threshold=0.01, nms_top_k=-1, keep_top_k=100, background_label=-1),  # PPYOLO's
    dict(score_threshold=0.3, post_threshold=0.2, nms_top_k=50, keep_top_k=40, background_label=0),  # both cuts
    dict(score_threshold=0.1, post_threshold=0.05, nms_top_k=-1, keep_top_k=-1, background_label=-1),
]


def paddle_matrix_nms(boxes, scores, **kw):
    paddle = _paddle()
    out, _, index = paddle.vision.ops.matrix_nms(paddle.to_tensor(boxes[None]), paddle.to_tensor(scores[None]),
                                                 return_index=True, return_rois_num=True, **kw)
    return out.numpy(), index.numpy().reshape(-1)


@pytest.mark.parametrize("normalized", [False, True])
@pytest.mark.parametrize("quantised", [False, True])
@pytest.mark.parametrize("setting", range(len(MATRIX_SETTINGS)))
def test_matrix_nms_equals_paddle_s(normalized, quantised, setting):
    boxes, scores = _case(setting, quantised)
    kw = dict(MATRIX_SETTINGS[setting], normalized=normalized)
    rows, index = matrix_nms(boxes, scores, **kw)
    want, want_index = paddle_matrix_nms(boxes, scores, **kw)
    assert len(want) > 0
    assert np.array_equal(rows.numpy(), want) and np.array_equal(index.numpy(), want_index)


@pytest.mark.parametrize("quantised", [False, True])
def test_matrix_nms_gaussian_decay_within_one_float_step(quantised):
    """The Gaussian decay (not PPYOLO's) calls expf; numpy's exp rounds differently in the last bit
    now and then: labels, boxes and order identical, scores within 2 float32 steps."""
    boxes, scores = _case(7, quantised)
    kw = dict(score_threshold=0.1, post_threshold=0.05, nms_top_k=-1, keep_top_k=-1, background_label=-1,
              use_gaussian=True, gaussian_sigma=2.0, normalized=False)
    rows, index = matrix_nms(boxes, scores, **kw)
    want, want_index = paddle_matrix_nms(boxes, scores, **kw)
    assert np.array_equal(index.numpy(), want_index) and np.array_equal(rows[:, [0, 2, 3, 4, 5]].numpy(),
                                                                        want[:, [0, 2, 3, 4, 5]])
    np.testing.assert_allclose(rows[:, 1].numpy(), want[:, 1], rtol=2.5e-7, atol=0)


# ---------------------------------------------------------------------- CoordConv and IoU-aware

@pytest.mark.parametrize("h,w", [(19, 19), (38, 38), (5, 8)])
def test_coord_grid_equals_ppdet_s(h, w):
    paddle = _paddle()
    _ppdet()
    from ppdet.modeling.necks.yolo_fpn import add_coord
    gx, gy = add_coord(paddle.zeros([2, 3, h, w]), "NCHW")
    ox, oy = coord_grid(h, w, "ppdet", torch.float32)
    assert np.array_equal(ox.expand(2, -1, -1, -1).numpy(), gx.numpy())
    assert np.array_equal(oy.expand(2, -1, -1, -1).numpy(), gy.numpy())


def test_iou_aware_head_equals_ppdet_s():
    """ppdet's YOLOv3Head(iou_aware) eval output (logits, objectness rewritten) against ours on the same
    predictor maps; pow in float32 on both sides, 1-2 float steps apart."""
    paddle = _paddle()
    _ppdet()
    from ppdet.modeling.heads.yolo_head import YOLOv3Head
    paddle.seed(0)
    head = YOLOv3Head(in_channels=[16, 8, 4], num_classes=5, loss=None, iou_aware=True, iou_aware_factor=0.4)
    head.eval()
    rng = np.random.default_rng(0)
    feats = [rng.standard_normal((2, c, s, s)).astype(np.float32) for c, s in ((16, 3), (8, 6), (4, 12))]
    with paddle.no_grad():
        want = [o.numpy() for o in head([paddle.to_tensor(f) for f in feats])]
        maps = [head.yolo_outputs[i](paddle.to_tensor(f)).numpy() for i, f in enumerate(feats)]
    for m, w in zip(maps, want):
        got = iou_aware(torch.from_numpy(m), 3, 0.4)
        np.testing.assert_allclose(got.numpy(), w, rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------------------------- the nets

def test_static_names_fit_ppdet_s_net():
    """The family's static table covers ppdet's PP-YOLO state dict one to one (the oracle's map)."""
    net = registry.get("PPYOLO").source_net(None)
    names = ppcls.static_names("PPYOLO", net)
    assert sorted(names.values()) == sorted(net.state_dict()) and len(names) == len(net.state_dict())


@pytest.mark.parametrize("name,table", [("PPYOLOv2", "_table_v2"), ("PPYOLOTiny", "_table_tiny")])
def test_dygraph_table_fits_ppdet_s_net(name, table):
    """PP-YOLOv2 / tiny (dygraph names only): the table names ppdet's state dict one to one. (PP-YOLO
    tiny's photographs parity runs in the registry sweep: parity/tests/test_models.py.)"""
    from converters.paddle import ppyolo
    net = registry.get(name).source_net(None)
    assert sorted(getattr(ppyolo, table)) == sorted(net.state_dict())


@pytest.mark.slow
def test_ppyolo_detects_and_suppresses(parity_report):
    """The seeded detector at 608x608 on photographs: every layer pair within tolerance, detections
    identical, and a net whose matrix NMS has real work (many candidates, spread scores)."""
    report = parity_report("PPYOLO")
    assert report.passed, report.layers.first_divergent or report.detections
    d = report.detections
    assert d.reference == d.identical and d.reference >= 10 * len(report.images)
    assert report.detection_tol["box"] < 1.0 and report.detection_tol["score"] < 1e-3


CI_SIZE = (192, 192)  # strides 8/16/32 give 24/12/6 maps: SPP's 13x13 pool still sees borders


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """PPYOLO converted from a ppdet net seeded and calibrated at CI_SIZE (its own file: the shared
    seeded cache holds the 608x608 one)."""
    from converters.paddle import seeded
    spec = dataclasses.replace(registry.get("PPYOLO"), seed_size=CI_SIZE)
    path = seeded.build(spec, 0, tmp_path_factory.mktemp("ppyolo") / "PPYOLO-seed0.pdparams")
    return converters.convert("PPYOLO", weights=path)


def test_small_input_detector_passes_parity(small):
    """Every one of the 158 layer pairs (DCN convs and their offset convs, CoordConvs, SPP, the
    IoU-aware predictors) within tolerance, and 100 identical detections per photograph: the matrix NMS
    has work (several hundred candidates) and the rows come in decayed-score order."""
    r = verify("PPYOLO", result=small, images=sample_photos()[:2], size=CI_SIZE)
    assert r.passed, r.layers.first_divergent or r.detections
    names = {d.name for d in r.layers.diffs}
    assert len(names) == 158
    assert {"backbone.net.layer4.2.conv2", "backbone.net.layer4.2.conv2.conv_offset", "yolo_blocks.0.body.3.conv.conv",
            "yolo_blocks.2.tip.conv", "yolo_outputs.0"} <= names
    d = r.detections
    assert d.reference == d.identical == 200 and d.converted == 200
    net, x = small.module, _input(CI_SIZE)
    with torch.no_grad():
        _, scores, keep = net.decode([iou_aware(m, 3, 0.4) for m in net.head(x)], CI_SIZE)
    assert int(((scores * keep.unsqueeze(1)) > 0.01).sum()) > 300


def _input(size):
    from parity.preprocess import preprocess
    pre = dataclasses.replace(registry.get("PPYOLO").preprocess, size=size)
    return torch.from_numpy(preprocess(sample_photos()[0][1], pre, "mxnet").numpy()[None])


def test_planted_offset_error_fails_at_its_dcn(small):
    """One DCN offset-conv bias off by half a pixel (one kernel point's dy): parity fails at that offset
    conv, the first layer to differ; the stages before it pass."""
    bad = copy.deepcopy(small.module)
    with torch.no_grad():
        bad.backbone.net.layer4[1].conv2.conv_offset.bias[4] += 0.5
    r = verify("PPYOLO", result=dataclasses.replace(small, module=bad), images=sample_photos()[:1], size=CI_SIZE)
    assert not r.passed and r.layers.first_divergent.name == "backbone.net.layer4.1.conv2.conv_offset"
    assert all(d.passed for d in r.layers.diffs if d.name.startswith(("backbone.net.layer1", "backbone.net.layer3")))


def test_fluid_pickle_converts_and_only_its_grid_differs(small, tmp_path):
    """The seeded tensors under PaddleX's static names in one pickle (as ppyolo_2x.pdparams): read as
    "fluid", the same weights, PaddleX 1.x's CoordConv grid. Against ppdet (whose grid is
    i / (2 (W - 1)) - 1) it diverges at the first CoordConv and nowhere before; with ppdet's grid it
    passes."""
    from converters.io.paddle import read_pdparams
    table = ppcls._FLUID_NAMES["PPYOLO"]()
    dy = read_pdparams(small.source)
    path = tmp_path / "ppyolo_2x.pdparams"
    path.write_bytes(pickle.dumps({table[k]: v for k, v in dy.items()}, protocol=4))  # as fluid.save writes it
    fluid = converters.convert("PPYOLO", weights=path)
    assert fluid.layout == "fluid" and fluid.module.numerics == "paddlex"
    assert all(torch.equal(fluid.state_dict[k], small.state_dict[k]) for k in small.state_dict)
    r = verify("PPYOLO", result=fluid, images=sample_photos()[:1], size=CI_SIZE)
    assert not r.passed and r.layers.first_divergent.name == "yolo_blocks.0.body.0.conv"
    assert all(d.passed for d in r.layers.diffs if d.name.startswith("backbone."))
    fluid.module.set_numerics("ppdet")
    r = verify("PPYOLO", result=fluid, images=sample_photos()[:1], size=CI_SIZE)
    assert r.passed and r.source["layout"] == "fluid"


V2_SIZE = (160, 160)


def test_ppyolov2_small_input_passes_parity(tmp_path):
    """PP-YOLOv2 from a ppdet net seeded and calibrated at 160x160: all 214 layer pairs (Mish units,
    CSP blocks, both PAN paths) within tolerance, 100 identical detections."""
    from converters.paddle import seeded
    spec = dataclasses.replace(registry.get("PPYOLOv2"), seed_size=V2_SIZE)
    result = converters.convert("PPYOLOv2", weights=seeded.build(spec, 0, tmp_path / "PPYOLOv2-seed0.pdparams"))
    r = verify("PPYOLOv2", result=result, images=sample_photos()[:1], size=V2_SIZE)
    assert r.passed, r.layers.first_divergent or r.detections
    assert len(r.layers.diffs) == 214 and {"neck.pan_blocks.0.conv3.conv", "neck.fpn_blocks.0.body.3.conv.conv"} <= {
        d.name for d in r.layers.diffs}
    assert r.detections.reference == r.detections.identical == 100
