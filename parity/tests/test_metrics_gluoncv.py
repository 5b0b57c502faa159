"""parity.metrics equals gluoncv's own metrics exactly on the same random predictions: VOC07MAP
against VOC07MApMetric (11-point) and VOCMApMetric (area), SegMetric against SegmentationMetric,
and COCOBox / COCOKeypoints against COCODetectionMetric / COCOKeyPointsMetric on the COCO fixtures
(the same pycocotools underneath; this pins the conversions in front of it: contiguous label ->
category id, xyxy -> xywh with gluoncv's +1, the 0.05 score floor, keypoint rescoring)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from parity.datasets import VOC_CLASSES, open_dataset
from parity.fixtures import build_tiny
from parity.metrics import COCOBox, COCOKeypoints, SegMetric, VOC07MAP

pytestmark = pytest.mark.oracle


@pytest.fixture(scope="module")
def gcv():
    from converters.frameworks import import_gluoncv
    return import_gluoncv()


def _image(rng, ties: bool):
    """One image's ground truth and padded detections: jittered copies of the objects (some with a
    wrong class), duplicates and clutter; integer VOC-style boxes; ``ties`` rounds the scores."""
    w, h = 500, 375
    m = int(rng.integers(0, 7))
    xy = rng.integers(0, [w - 60, h - 60], (m, 2))
    size = rng.integers(1, 160, (m, 2))  # down to 1 pixel, where the +1 convention decides matches
    gt = np.concatenate([xy, xy + size], 1).astype(np.float32)
    gl = rng.integers(0, 6, m).astype(np.float32)  # few classes: several objects per class
    gd = (rng.random(m) < 0.2).astype(np.float32)
    keep = rng.random(m) < 0.8
    jit = gt[keep] + np.round(rng.normal(0, 0.15, (int(keep.sum()), 4)) * np.tile(size[keep], 2))
    jl = np.where(rng.random(len(jit)) < 0.85, gl[keep], rng.integers(0, 6, len(jit)))
    c = int(rng.integers(0, 8))
    cxy = rng.integers(0, [w - 40, h - 40], (c, 2))
    clutter = np.concatenate([cxy, cxy + rng.integers(5, 120, (c, 2))], 1)
    pb = np.concatenate([jit, jit[: len(jit) // 2] + 3, clutter]).astype(np.float32)
    pl = np.concatenate([jl, jl[: len(jl) // 2], rng.integers(0, 6, c)]).astype(np.float32)
    ps = rng.random(len(pb)).astype(np.float32)
    if ties:
        ps = np.round(ps, 1)
    pad = int(rng.integers(0, 4))  # gluoncv's -1 padded rows
    pb = np.concatenate([pb, -np.ones((pad, 4), np.float32)])
    pl = np.concatenate([pl, -np.ones(pad, np.float32)])
    ps = np.concatenate([ps, -np.ones(pad, np.float32)])
    return pb, pl, ps, gt, gl, gd


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


@pytest.mark.parametrize("seed,ties", [(0, False), (1, False), (2, True), (3, True)])
def test_voc07_map_equals_gluoncv_exactly(gcv, seed, ties):
    metrics = gcv.utils.metrics.voc_detection
    rng = np.random.default_rng(seed)
    ours = VOC07MAP(VOC_CLASSES)
    ref11 = metrics.VOC07MApMetric(iou_thresh=0.5, class_names=VOC_CLASSES)
    ref_area = metrics.VOCMApMetric(iou_thresh=0.5, class_names=VOC_CLASSES)
    for _ in range(20):
        arrays = _image(rng, ties)
        ours.update(*arrays)
        for ref in (ref11, ref_area):
            ref.update(*(a[None] for a in arrays))  # gluoncv takes batches
    got = ours.result()
    for key, ref in (("mAP", ref11), ("mAP_area", ref_area)):
        names, values = ref.get()
        assert got[key] == 100 * values[-1], (key, got[key], values[-1])
        per = {n: got["per_class"].get(n, {}).get("AP" if key == "mAP" else "AP_area", float("nan"))
               for n in VOC_CLASSES}
        assert all(_same(per[n], 100 * v) for n, v in zip(names[:-1], values[:-1])), (per, values)
    assert 0 < got["mAP"] < 100 and got["mAP"] != got["mAP_area"]  # a non-trivial curve


@pytest.mark.parametrize("nclass", [21, 150])
def test_seg_metric_equals_gluoncv_exactly(gcv, nclass):
    from converters.frameworks import import_mxnet
    mx = import_mxnet()
    rng = np.random.default_rng(nclass)
    ours, ref = SegMetric(nclass), gcv.utils.metrics.SegmentationMetric(nclass)
    for _ in range(4):
        h, w = 40, 56
        label = rng.integers(0, min(nclass, 12), (h, w))  # not every class present: absent ones count
        label[rng.random((h, w)) < 0.1] = -1               # ignored
        label[rng.random((h, w)) < 0.05] = 255             # an unmapped boundary value
        pred = np.where(rng.random((h, w)) < 0.6, np.clip(label, 0, nclass - 1), rng.integers(0, nclass, (h, w)))
        logits = np.eye(nclass, dtype=np.float32)[pred].transpose(2, 0, 1)[None]
        ref.update(mx.nd.array(label[None]), mx.nd.array(logits))
        ours.update(logits[0].argmax(0), label)
    pix, miou = ref.get()
    got = ours.result()
    assert (got["pixAcc"], got["mIoU"]) == (100 * pix, 100 * miou)


def _rows(results: list[dict]) -> list[tuple]:
    """Result entries as comparable tuples, in order: image, category, score, coordinates."""
    return sorted((r["image_id"], r["category_id"], float(r["score"]), tuple(map(float, r.get("bbox", ()))),
                   tuple(map(float, r.get("keypoints", ())))) for r in results)


@pytest.fixture(scope="module")
def coco_root(tmp_path_factory):
    base = tmp_path_factory.mktemp("coco_oracle")
    return {k: build_tiny(k, base / k, n=9) for k in ("coco", "coco-keypoints")}


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # gluoncv's per-class print averages empty slices
def test_coco_box_equals_gluoncv_detection_metric(gcv, coco_root, tmp_path):
    ref_ds = gcv.data.COCODetection(root=str(coco_root["coco"]), splits=("instances_val2017",), skip_empty=False)
    ref = gcv.utils.metrics.coco_detection.COCODetectionMetric(ref_ds, str(tmp_path / "det"), cleanup=True)
    ds = open_dataset("coco", coco_root["coco"])
    ours = COCOBox(ds.ann_file)
    rng = np.random.default_rng(0)
    for s in ds:  # gluoncv's metric takes images in sorted-id order, as the dataset yields them
        t = s.target
        boxes = np.concatenate([t["boxes"] + rng.normal(0, 6, t["boxes"].shape), t["boxes"][:1] + 40])
        labels = np.concatenate([t["labels"], rng.integers(0, 80, min(1, len(t["labels"])))]).astype(np.float64)
        scores = rng.random(len(boxes))  # some under the 0.05 floor
        ref.update(boxes[None].copy(), labels[None], scores[None])
        ours.update(t["image_id"], boxes, scores, labels)
    ref.get()
    assert _rows(ours.results) == _rows(ref._results)  # the same json pycocotools reads, to the bit
    got = ours.result()
    want = {n: (100 * v if v >= 0 else float("nan")) for n, v in zip(COCOBox.names, ref._coco_eval.stats)}
    assert all(_same(got[n], want[n]) for n in COCOBox.names), (got, want)
    assert 0 < got["AP"] < 100


def test_coco_keypoints_equal_gluoncv_keypoint_metric(gcv, coco_root, tmp_path):
    from converters.frameworks import import_mxnet
    mx = import_mxnet()
    ref_ds = gcv.data.mscoco.keypoints.COCOKeyPoints(root=str(coco_root["coco-keypoints"]),
                                                     splits=("person_keypoints_val2017",), skip_empty=False)
    ref = gcv.utils.metrics.coco_keypoints.COCOKeyPointsMetric(ref_ds, str(tmp_path / "kp"), cleanup=True,
                                                              in_vis_thresh=0)
    ds = open_dataset("coco-keypoints", coco_root["coco-keypoints"])
    ours = COCOKeypoints(ds.ann_file)
    rng = np.random.default_rng(1)
    for s in ds:
        k = s.target["keypoints"].astype(np.float32)
        if not len(k):
            continue
        k = np.concatenate([k, k])  # each person found twice: once close, once far off (ranking matters)
        spread = np.repeat([6.0, 36.0], len(k) // 2)[:, None, None]  # pixels
        k[..., :2] += (rng.normal(0, 1, k[..., :2].shape) * spread).astype(np.float32)
        k[..., 2] = rng.random(k.shape[:2]).astype(np.float32)  # joint confidences
        box_scores = rng.random(len(k)).astype(np.float32)
        ids = np.full(len(k), s.target["image_id"], np.float32)
        ref.update(mx.nd.array(k[..., :2]), mx.nd.array(k[..., 2:]), mx.nd.array(box_scores[:, None]), mx.nd.array(ids))
        ours.update(s.target["image_id"], k, box_scores)
    ref.get()
    assert _rows(ours.results) == _rows(ref._results)
    got = ours.result()
    want = {n: (100 * v if v >= 0 else float("nan")) for n, v in zip(COCOKeypoints.names, ref._coco_eval.stats)}
    assert all(_same(got[n], want[n]) for n in COCOKeypoints.names), (got, want)
    assert 0 < got["AP"] < 100
