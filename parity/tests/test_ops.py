"""Our SSD numerics against MXNet's own operators, on the same inputs."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from converters.arch.nms import box_nms
from converters.arch.ssd import BoxDecoder, anchor_grid
from converters.gluon.ssd import SSD512_R50

pytestmark = pytest.mark.oracle


@pytest.fixture(scope="module")
def mx():
    from converters.frameworks import import_mxnet
    return import_mxnet()


def _random_rows(rng, n: int, ties: bool) -> np.ndarray:
    ids = rng.integers(-1, 4, n).astype(np.float32)
    scores = rng.random(n).astype(np.float32)
    if ties:
        scores = np.round(scores, 1)  # many exact ties: MXNet's stable order must be reproduced
    xy = rng.random((n, 2)).astype(np.float32) * 100
    wh = rng.random((n, 2)).astype(np.float32) * 50 - (10 if rng.random() < 0.2 else 0)  # some inverted
    return np.concatenate([ids[:, None], scores[:, None], xy, xy + wh], 1)


def test_box_nms_equals_mxnet_box_nms(mx):
    rng = np.random.default_rng(0)
    for trial in range(300):
        data = np.stack([_random_rows(rng, int(rng.integers(1, 200)), trial % 3 == 0) for _ in range(1)])
        kw = dict(overlap_thresh=float(rng.choice([0.3, 0.45, 0.7])), valid_thresh=float(rng.choice([0, 0.01, 0.2])),
                  topk=int(rng.choice([-1, 0, 5, 50, 400])), id_index=0, score_index=1, coord_start=2,
                  force_suppress=bool(trial % 2))
        ref = mx.nd.contrib.box_nms(mx.nd.array(data), **kw).asnumpy()
        got = box_nms(torch.from_numpy(data), **kw).numpy()
        assert np.array_equal(ref, got), (trial, kw)


def test_box_nms_batched_equals_mxnet(mx):
    rng = np.random.default_rng(1)
    data = np.stack([_random_rows(rng, 120, b % 2 == 0) for b in range(4)])
    kw = dict(overlap_thresh=0.45, valid_thresh=0.01, topk=60, id_index=0, score_index=1, coord_start=2)
    assert np.array_equal(mx.nd.contrib.box_nms(mx.nd.array(data), **kw).asnumpy(),
                          box_nms(torch.from_numpy(data), **kw).numpy())


def test_box_decoder_equals_mxnet_box_decode(mx):
    rng = np.random.default_rng(2)
    anchors = np.concatenate([rng.random((1, 500, 2)) * 512, rng.random((1, 500, 2)) * 200 + 1], -1).astype(np.float32)
    rel = (rng.standard_normal((2, 500, 4)) * 2).astype(np.float32)
    ref = mx.nd.contrib.box_decode(mx.nd.array(rel), mx.nd.array(anchors), 0.1, 0.1, 0.2, 0.2,
                                   clip=-1, format="center").asnumpy()
    got = BoxDecoder((0.1, 0.1, 0.2, 0.2))(torch.from_numpy(rel), torch.from_numpy(anchors)).numpy()
    np.testing.assert_allclose(got, ref, rtol=2e-7, atol=1e-5)  # exp may differ by an ulp


def test_anchors_equal_gluoncv_anchor_generators():
    """Our anchors for every SSD-512 level, at square and non-square inputs, equal the constants
    gluoncv builds (its anchor map, sliced to the feature map as its forward does)."""
    from converters.frameworks import import_gluoncv
    gcv = import_gluoncv()
    net = gcv.model_zoo.get_model("ssd_512_resnet50_v1_voc", pretrained=False, pretrained_base=False)
    net.initialize()
    cfg = SSD512_R50
    for level, gen in enumerate(net.anchor_generators):
        full = gen.anchors.data().asnumpy()  # (1, 1, alloc, alloc, 4A)
        for h, w in ((32 >> level or 1, 32 >> level or 1), (3, 5)):
            h, w = min(h, full.shape[2]), min(w, full.shape[3])
            theirs = full[0, 0, :h, :w].reshape(-1, 4)
            ours = anchor_grid(h, w, (cfg.sizes[level], cfg.sizes[level + 1]), cfg.ratios[level], cfg.steps[level])
            assert np.array_equal(theirs, ours), (level, h, w)


def test_ignored_checkpoint_anchors_equal_regenerated(converted):
    """The anchor constants the mapping ignores carry nothing we do not regenerate exactly."""
    from converters.io.mxnet_params import read_params
    result = converted("ssd_512_resnet50_v1_voc")
    stored = read_params(result.source)
    cfg = SSD512_R50
    for level in range(len(cfg.steps)):
        full = stored[f"anchor_generators.{level}.anchors"]
        a = full.shape[2]
        ours = anchor_grid(a, a, (cfg.sizes[level], cfg.sizes[level + 1]), cfg.ratios[level], cfg.steps[level])
        assert np.array_equal(full[0, 0].reshape(-1, 4), ours), level
