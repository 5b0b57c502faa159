"""PaddleX Faster R-CNN against paddle itself: each proposal / RoI op of both numerics against
Paddle's own op (generate_proposals, distribute_fpn_proposals, roi_align aligned True/False,
anchor_generator, ppdet's AnchorGenerator, box_coder), the CI model's parity (the registry sweep runs
it too), and a planted error that must fail at the layer it touches; slow: the same for a C4 net."""
from __future__ import annotations

import copy
import dataclasses
import importlib.util

import numpy as np
import pytest
import torch

from converters.arch import paddle_rcnn as arch
from converters.arch import paddle_rcnn_ops as ops
from converters.samples import sample_photos
from parity.verify import verify

pytestmark = [pytest.mark.oracle,
              pytest.mark.skipif(importlib.util.find_spec("paddle") is None, reason="paddle is not installed")]

CI = "FasterRCNN_ResNet18_FPN"
C4 = "FasterRCNN_ResNet50_vd"  # C4 (parity-full): RPN on res4, res5 per RoI; vd: its Res5Head is variant "b"


@pytest.fixture(scope="module")
def paddle():
    from converters.frameworks import import_paddle
    return import_paddle()


@pytest.mark.parametrize("name,depth,vd,fpn", [
    ("FasterRCNN_ResNet18_FPN", 18, False, True), ("FasterRCNN_ResNet50_FPN", 50, False, True),
    ("FasterRCNN_ResNet50_vd_FPN", 50, True, True), ("FasterRCNN_ResNet101_FPN", 101, False, True),
    ("FasterRCNN_ResNet101_vd_FPN", 101, True, True), ("FasterRCNN_ResNet50", 50, False, False),
    ("FasterRCNN_ResNet101", 101, False, False), ("FasterRCNN_ResNet50_vd", 50, True, False)])
def test_name_table_is_ppdet_s_state_dict(name, depth, vd, fpn):
    """The family's table names exactly ppdet's FasterRCNN state dict (built with the spec's own
    source_net), and the dygraph rules put every tensor on a target tensor of the same size."""
    from converters import registry
    from converters.paddle import rcnn
    spec = registry.get(name)
    state = spec.source_net(None).state_dict()
    table = rcnn.fluid_names(rcnn.model_config(depth, vd, fpn).backbone, depth, fpn)
    assert sorted(table) == sorted(state)
    target = spec.build().state_dict()
    for key, value in state.items():
        tname = next(r.apply(key) for r in spec.rules["dygraph"] if r.apply(key))
        assert target[tname].numel() == int(np.prod(value.shape)), key


def _rpn_inputs(seed: int = 0, A: int = 3, H: int = 20, W: int = 24):
    rng = np.random.default_rng(seed)
    scores = rng.standard_normal((A, H, W)).astype(np.float32)
    deltas = (rng.standard_normal((4 * A, H, W)) * 0.7).astype(np.float32)
    return scores, deltas


@pytest.mark.parametrize("pixel_offset", [False, True])
def test_generate_proposals_is_paddle_s(paddle, pixel_offset):
    scores, deltas = _rpn_inputs()
    A, H, W = scores.shape
    anchors = ops.ppdet_anchors((32,), (0.5, 1.0, 2.0), 8, H, W)
    want_r, want_s, _ = paddle.vision.ops.generate_proposals(
        paddle.to_tensor(scores[None]), paddle.to_tensor(deltas[None]), paddle.to_tensor([[160.0, 192.0]]),
        paddle.to_tensor(anchors.numpy()), paddle.ones([H * W * A, 4]), pre_nms_top_n=300, post_nms_top_n=100,
        nms_thresh=0.7, min_size=0.0, pixel_offset=pixel_offset, return_rois_num=True)
    got_r, got_s = ops.generate_proposals(torch.from_numpy(scores), torch.from_numpy(deltas), anchors, (160, 192),
                                          300, 100, 0.7, 0.0, pixel_offset)
    assert got_r.shape == tuple(want_r.shape) and np.array_equal(got_s.numpy(), want_s.numpy()[:, 0])
    assert np.abs(got_r.numpy() - want_r.numpy()).max() < 1e-4  # same float32 formula, maybe other rounding


@pytest.mark.parametrize("pixel_offset,eps", [(False, 1e-6), (True, 1e-6)])
def test_fpn_levels_are_distribute_fpn_proposals(paddle, pixel_offset, eps):
    rng = np.random.default_rng(3)
    xy = rng.uniform(0, 600, (400, 2)).astype(np.float32)
    wh = np.exp(rng.uniform(0, 6.5, (400, 2))).astype(np.float32)
    rois = np.concatenate([xy, xy + wh], 1)
    rois[:4] = [[0, 0, 223, 223], [0, 0, 224, 224], [0, 0, 111, 111], [0, 0, 447, 447]]  # boundaries
    multi, restore, _ = paddle.vision.ops.distribute_fpn_proposals(
        paddle.to_tensor(rois), 2, 5, 4, 224, pixel_offset=pixel_offset, rois_num=paddle.to_tensor([400], "int32"))
    shuffled = np.concatenate([np.full(len(m), 2 + k) for k, m in enumerate(multi)])
    want = shuffled[restore.numpy().reshape(-1)]
    assert ops.fpn_levels(torch.from_numpy(rois), 2, 5, pixel_offset, eps).tolist() == want.tolist()


@pytest.mark.parametrize("aligned,ratio", [(True, 0), (False, 2), (False, 0)])
def test_roi_align_is_paddle_s(paddle, aligned, ratio):
    rng = np.random.default_rng(4)
    feat = rng.standard_normal((1, 4, 25, 30)).astype(np.float32)
    xy = rng.uniform(-10, 200, (50, 2)).astype(np.float32)
    rois = np.concatenate([xy, xy + rng.uniform(0.2, 120, (50, 2)).astype(np.float32)], 1)
    want = paddle.vision.ops.roi_align(paddle.to_tensor(feat), paddle.to_tensor(rois), paddle.to_tensor([50], "int32"),
                                       7, spatial_scale=1 / 8, sampling_ratio=ratio, aligned=aligned).numpy()
    got = ops.multilevel_roi_align([torch.zeros(1, 4, 1, 1), torch.from_numpy(feat)], torch.from_numpy(rois),
                                   torch.full((50,), 3), 2, 7, ratio, aligned).numpy()
    assert np.abs(got - want).max() < 1e-5


def test_static_anchors_are_anchor_generator(paddle):
    for level in range(5):
        stride, size = 2.0 ** (level + 2), 32.0 * 2 ** level
        x = paddle.zeros([1, 8, 5, 7])
        want, _ = paddle._legacy_C_ops.anchor_generator(
            x, "anchor_sizes", [size], "aspect_ratios", [0.5, 1.0, 2.0], "variances", [1.0, 1.0, 1.0, 1.0],
            "stride", [stride, stride], "offset", 0.5)
        got = ops.static_anchors((size,), (0.5, 1.0, 2.0), stride, 5, 7)
        assert np.abs(got.numpy() - want.numpy().reshape(-1, 4)).max() < 1e-4, level


def test_ppdet_anchors_are_ppdet_s(paddle):
    from converters.frameworks import import_ppdet
    import_ppdet()
    from ppdet.modeling.proposal_generator.anchor_generator import AnchorGenerator
    gen = AnchorGenerator(anchor_sizes=[[32], [64], [128], [256], [512]], aspect_ratios=[0.5, 1.0, 2.0],
                          strides=[4, 8, 16, 32, 64])
    feats = [paddle.zeros([1, 1, 40 >> k, 56 >> k]) for k in range(5)]
    for k, want in enumerate(gen(feats)):
        got = ops.ppdet_anchors((32 * 2 ** k,), (0.5, 1.0, 2.0), 4 * 2 ** k, 40 >> k, 56 >> k)
        assert np.array_equal(got.numpy(), want.numpy()), k


def test_static_decode_is_box_coder(paddle):
    rng = np.random.default_rng(5)
    xy = rng.uniform(0, 300, (30, 2)).astype(np.float32)
    rois = np.concatenate([xy, xy + rng.uniform(1, 200, (30, 2)).astype(np.float32)], 1)
    deltas = rng.standard_normal((30, 81, 4)).astype(np.float32)
    want = paddle.vision.ops.box_coder(paddle.to_tensor(rois), [0.1, 0.1, 0.2, 0.2], paddle.to_tensor(deltas),
                                       code_type="decode_center_size", box_normalized=False, axis=1).numpy()
    got = arch.static_decode(torch.from_numpy(deltas), torch.from_numpy(rois)).numpy()
    assert np.abs(got - want).max() < 1e-3  # pixels; exp of the same float32 input


def test_ci_model_parity_is_non_trivial(parity_report):
    """The sweep's report of the CI model: every layer pair within tolerance and the post-NMS
    detections identical, with detections to compare."""
    r = parity_report(CI)
    assert r.passed, r.layers.first_divergent or r.detections
    assert r.detections.reference > 20 and r.detections.identical == r.detections.reference
    assert r.replayed == ["collect"]


def test_c4_oracle_and_module_read_one_parity_config():
    """C4 parity keeps fewer test proposals: ppdet's RPN (the oracle and the seeding net) and the
    module parity runs take them from one config; the converted model keeps the model's 1000."""
    from converters import registry
    from converters.paddle import rcnn
    spec = registry.get(C4)
    proposal = spec.source_net(None).rpn_head.test_proposal
    module = spec.parity_build()
    assert proposal.post_nms_top_n == module.cfg.post_nms_top_n == module.collect.top_n == rcnn.C4_PARITY_PROPOSALS
    assert proposal.pre_nms_top_n == module.cfg.pre_nms_top_n == 6000
    assert spec.build().cfg.post_nms_top_n == 1000


@pytest.mark.slow
def test_c4_parity_is_non_trivial(parity_report):
    """The C4 net end to end (seeded ppdet FasterRCNN vs ours, one photograph at 800/1333): every
    pair within tolerance, res5 compared on each RoI, the post-NMS detections identical."""
    from converters.paddle import rcnn
    r = parity_report(C4)
    assert r.passed, r.layers.first_divergent or r.detections
    assert r.detections.reference > 20 and r.detections.identical == r.detections.reference
    assert r.replayed == ["collect"]
    res5 = [d for d in r.layers.diffs if d.name.startswith("box_head.res5.")]
    assert len(res5) == 20 and all(d.shape[0] == rcnn.C4_PARITY_PROPOSALS for d in res5)


@pytest.mark.slow
def test_c4_planted_res5_error_fails_at_the_layer_it_touches(converted):
    """A planted error in the C4 box head's res5 survives verify's rebuild into the parity module
    (parity_build) and fails at the layer it touches, the layer before it still passing."""
    result = converted(C4)
    bad = copy.deepcopy(result.module)
    with torch.no_grad():
        bad.box_head.res5[1].conv2.weight[:9] *= 1.01
    r = verify(C4, result=dataclasses.replace(result, module=bad), images=sample_photos()[:1], size=(320, 480))
    assert not r.passed and r.layers.first_divergent.name == "box_head.res5.1.conv2"
    assert next(d for d in r.layers.diffs if d.name == "box_head.res5.1.bn1").passed


def test_planted_error_fails_at_the_layer_it_touches(converted):
    result = converted(CI)
    bad = copy.deepcopy(result.module)
    with torch.no_grad():
        bad.box_head.fc7.weight[:7] *= 1.01
    r = verify(CI, result=dataclasses.replace(result, module=bad), images=sample_photos()[:1], size=(320, 480))
    assert not r.passed and r.layers.first_divergent.name == "box_head.fc7"
    assert next(d for d in r.layers.diffs if d.name == "box_head.fc6").passed


def test_fluid_dir_written_by_paddle_converts_to_the_dygraph_weights(converted, tmp_path):
    """The seeded checkpoint in the static layout (background class moved first, 4 background box
    rows added, as PaddleX 1.x stores them), written by paddle's own save_vars: it converts to the
    dygraph conversion's weights bit for bit, with the target switched to the "paddlex" numerics."""
    from converters import convert
    from converters.paddle import rcnn
    from parity.tests.test_paddle_classification import write_fluid_with_paddle
    result = converted(CI)
    paddle = pytest.importorskip("paddle")
    state = {k: np.asarray(v) for k, v in paddle.load(str(result.source)).items()}
    state["bbox_head.bbox_score.weight"] = np.roll(state["bbox_head.bbox_score.weight"], 1, axis=-1)
    state["bbox_head.bbox_score.bias"] = np.roll(state["bbox_head.bbox_score.bias"], 1, axis=-1)
    for k in ("bbox_head.bbox_delta.weight", "bbox_head.bbox_delta.bias"):
        a = state[k]
        state[k] = np.concatenate([np.full(a.shape[:-1] + (4,), 3.0, np.float32), a], axis=-1)
    src = tmp_path / "static_values.pdparams"
    paddle.save(state, str(src))
    table = rcnn.fluid_names(rcnn.model_config(18, False).backbone, 18)
    fluid = convert(CI, weights=write_fluid_with_paddle(src, table, tmp_path / "faster_rcnn_r18_fpn_1x"))
    assert fluid.layout == "fluid" and fluid.module.numerics == arch.NUMERICS["paddlex"]
    assert fluid.state_dict.keys() == result.state_dict.keys()
    assert all(torch.equal(fluid.state_dict[k], result.state_dict[k]) for k in result.state_dict)
