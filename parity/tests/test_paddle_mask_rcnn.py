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


def test_eval_masks_equal_ppdet_s_get_pred_and_mask_post_process():
    """`zooport eval`'s mapping (parity.predict.detect, preset ppdet) of rows and 28x28 probabilities
    to original-image boxes and RLEs equals ppdet's BBoxPostProcess.get_pred + MaskPostProcess run
    by paddle, box for box and pixel for pixel, at random resize factors (boxes past the image edge,
    clipped to nothing, dropped by both)."""
    from pycocotools import mask as mask_util

    from converters.frameworks import import_paddle
    from converters.paddle.rcnn import _concat_0d
    from parity.predict import detect
    paddle = import_paddle()
    from ppdet.modeling.post_process import BBoxPostProcess, MaskPostProcess
    rng = np.random.default_rng(0)
    rows = pixels = 0
    for oh, ow, s in ((300, 451, 1.32), (427, 640, 0.9), (212, 187, 1.77)):
        ih, iw = round(oh * s), round(ow * s)
        sx, sy = iw / ow, ih / oh  # ppdet's scale_factor [y, x], kept as float32 by paddle
        k = 24
        xy = rng.uniform(-20, [iw + 10, ih + 10], (k, 2))
        boxes = np.concatenate([xy, xy + rng.uniform(0, 250, (k, 2))], 1).astype(np.float32)
        boxes[0] = [iw + 2, 10, iw + 40, 50]  # beyond the right edge: empty once clipped
        ids, scores = rng.integers(0, 80, k).astype(np.float32), rng.uniform(0.05, 1, k).astype(np.float32)
        probs = rng.uniform(0, 1, (k, 28, 28)).astype(np.float32)
        post = BBoxPostProcess(num_classes=80, decode=None, nms=None)
        with _concat_0d(paddle):
            _, ref, num = post.get_pred(paddle.to_tensor(np.concatenate([ids[:, None], scores[:, None], boxes], 1)),
                                        paddle.to_tensor([k], dtype="int32"),
                                        paddle.to_tensor([[ih, iw]], dtype="float32"),
                                        paddle.to_tensor([[sy, sx]], dtype="float32"))
            ref_masks = MaskPostProcess(binary_thresh=0.5)(paddle.to_tensor(probs), ref, num,
                                                           post.get_origin_shape()).numpy()
        ref = ref.numpy()
        keep = ref[:, 0] >= 0
        assert not keep[0]
        got = detect((ids[None, :, None], scores[None, :, None], boxes[None], probs[None]), "ppdet", (ih, iw),
                     (oh, ow), (sx, sy))
        assert got["labels"].tolist() == ref[keep, 0].astype(int).tolist()
        assert np.array_equal(got["boxes"], ref[keep, 2:].astype(np.float64))
        mine = np.stack([mask_util.decode(r) for r in got["masks"]])
        assert np.array_equal(mine, ref_masks[keep][:, :oh, :ow])
        rows, pixels = rows + int(keep.sum()), pixels + mine.size
    assert rows > 60 and pixels > 5_000_000
