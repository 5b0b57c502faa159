"""PaddleX MaskRCNN_HRNet_W18_FPN against PaddleDetection 2.6 itself: the name table is ppdet's
MaskRCNN(HRNet_W18, HRFPN) state dict (built with the spec's own oracle builder); slow: the whole
detector on a photograph at 384x640, RoIs and mask boxes replayed, layer pairs within tolerance,
detections identical and mask probabilities / pasted pixels as the ResNet Mask R-CNNs' check."""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from converters import registry
from converters.paddle import hrnet_mask_rcnn, ppcls
from converters.samples import sample_photos
from parity.verify import verify

pytestmark = [pytest.mark.oracle,
              pytest.mark.skipif(importlib.util.find_spec("paddle") is None, reason="paddle is not installed")]

NAME = "MaskRCNN_HRNet_W18_FPN"


def test_name_table_is_ppdet_s_state_dict():
    spec = registry.get(NAME)
    net = spec.source_net(None)
    state = net.state_dict()
    table = {s: t for s, t, _ in hrnet_mask_rcnn.dygraph()}
    assert sorted(table) == sorted(state)
    assert sorted(ppcls.static_names(NAME, net).values()) == sorted(state)  # static table, 1:1
    target = spec.build().state_dict()
    for key, value in state.items():
        assert target[table[key]].numel() == int(np.prod(value.shape)), key


@pytest.mark.slow
def test_parity_on_a_photograph(converted):
    """Seeded weights, one photograph at 384x640 (the seeding size; 800x1333 is ~4x the cost)."""
    r = verify(NAME, result=converted(NAME), images=sample_photos()[:1], size=(384, 640))
    assert r.passed, r.layers.first_divergent or r.detections or r.masks
    assert r.detections.reference > 20 and r.detections.identical == r.detections.reference
    assert r.replayed == ["collect", "mask_rois"]
    m = r.masks
    assert m["rows"] >= r.detections.reference and m["pixels"] > 0
    assert m["prob_max_abs"] <= m["prob_tol"] and m["unexplained"] == 0
    assert any(d.name == "mask_head.logits" for d in r.layers.diffs)
