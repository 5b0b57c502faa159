"""The post-processing variants of converters.arch.nms.DetectionNMS: "mxnet" against MXNet's own
box_nms, the port-style variants against their definitions, and the switch at load time."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torchvision.ops import box_iou

from converters.arch.nms import NMS_VARIANTS, DetectionNMS, set_nms

pytestmark = pytest.mark.oracle


def _rows(rng, n: int, ties: bool = False) -> np.ndarray:
    ids = rng.integers(-1, 4, n).astype(np.float32)
    scores = rng.random(n).astype(np.float32)
    if ties:
        scores = np.round(scores, 1)
    xy = rng.random((n, 2)).astype(np.float32) * 100
    wh = rng.random((n, 2)).astype(np.float32) * 60 + 1
    return np.concatenate([ids[:, None], scores[:, None], xy, xy + wh], 1)[None]


def test_mxnet_variant_is_box_nms_then_slice():
    from converters.frameworks import import_mxnet
    mx = import_mxnet()
    rng = np.random.default_rng(0)
    for trial in range(60):
        data = _rows(rng, int(rng.integers(1, 300)), ties=trial % 3 == 0)
        thresh, valid, topk = 0.45, float(rng.choice([0.0, 0.01, 0.3])), int(rng.choice([-1, 50, 400]))
        post = min(100, data.shape[1])  # MXNet's slice_axis rejects an end past the axis
        force = bool(trial % 2)
        ref = mx.nd.contrib.box_nms(mx.nd.array(data), overlap_thresh=thresh, valid_thresh=valid, topk=topk,
                                    id_index=0, score_index=1, coord_start=2, force_suppress=force)
        ref = ref.slice_axis(axis=1, begin=0, end=post).asnumpy()
        ids, scores, boxes = DetectionNMS(thresh, valid, topk, post, force)(torch.from_numpy(data))
        assert np.array_equal(np.concatenate([ids, scores, boxes], -1), ref), trial


def _check_greedy(rows: np.ndarray, kept: np.ndarray, thresh: float, candidates: np.ndarray) -> None:
    """Definition of per-class greedy NMS: kept rows are candidates, sorted by score; no two kept
    rows of a class overlap above ``thresh``; every dropped candidate overlaps a kept, higher-or-equal
    scored row of its class above ``thresh``."""
    assert np.all(np.diff(kept[:, 1]) <= 0)
    key = {tuple(r) for r in candidates}
    assert all(tuple(r) in key for r in kept)
    iou = box_iou(torch.from_numpy(kept[:, 2:]), torch.from_numpy(kept[:, 2:])).numpy()
    same = kept[:, None, 0] == kept[None, :, 0]
    assert not np.any(np.triu(same & (iou > thresh), 1))
    kept_keys = {tuple(r) for r in kept}
    for r in candidates:
        if tuple(r) in kept_keys:
            continue
        mates = kept[(kept[:, 0] == r[0]) & (kept[:, 1] >= r[1])]
        assert len(mates) and box_iou(torch.from_numpy(r[None, 2:]), torch.from_numpy(mates[:, 2:])).max() > thresh


@pytest.mark.parametrize("variant", ["torchvision", "naive"])
def test_port_variants_are_greedy_nms_by_definition(variant):
    rng = np.random.default_rng(1)
    for trial in range(30):
        data = _rows(rng, int(rng.integers(5, 200)))[0]
        nms = DetectionNMS(0.45, 0.2, 40, -1, variant=variant)
        out = torch.cat(nms(torch.from_numpy(data[None])), -1)[0].numpy()
        kept = out[out[:, 0] >= 0]
        valid = data[(data[:, 0] >= 0) & (data[:, 1] > (0.2 if variant == "torchvision" else 0))]
        if variant == "torchvision":  # the same pre-NMS topk as MXNet
            valid = valid[np.argsort(-valid[:, 1], kind="stable")[:40]]
        _check_greedy(data, kept, 0.45, valid)


def test_naive_keeps_what_mxnet_cuts_before_nms():
    """Three disjoint boxes, one below valid_thresh, topk 1: MXNet keeps one; the naive port keeps
    all three (no valid_thresh, topk only after NMS)."""
    rows = torch.tensor([[[0, 0.9, 0, 0, 10, 10], [0, 0.8, 20, 20, 30, 30], [1, 0.005, 40, 40, 50, 50]]])
    count = {v: int((DetectionNMS(0.45, 0.01, 1, 100, variant=v)(rows)[0] >= 0).sum()) for v in NMS_VARIANTS}
    assert count == {"mxnet": 1, "torchvision": 1, "naive": 3}


def test_outside_unit_interval_no_nms_no_cut():
    rows = torch.rand(1, 7, 6)
    ids, scores, boxes = DetectionNMS(1.0, 0.01, 2, 3)(rows)
    assert torch.equal(torch.cat([ids, scores, boxes], -1), rows)


def test_variant_switch_errors():
    with pytest.raises(ValueError, match="unknown nms variant 'fast'"):
        DetectionNMS(0.45, 0.01, 400, 100, variant="fast")
    with pytest.raises(ValueError, match="no detection post-processing"):
        set_nms(torch.nn.Linear(2, 2), "naive")


def test_load_selects_the_variant(converted, tmp_path):
    import converters
    from converters.errors import ZooportError
    result = converted("ssd_512_resnet50_v1_voc")
    path, _ = result.write(tmp_path)
    for v in NMS_VARIANTS:
        assert converters.load("ssd_512_resnet50_v1_voc", path, nms=v).nms.variant == v
    assert converters.load("ssd_512_resnet50_v1_voc", path).nms.variant == "mxnet"
    with pytest.raises(ZooportError, match="unknown nms variant"):
        converters.load("ssd_512_resnet50_v1_voc", path, nms="fast")


def test_verify_counts_detections_changed_per_variant(parity_report):
    r = parity_report("ssd_512_resnet50_v1_voc")
    v = r.nms_variants
    assert set(v) == set(NMS_VARIANTS)
    assert v["mxnet"]["changed"] == 0 and v["mxnet"]["identical"] == r.detections.identical
    assert all(v[k]["reference"] == r.detections.reference for k in v)


def test_naive_early_stop_equals_full_suppression_then_cut():
    rng = np.random.default_rng(3)
    for trial in range(20):
        data = torch.from_numpy(_rows(rng, int(rng.integers(50, 400)), ties=trial % 2 == 0))
        full = torch.cat(DetectionNMS(0.45, 0.01, 400, -1, variant="naive")(data), -1)[:, :25]
        cut = torch.cat(DetectionNMS(0.45, 0.01, 400, 25, variant="naive")(data), -1)
        assert torch.equal(full, cut), trial
