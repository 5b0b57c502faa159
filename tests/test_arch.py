"""Target architectures: ResNet layout details and the SSD numerics (anchors, decoding, output)."""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from converters.arch.resnet import ResNet
from converters.arch.ssd import SSD, AnchorGenerator, BoxDecoder, PerClassDecoder, anchor_grid
from converters.gluon.resnet import V1_50
from converters.gluon.ssd import SSD512_R50

# ------------------------------------------------------------------------------------------ ResNet


@pytest.fixture(scope="module")
def resnet() -> ResNet:
    torch.manual_seed(0)
    return ResNet(V1_50).eval()


def test_stride_on_the_1x1_conv_when_stride_in_1x1(resnet):
    for i, stage in enumerate(resnet.stages):
        first = stage[0]
        s = (2, 2) if i > 0 else (1, 1)
        assert (first.conv1.stride, first.conv2.stride, first.conv3.stride) == (s, (1, 1), (1, 1))
        assert first.downsample[0].stride == s
        assert all(b.conv1.stride == b.conv2.stride == (1, 1) and b.downsample is None for b in stage[1:])
    assert resnet.layer2[0].conv1.stride == (2, 2) and resnet.layer2[0].conv2.stride == (1, 1)


def test_stride_on_the_3x3_conv_otherwise():
    net = ResNet(dataclasses.replace(V1_50, stride_in_1x1=False))
    assert net.layer2[0].conv1.stride == (1, 1) and net.layer2[0].conv2.stride == (2, 2)
    assert net.layer4[0].conv1.stride == (1, 1) and net.layer4[0].conv2.stride == (2, 2)
    assert net.layer1[0].conv2.stride == (1, 1)


@pytest.mark.parametrize("bias_1x1", [True, False])
def test_bias_only_on_1x1_body_convs(bias_1x1):
    net = ResNet(dataclasses.replace(V1_50, bias_1x1=bias_1x1))
    assert net.conv1.bias is None
    for stage in net.stages:
        for block in stage:
            assert (block.conv1.bias is not None) == bias_1x1
            assert (block.conv3.bias is not None) == bias_1x1
            assert block.conv2.bias is None
            if block.downsample is not None:
                assert block.downsample[0].bias is None
    n_bias = sum(k.endswith("bias") and ".conv" in k for k in net.state_dict())
    assert n_bias == (2 * sum(V1_50.layers) if bias_1x1 else 0)


def test_resnet_shapes_and_eps(resnet):
    assert resnet.layer1[0].downsample is not None  # 64 -> 256 needs a projection at stride 1
    assert resnet.layer1[0].downsample[0].stride == (1, 1)
    assert resnet.fc.weight.shape == (1000, 2048)
    assert all(m.eps == 1e-5 for m in resnet.modules() if isinstance(m, torch.nn.BatchNorm2d))
    with torch.no_grad():
        out = resnet(torch.randn(2, 3, 224, 224))
    assert out.shape == (2, 1000) and torch.isfinite(out).all()


# ------------------------------------------------------------------------------------- SSD anchors


def reference_anchors(h: int, w: int, sizes, ratios, step) -> np.ndarray:
    s0, s1 = sizes
    rows = []
    for i in range(h):
        for j in range(w):
            cy, cx = (i + 0.5) * step, (j + 0.5) * step
            rows.append((cx, cy, s0, s0))
            m = math.sqrt(s0 * s1)
            rows.append((cx, cy, m, m))
            for r in ratios[1:]:
                rows.append((cx, cy, s0 * math.sqrt(r), s0 / math.sqrt(r)))
    return np.array(rows, dtype=np.float64).astype(np.float32)


LEVELS = [(tuple(SSD512_R50.sizes[i:i + 2]), SSD512_R50.ratios[i], SSD512_R50.steps[i])
          for i in range(len(SSD512_R50.steps))]
MAPS_512 = (32, 16, 8, 4, 2, 1)


@pytest.mark.parametrize("level", range(len(LEVELS)))
def test_anchor_grid_equals_reference_exactly(level):
    sizes, ratios, step = LEVELS[level]
    n = MAPS_512[level]
    got = anchor_grid(n, n, sizes, ratios, step)
    want = reference_anchors(n, n, sizes, ratios, step)
    assert got.dtype == np.float32 and got.shape == want.shape == (n * n * (len(ratios) + 1), 4)
    assert np.array_equal(got, want)


def test_anchor_grid_non_square_is_row_major():
    sizes, ratios, step = LEVELS[1]
    got = anchor_grid(3, 5, sizes, ratios, step)
    assert np.array_equal(got, reference_anchors(3, 5, sizes, ratios, step))
    a = len(ratios) + 1
    assert got[a, 0] == 1.5 * step and got[a, 1] == 0.5 * step  # second cell: next column, same row


def test_anchor_output_is_not_shared_with_the_cache():
    sizes, ratios, step = LEVELS[5]
    gen = AnchorGenerator(sizes, ratios, step)
    feat = torch.zeros(1, 1, 7, 9)  # a map size no other test uses
    try:
        gen(feat).mul_(0)
        assert np.array_equal(gen(feat)[0].numpy(), reference_anchors(7, 9, sizes, ratios, step))
    finally:
        anchor_grid.cache_clear()  # do not leave corrupted anchors behind for other tests


# ------------------------------------------------------------------------------------ decoders


def numpy_box_decode(rel: np.ndarray, anchors: np.ndarray, stds) -> np.ndarray:
    ax, ay, aw, ah = (anchors[..., k] for k in range(4))
    ox = rel[..., 0] * np.float32(stds[0]) * aw + ax
    oy = rel[..., 1] * np.float32(stds[1]) * ah + ay
    hw = np.exp(rel[..., 2] * np.float32(stds[2])) * aw / np.float32(2)
    hh = np.exp(rel[..., 3] * np.float32(stds[3])) * ah / np.float32(2)
    return np.stack([ox - hw, oy - hh, ox + hw, oy + hh], -1)


def test_box_decoder_matches_numpy():
    rng = np.random.default_rng(0)
    anchors = reference_anchors(4, 4, *LEVELS[3])[None]  # (1, N, 4)
    rel = rng.standard_normal((2,) + anchors.shape[1:]).astype(np.float32)
    got = BoxDecoder(SSD512_R50.stds)(torch.from_numpy(rel), torch.from_numpy(anchors)).numpy()
    want = numpy_box_decode(rel, anchors, SSD512_R50.stds)
    assert got.shape == (2, anchors.shape[1], 4)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-4)


def test_box_decoder_zero_offsets_give_the_anchor_corners():
    anchors = torch.tensor([[[100.0, 50.0, 40.0, 20.0]]])
    got = BoxDecoder((0.1, 0.1, 0.2, 0.2))(torch.zeros(1, 1, 4), anchors)
    assert got.tolist() == [[[80.0, 40.0, 120.0, 60.0]]]


def test_per_class_decoder_threshold_is_strict():
    probs = torch.tensor([[[0.25, 0.25, 0.3, 0.2], [0.0, 0.5, 0.25, 0.25]]])  # background first
    ids, scores = PerClassDecoder(0.25)(probs)
    assert ids.tolist() == [[[-1.0, 1.0, -1.0], [0.0, -1.0, -1.0]]]
    assert scores.tolist() == [[[0.0, pytest.approx(0.3), 0.0], [0.5, 0.0, 0.0]]]
    assert ids.dtype == probs.dtype


# ---------------------------------------------------------------------------------------- SSD


@pytest.fixture(scope="module")
def ssd() -> SSD:
    torch.manual_seed(0)
    return SSD(SSD512_R50).eval()


def _check_rows(ids, scores, boxes):
    n = SSD512_R50.post_nms
    assert ids.shape == (1, n, 1) and scores.shape == (1, n, 1) and boxes.shape == (1, n, 4)
    pad = ids[0, :, 0] == -1
    rows = torch.cat([ids, scores, boxes], -1)[0]
    assert (rows[pad] == -1).all(), "padding rows must be -1 in every column"
    valid = rows[~pad]
    assert ((valid[:, 0] >= 0) & (valid[:, 0] < SSD512_R50.num_classes)).all()
    assert (valid[:, 0] == valid[:, 0].round()).all() and (valid[:, 1] > SSD512_R50.score_thresh).all()
    assert (valid[1:, 1] <= valid[:-1, 1]).all(), "kept rows are in descending score order"
    assert not pad[: len(valid)].any(), "padding only after the kept rows"
    return rows, pad


def _forward_with_anchors(net: SSD, x: torch.Tensor):
    """One real forward; the anchor generators' outputs and input shapes are captured by hooks."""
    seen = []
    hooks = [g.register_forward_hook(lambda m, i, o: seen.append((tuple(i[0].shape[2:]), o.clone())))
             for g in net.anchor_generators]
    try:
        with torch.no_grad():
            out = net(x)
    finally:
        for h in hooks:
            h.remove()
    return out, seen


@pytest.mark.parametrize("shape,maps", [
    ((512, 512), [(n, n) for n in MAPS_512]),
    ((384, 512), [(24, 32), (12, 16), (6, 8), (3, 4), (2, 2), (1, 1)]),
], ids=["512x512", "384x512"])
def test_ssd_forward(ssd, shape, maps):
    (ids, scores, boxes), seen = _forward_with_anchors(ssd, torch.randn(1, 3, *shape))
    _check_rows(ids, scores, boxes)
    assert [m for m, _ in seen] == maps
    for (h, w), (_, anchors), level in zip(maps, seen, LEVELS):
        assert np.array_equal(anchors[0].numpy(), reference_anchors(h, w, *level))


def test_ssd_heads_set_by_hand():
    """Zeroed heads with a background logit of 20 everywhere -> only padding rows. Then anchor 0
    of the last (1x1) level says class 5 with zero offsets -> exactly one detection: that anchor's
    corners (the last level's anchor is centred at 256 whatever the input size)."""
    torch.manual_seed(0)
    net = SSD(SSD512_R50).eval()
    c = SSD512_R50.num_classes + 1
    x = torch.randn(1, 3, 64, 64)  # small input: 4x4, 2x2 and four 1x1 maps
    with torch.no_grad():
        for p in [*net.class_predictors, *net.box_predictors]:
            p.weight.zero_()
            p.bias.zero_()
        for p in net.class_predictors:
            p.bias.view(-1, c)[:, 0] = 20.0  # channel a*(C+1)+0: background logit of anchor a
        ids, scores, boxes = net(x)
        _, pad = _check_rows(ids, scores, boxes)
        assert pad.all()
        last = net.class_predictors[-1].bias.view(-1, c)
        last[0, 0], last[0, 1 + 5] = 0.0, 20.0
        ids, scores, boxes = net(x)
    rows, pad = _check_rows(ids, scores, boxes)
    assert pad.sum() == SSD512_R50.post_nms - 1
    assert rows[0, 0] == 5 and rows[0, 1] == pytest.approx(1.0, abs=1e-6)
    half = SSD512_R50.sizes[-2] / 2
    assert rows[0, 2:].tolist() == pytest.approx([256 - half, 256 - half, 256 + half, 256 + half], abs=1e-3)
