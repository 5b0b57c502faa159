"""PaddleX Mask R-CNN (converters/paddle/mask_rcnn.py, converters/arch/paddle_mask_rcnn.py), without
paddle: rules of both layouts over every tensor, fluid == dygraph through the readers (with the
static background fix-ups of the box and mask heads), the static names, the mask branch on a
planted detection, and ppdet's mask paste against a numpy implementation of its definition."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from converters import registry
from converters.arch import paddle_mask_rcnn as arch
from converters.arch import paddle_rcnn
from converters.paddle import mask_rcnn
from test_paddle_cls_fixtures import convert_both_layouts

# name: (depth, vd, FPN)
DEPTH = {"MaskRCNN_ResNet18_FPN": (18, False, True), "MaskRCNN_ResNet50": (50, False, False),
         "MaskRCNN_ResNet50_FPN": (50, False, True), "MaskRCNN_ResNet50_vd_FPN": (50, True, True),
         "MaskRCNN_ResNet101_FPN": (101, False, True), "MaskRCNN_ResNet101_vd_FPN": (101, True, True)}
NAMES = sorted(DEPTH)


def table(name: str) -> dict[str, str]:
    depth, vd, fpn = DEPTH[name]
    return mask_rcnn.fluid_names(mask_rcnn.model_config(depth, vd, fpn).rcnn.backbone, depth, fpn)


def test_registered_family():
    specs = [s for s in registry.specs() if s.family == "paddle.mask_rcnn"]
    assert sorted(s.name for s in specs) == NAMES
    assert [s.name for s in specs if not s.slow] == ["MaskRCNN_ResNet18_FPN"]  # one CI-cheap model
    for s in specs:
        assert s.task == "detection" and set(s.rules) == {"dygraph", "fluid"}
        assert s.numerics == {"dygraph": "ppdet", "fluid": "paddlex", "inference": "ppdet"}
        assert s.preprocess.pad_to == (32 if DEPTH[s.name][2] else 0) and s.preprocess.resize == "scale-within"
        assert [m.name for m in s.metrics] == ["mAP", "mask_mAP"]
        assert s.weights().url.endswith(".tar") and "mask_rcnn" in s.weights().url
        assert [t for _, t in s.replay] == ["collect", "mask_rois"]


@pytest.mark.parametrize("name", NAMES)
def test_every_target_tensor_has_one_source_in_both_layouts(name):
    spec = registry.get(name)
    target = {k for k in spec.build().state_dict() if not k.endswith("num_batches_tracked")}
    t = table(name)
    assert len(set(t.values())) == len(t)
    for layout, names in (("dygraph", list(t)), ("fluid", list(t.values()))):
        hits = [next(r.apply(n) for r in spec.rules[layout] if r.apply(n)) for n in names]
        assert sorted(hits) == sorted(target), layout


def test_static_names_follow_paddlex_1x():
    t = table("MaskRCNN_ResNet50_FPN")
    assert t["mask_head.head.upsample.mask_inter_feat_1.weight"] == "mask_inter_feat_1_w"
    assert t["mask_head.head.upsample.mask_inter_feat_4.bias"] == "mask_inter_feat_4_b"
    assert t["mask_head.head.upsample.conv5_mask.weight"] == "conv5_mask_w"
    assert t["mask_head.mask_fcn_logits.bias"] == "mask_fcn_logits_b"
    assert t["bbox_head.head.fc6.weight"] == "fc6_w"
    c4 = table("MaskRCNN_ResNet50")
    assert not any("mask_inter_feat" in k for k in c4) and c4["mask_head.mask_fcn_logits.weight"] == "mask_fcn_logits_w"
    assert c4["bbox_head.head.res5.res5a.branch2a.conv.weight"] == "res5a_branch2a_weights"


def _synthetic(name: str) -> dict[str, np.ndarray]:
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
    """The inverse of the static fix-ups: background class / channel first, background box rows."""
    if key.startswith("bbox_head.bbox_score."):
        return np.roll(a, 1, axis=-1)
    if key.startswith("bbox_head.bbox_delta."):
        return np.concatenate([np.full(a.shape[:-1] + (4,), 7.0, np.float32), a], axis=-1)
    if key.startswith("mask_head.mask_fcn_logits."):
        return np.concatenate([np.full((1,) + a.shape[1:], 5.0, np.float32), a], axis=0)
    return a


@pytest.mark.parametrize("name", ["MaskRCNN_ResNet18_FPN"])
def test_fluid_and_dygraph_files_convert_to_one_state_dict(tmp_path, name):
    dy = _synthetic(name)
    t = table(name)
    a, b = convert_both_layouts(name, dy, {t[k]: _to_static(k, v) for k, v in dy.items()}, tmp_path,
                                "mask_rcnn_r18_fpn_1x")
    assert torch.equal(a.state_dict["mask_head.logits.weight"], torch.from_numpy(dy["mask_head.mask_fcn_logits.weight"]))
    fixed = {r.target: r.fixup for r in b.mapping if r.status == "mapped"}
    assert fixed["mask_head.logits.weight"] == "static_mask_logits_weight_drop_bg"
    assert fixed["mask_head.logits.bias"] == "static_mask_logits_bias_drop_bg"
    assert fixed.get("mask_head.deconv.weight") is None  # Conv2DTranspose is [in, out, kh, kw] in both
    assert a.module.numerics == paddle_rcnn.NUMERICS["ppdet"] and b.module.numerics == paddle_rcnn.NUMERICS["paddlex"]
    assert b.module.mask_roi_align.numerics == paddle_rcnn.NUMERICS["paddlex"]


def test_mask_fixup_rejects_a_single_channel():
    with pytest.raises(ValueError):
        mask_rcnn.MASK_FIXUPS[0].fn(np.zeros((1, 256, 1, 1), np.float32))


def _np_paste(mask: np.ndarray, box, h: int, w: int) -> np.ndarray:
    """ppdet's paste_mask from its definition: pixel centre (j + 0.5) -> grid u = (p - x1) / (x2 - x1)
    * 2 - 1 -> source coordinate ((u + 1) * M - 1) / 2 (align_corners False), bilinear with zeros
    outside the map."""
    m = mask.shape[0]
    x1, y1, x2, y2 = (float(v) for v in box)
    out = np.zeros((h, w))
    for i in range(h):
        sy = (((i + 0.5 - y1) / (y2 - y1) * 2 - 1) + 1) * m / 2 - 0.5
        for j in range(w):
            sx = (((j + 0.5 - x1) / (x2 - x1) * 2 - 1) + 1) * m / 2 - 0.5
            y0, x0 = int(np.floor(sy)), int(np.floor(sx))
            v = 0.0
            for yy, wy in ((y0, y0 + 1 - sy), (y0 + 1, sy - y0)):
                for xx, wx in ((x0, x0 + 1 - sx), (x0 + 1, sx - x0)):
                    if 0 <= yy < m and 0 <= xx < m:
                        v += wy * wx * mask[yy, xx]
            out[i, j] = v
    return out


def test_paste_matches_the_definition():
    rng = np.random.default_rng(1)
    masks = rng.uniform(0, 1, (3, 7, 7)).astype(np.float32)
    boxes = np.array([[2.3, 4.1, 20.7, 15.2], [0.0, 0.0, 31.0, 23.0], [25.5, 18.2, 40.0, 30.0]], np.float32)
    got = arch.paste_probs(torch.from_numpy(masks), torch.from_numpy(boxes), 24, 32).numpy()
    want = np.stack([_np_paste(m, b, 24, 32) for m, b in zip(masks, boxes)])
    assert np.abs(got - want).max() < 1e-5
    binary = arch.paste_masks(torch.from_numpy(masks), torch.from_numpy(boxes), 24, 32).numpy()
    assert binary.dtype == np.int32 and np.array_equal(binary, (got >= 0.5).astype(np.int32))
    assert arch.paste_masks(torch.zeros(0, 7, 7), torch.zeros(0, 4), 5, 6).shape == (0, 5, 6)


def test_mask_branch_picks_each_detection_s_class_channel():
    """On planted rows the mask branch returns sigmoid(logits[row, class]) of the RoI features of
    each row's box: replaced logits identify the channel picked."""
    torch.manual_seed(0)
    m = registry.get("MaskRCNN_ResNet18_FPN").build().eval()
    feats = [torch.randn(1, 256, 64 >> k, 96 >> k) for k in range(5)]
    rows = torch.tensor([[3.0, 0.9, 10, 20, 60, 90], [77.0, 0.5, 100, 40, 300, 200]])
    with torch.no_grad():
        m.mask_head.logits.weight.zero_()
        m.mask_head.logits.bias.copy_(torch.arange(80, dtype=torch.float32) / 10 - 4)
        probs = m.masks(feats, rows)
    assert probs.shape == (2, 28, 28)
    assert torch.allclose(probs[0], torch.sigmoid(torch.tensor(0.3 - 4))) and torch.allclose(
        probs[1], torch.sigmoid(torch.tensor(7.7 - 4)))


@pytest.mark.parametrize("name,numerics", [("MaskRCNN_ResNet18_FPN", "ppdet"), ("MaskRCNN_ResNet18_FPN", "paddlex"),
                                           ("MaskRCNN_ResNet50", "ppdet")])  # C4: ~14 s a run
def test_forward_runs_in_both_numerics(name, numerics):
    torch.manual_seed(0)
    m = registry.get(name).build().eval()
    m.set_numerics(numerics)
    with torch.no_grad():
        m.score.bias.zero_()
        m.score.bias[5] = 12.0  # one class over the threshold everywhere: rows and masks to check
        ids, scores, boxes, masks = m(torch.randn(1, 3, 96, 128))
    side = 28 if DEPTH[name][2] else 14
    assert ids.shape == (1, 100, 1) and boxes.shape == (1, 100, 4) and masks.shape == (1, 100, side, side)
    n = int((scores[0, :, 0] >= 0).sum())
    assert n > 0 and masks[0, :n].ge(0).all() and masks[0, :n].le(1).all() and masks[0, n:].eq(-1).all()


def test_eval_postprocess_reads_boxes_and_masks_of_a_mask_detector():
    """`zooport eval` reads the box outputs, then the masks that follow (pasted at the original size:
    tests/test_paddle_mask_eval.py), not misread as boxes."""
    from parity.predict import detect
    ids = np.array([[[2.0], [-1.0]]], np.float32)
    scores = np.array([[[0.9], [-1.0]]], np.float32)
    boxes = np.array([[[10, 20, 50, 60], [-1, -1, -1, -1]]], np.float32)
    masks = np.zeros((1, 2, 28, 28), np.float32)
    pred = detect((ids, scores, boxes, masks), "ppdet", (64, 96), (128, 192), (0.5, 0.5))
    assert pred["labels"].tolist() == [2] and np.allclose(pred["boxes"], [[20, 40, 100, 120]])
    assert [m["size"] for m in pred["masks"]] == [[128, 192]]


def _mask_run(probs: np.ndarray, boxes: np.ndarray, got_probs: np.ndarray):
    """A verify run of one image with 2 rows of 4 (ids, scores, boxes, probs, pasted)."""
    from types import SimpleNamespace
    k, h, w = 4, 40, 48
    ids = np.full((1, k, 1), -1.0, np.float32)
    ids[0, :2, 0] = [1, 7]
    scores = np.full((1, k, 1), -1.0, np.float32)
    scores[0, :2, 0] = [0.9, 0.8]
    b = np.full((1, k, 4), -1.0, np.float32)
    b[0, :2] = boxes
    p = np.full((1, k) + probs.shape[1:], -1.0, np.float32)
    p[0, :2] = probs
    g = p.copy()
    g[0, :2] = got_probs
    pasted = np.full((1, k, h, w), -1, np.int32)
    pasted[0, :2] = arch.paste_masks(torch.from_numpy(probs), torch.from_numpy(boxes), h, w).numpy()
    return SimpleNamespace(ref_out=(ids, scores, b, p, pasted), got_out=(ids, scores, b, g),
                           got={"mask_prob": got_probs}, exact={"mask_prob": got_probs.astype(np.float64)})


def test_mask_check_counts_flips_and_explains_only_those_at_the_threshold():
    from parity.masks import mask_check
    rng = np.random.default_rng(2)
    probs = rng.uniform(0, 1, (2, 7, 7)).astype(np.float32)
    boxes = np.array([[3.0, 4.0, 30.0, 25.0], [10.0, 12.0, 44.0, 38.0]], np.float32)
    same = mask_check([_mask_run(probs, boxes, probs)])
    assert same["passed"] and same["rows"] == 2 and same["differing"] == 0 and same["pixels"] == 2 * 40 * 48
    near = probs.copy()
    near[0] = np.where(np.abs(probs[0] - 0.5) < 0.05, 1.0 - probs[0], probs[0])  # flips only near 0.5
    small = mask_check([_mask_run(probs, boxes, near)])
    assert small["differing"] > 0 and small["unexplained"] == small["differing"]  # 0.1 > the 1e-5 bar
    far = probs.copy()
    far[1] = 1.0 - far[1]  # every pixel of row 2 flips, far from the threshold
    bad = mask_check([_mask_run(probs, boxes, far)])
    assert not bad["passed"] and bad["unexplained"] > 0 and bad["prob_max_abs"] > bad["prob_tol"]
