"""PaddleX / PaddleDetection YOLOv3 against paddle itself (the registry sweep in test_models.py runs
the CI model's dygraph parity; the slow ones run in parity-full): Paddle's multiclass_nms and
yolo_box ops against ours, the static name tables against ppdet's net, a planted error, and the
fluid layout on a directory paddle writes."""
from __future__ import annotations

import copy
import dataclasses
import importlib.util

import numpy as np
import pytest
import torch

import converters
from converters import registry
from converters.arch.paddle_nms import multiclass_nms
from converters.arch.paddle_yolo import PaddleYOLOConfig, YOLOBox
from converters.paddle import ppcls
from converters.samples import sample_photos
from parity.preprocess import preprocess
from parity.tests.test_paddle_classification import write_fluid_with_paddle
from parity.verify import verify

pytestmark = [pytest.mark.oracle,
              pytest.mark.skipif(importlib.util.find_spec("paddle") is None, reason="paddle is not installed")]

CI = "YOLOv3_MobileNetV1"
MODELS = [n for n in registry.names() if registry.get(n).family == "paddle.yolov3"]


def _paddle():
    from converters.frameworks import import_paddle
    return import_paddle()


def paddle_nms(boxes, scores, **kw):
    """Paddle's multiclass_nms3 (through ppdet's dygraph wrapper): rows [K, 6] and index [K]."""
    from converters.frameworks import import_ppdet
    paddle = _paddle()
    import_ppdet()
    from ppdet.modeling import ops
    if boxes.ndim == 2:  # 3-D form: one image, batch axis added
        out, _, index = ops.multiclass_nms(paddle.to_tensor(boxes[None]), paddle.to_tensor(scores[None]),
                                           return_index=True, **kw)
    else:
        out, _, index = ops.multiclass_nms(paddle.to_tensor(boxes), paddle.to_tensor(scores), return_index=True,
                                           rois_num=paddle.to_tensor([len(boxes)], dtype="int32"), **kw)
    out, index = out.numpy(), index.numpy().reshape(-1)
    return (out, index) if out.shape[-1] == 6 else (out[:0].reshape(0, 6), index[:0])  # [1, 1] "-1": none


# ----------------------------------------------------------------------------- multiclass_nms

def _case(seed: int, two_d: bool, quantised: bool):
    rng = np.random.default_rng(seed)
    m, c = 150, 4
    xy = rng.uniform(0, 100, (m, c, 2))
    wh = rng.uniform(-3, 40, (m, c, 2))  # a few inverted boxes
    boxes, scores = np.concatenate([xy, xy + wh], -1), rng.uniform(0, 1, (m, c))
    if quantised:  # integer corners and quarter scores: ties and touching edges everywhere
        boxes, scores = np.round(boxes), np.round(scores * 4) / 4
    boxes, scores = boxes.astype(np.float32), scores.astype(np.float32)
    return (boxes, scores) if two_d else (boxes[:, 0], np.ascontiguousarray(scores.T))


NMS_SETTINGS = [
    dict(score_threshold=0.01, nms_top_k=1000, keep_top_k=100, nms_threshold=0.45),  # YOLOv3's
    dict(score_threshold=0.05, nms_top_k=-1, keep_top_k=100, nms_threshold=0.5, background_label=0),  # R-CNN's
    dict(score_threshold=0.25, nms_top_k=10, keep_top_k=7, nms_threshold=0.3),  # cuts at both ends
    dict(score_threshold=0.5, nms_top_k=-1, keep_top_k=-1, nms_threshold=0.7, nms_eta=0.9),  # adaptive
]


@pytest.mark.parametrize("normalized", [True, False])
@pytest.mark.parametrize("two_d", [False, True])
@pytest.mark.parametrize("quantised", [False, True])
@pytest.mark.parametrize("setting", range(len(NMS_SETTINGS)))
def test_multiclass_nms_equals_paddle_s(normalized, two_d, quantised, setting):
    boxes, scores = _case(setting, two_d, quantised)
    kw = dict(NMS_SETTINGS[setting], normalized=normalized)
    rows, index = multiclass_nms(boxes, scores, **kw)
    want, want_index = paddle_nms(boxes, scores, **kw)
    assert len(want) > 0
    assert np.array_equal(rows.numpy(), want) and np.array_equal(index.numpy(), want_index)


# ----------------------------------------------------------------------------------- yolo_box

@pytest.mark.parametrize("scale,clip,conf", [(1.0, True, 0.005), (1.05, True, 0.01), (1.05, False, 0.3)])
def test_yolo_box_equals_paddle_s(scale, clip, conf):
    """paddle.vision.ops.yolo_box per output, img_size (h, w) unlike the input's (per-axis rescale).
    Not bit for bit: the kernel's sigmoid is 1 / (1 + exp(-x)) in double, torch's in float32."""
    paddle = _paddle()
    dec = YOLOBox(PaddleYOLOConfig(backbone=None, cuts=(0, 0, 0), num_classes=5, scale_x_y=scale, clip_bbox=clip), conf)
    rng = np.random.default_rng(0)
    img = np.int32([[300, 200]])
    for i, grid in enumerate((3, 6, 12)):
        x = (rng.standard_normal((1, 3 * 10, grid, grid + 2)) * 3).astype(np.float32)
        anchors = [v for a in dec.anchors[i] for v in a]
        want_boxes, want_scores = paddle.vision.ops.yolo_box(
            paddle.to_tensor(x), paddle.to_tensor(img), anchors, 5, conf, 32 // 2 ** i, clip_bbox=clip, scale_x_y=scale)
        boxes, scores, keep = dec.level(torch.from_numpy(x), dec.anchors[i], 32 // 2 ** i, 300, 200)
        boxes = torch.where(keep.unsqueeze(-1), boxes, 0)[0].numpy()
        scores = torch.where(keep.unsqueeze(1), scores, 0)[0].numpy().T
        assert 0 < keep.sum() < keep.numel()
        assert np.array_equal(~keep[0].numpy(), (want_scores.numpy()[0] == 0).all(-1))  # the same boxes dropped
        np.testing.assert_allclose(boxes, want_boxes.numpy()[0], rtol=2e-6, atol=1e-4)
        np.testing.assert_allclose(scores, want_scores.numpy()[0], rtol=2e-6, atol=1e-7)


# --------------------------------------------------------------------------------- the nets

@pytest.mark.parametrize("name", MODELS)
def test_static_names_fit_ppdet_s_net(name):
    """The family's static table covers ppdet's YOLOv3 state dict one to one (the oracle's map)."""
    net = registry.get(name).source_net(None)
    names = ppcls.static_names(name, net)
    assert sorted(names.values()) == sorted(net.state_dict()) and len(names) == len(net.state_dict())


def test_ci_model_detects_and_suppresses(parity_report, converted):
    """The sweep's report for the CI model: identical detections on photographs, several per image;
    and the seeded net gives NMS real work: many more candidates than detections, scores spread (a
    net whose scores all tie would prove little)."""
    report = parity_report(CI)
    assert report.passed, report.layers.first_divergent or report.detections
    d = report.detections
    assert d.reference == d.identical and d.reference >= 10 * len(report.images)
    assert report.detection_tol["box"] < 1.0 and report.detection_tol["score"] < 1e-3
    net = converted(CI).module
    x = torch.from_numpy(preprocess(sample_photos()[0][1], registry.get(CI).preprocess, "mxnet").numpy()[None])
    with torch.no_grad():
        _, scores, keep = net.decode(net.head(x), tuple(x.shape[-2:]))
        ids, kept, _ = net(x)
    valid = kept[0, :, 0][ids[0, :, 0] >= 0]
    assert int(((scores * keep.unsqueeze(1)) > 0.01).sum()) > 10 * len(valid)
    assert len(torch.unique(valid)) > 0.9 * len(valid) and float(valid.max() - valid.min()) > 0.05


def test_planted_error_fails_at_its_layer(converted):
    """One BN scale off in the middle of the neck: parity fails exactly there, the layers before pass."""
    result = converted(CI)
    bad = copy.deepcopy(result.module)
    with torch.no_grad():
        bad.yolo_blocks[1].body[2].bn.weight[3] += 0.5
    r = verify(CI, result=dataclasses.replace(result, module=bad), images=sample_photos()[:1])
    assert not r.passed and r.layers.first_divergent.name == "yolo_blocks.1.body.2.bn"
    assert all(d.passed for d in r.layers.diffs if d.name.startswith("backbone."))


def test_fluid_layout_converts_to_the_same_weights_and_passes(converted, tmp_path):
    """Paddle's save_vars writes the PaddleX static names (one file per variable); the directory
    converts to the dygraph conversion's weights bit for bit, with PaddleX 1.x numerics recorded;
    switched to ppdet's numerics, it passes verify against ppdet loading that directory."""
    ref = converted(CI)
    net = ref.spec.source_net(None)
    table = {key: static for static, key in ppcls.static_names(CI, net).items()}
    d = write_fluid_with_paddle(ref.source, table, tmp_path / "yolov3_mobilenet_v1")
    assert sorted(p.name for p in d.iterdir()) == sorted(table.values())
    fluid = converters.convert(CI, weights=d)
    assert fluid.layout == "fluid" and fluid.module.numerics == "paddlex"
    assert fluid.state_dict.keys() == ref.state_dict.keys()
    assert all(torch.equal(fluid.state_dict[k], ref.state_dict[k]) for k in ref.state_dict)
    fluid.module.set_numerics("ppdet")  # the oracle is ppdet's dygraph net
    report = verify(CI, result=fluid, images=sample_photos()[:1])
    assert report.passed and report.source["layout"] == "fluid"
