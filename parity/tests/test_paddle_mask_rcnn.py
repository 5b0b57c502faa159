"""PaddleX Mask R-CNN against ppdet's MaskRCNN run by paddle: the family's name table is ppdet's
state dict, the CI model's parity (the registry sweep runs it too: layers, detections, mask
probabilities on replayed boxes, pasted pixels), and a planted error in the mask head that must
fail at the layer it touches while the detections stay identical."""
from __future__ import annotations

import copy
import dataclasses
import importlib.util

import numpy as np
import pytest
import torch

from converters.samples import sample_photos
from parity.verify import verify

pytestmark = [pytest.mark.oracle,
              pytest.mark.skipif(importlib.util.find_spec("paddle") is None, reason="paddle is not installed")]

CI = "MaskRCNN_ResNet18_FPN"


@pytest.mark.parametrize("name,depth,vd,fpn", [
    ("MaskRCNN_ResNet18_FPN", 18, False, True),
    pytest.param("MaskRCNN_ResNet50", 50, False, False, marks=pytest.mark.slow),
    pytest.param("MaskRCNN_ResNet50_FPN", 50, False, True, marks=pytest.mark.slow),
    pytest.param("MaskRCNN_ResNet50_vd_FPN", 50, True, True, marks=pytest.mark.slow),
    pytest.param("MaskRCNN_ResNet101_FPN", 101, False, True, marks=pytest.mark.slow),
    pytest.param("MaskRCNN_ResNet101_vd_FPN", 101, True, True, marks=pytest.mark.slow)])
def test_name_table_is_ppdet_s_state_dict(name, depth, vd, fpn):
    from converters import registry
    from converters.paddle import mask_rcnn
    spec = registry.get(name)
    state = spec.source_net(None).state_dict()
    table = mask_rcnn.fluid_names(mask_rcnn.model_config(depth, vd, fpn).rcnn.backbone, depth, fpn)
    assert sorted(table) == sorted(state)
    target = spec.build().state_dict()
    for key, value in state.items():
        tname = next(r.apply(key) for r in spec.rules["dygraph"] if r.apply(key))
        assert target[tname].numel() == int(np.prod(value.shape)), key


def test_ci_model_parity_is_non_trivial(parity_report):
    """Every layer pair within tolerance, the detections identical, mask probabilities within
    tolerance on every detection, and no pasted pixel flipped away from the threshold."""
    r = parity_report(CI)
    assert r.passed, r.layers.first_divergent or r.detections or r.masks
    assert r.detections.reference > 20 and r.detections.identical == r.detections.reference
    assert r.replayed == ["collect", "mask_rois"]
    m = r.masks
    assert m["rows"] >= r.detections.reference  # rows relabelled -1 (empty boxes) carry masks too
    assert m["prob_max_abs"] <= m["prob_tol"] and m["unexplained"] == 0 and m["pixels"] > 0
    assert any(d.name == "mask_head.logits" for d in r.layers.diffs)


@pytest.mark.slow
def test_c4_parity_is_non_trivial(parity_report):
    """MaskRCNN_ResNet50 (C4: the box head's res5 on the mask RoIs, then the deconv) end to end on
    one photograph at 800/1333, with the reduced test proposals of rcnn.parity_config on both
    sides: the CI model's checks."""
    r = parity_report("MaskRCNN_ResNet50")
    assert r.passed, r.layers.first_divergent or r.detections or r.masks
    assert r.detections.reference > 20 and r.detections.identical == r.detections.reference
    assert r.replayed == ["collect", "mask_rois"]
    m = r.masks
    assert m["rows"] >= r.detections.reference
    assert m["prob_max_abs"] <= m["prob_tol"] and m["unexplained"] == 0 and m["pixels"] > 0
    assert any(d.name == "mask_head.logits" for d in r.layers.diffs)


def test_planted_mask_error_fails_at_the_mask_head(converted):
    result = converted(CI)
    bad = copy.deepcopy(result.module)
    with torch.no_grad():
        bad.mask_head.convs[6].weight[:5] *= 1.01  # mask_inter_feat_4
    r = verify(CI, result=dataclasses.replace(result, module=bad), images=sample_photos()[:1], size=(320, 480))
    assert not r.passed and r.layers.first_divergent.name == "mask_head.convs.6"
    assert r.detections.passed  # the box branch does not see the mask head
