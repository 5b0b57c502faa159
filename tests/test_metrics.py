"""parity.metrics on hand-checkable cases (each expected value is worked out in the comment beside
it) and pycocotools on the COCO fixtures. Equality with gluoncv's own metrics on random inputs is
parity/tests/test_metrics_gluoncv.py."""
from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from parity.datasets import DatasetError, open_dataset
from parity.fixtures import build_tiny
from parity.metrics import COCOBox, COCOKeypoints, MetricError, SegMetric, TopK, VOC07MAP, metric_for


# ------------------------------------------------------------------------------------ top-k
def test_topk_first_maximum_and_ranked_input():
    scores = torch.tensor([[0.1, 0.9, 0.0, 0.0, 0.0, 0.0],   # label 1: top-1
                           [0.5, 0.5, 0.0, 0.0, 0.0, 0.0],   # tie: argmax takes class 0, label 1 -> top-5 only
                           [0.6, 0.5, 0.4, 0.3, 0.2, 0.1]])  # label 5 ranks 6th: neither
    m = TopK()
    m.update(scores, torch.tensor([1, 1, 5]))
    assert m.result() == {"top1": pytest.approx(100 / 3), "top5": pytest.approx(200 / 3)}
    r = TopK()
    r.update_ranked(np.array([[1, 0, 2, 3, 4], [0, 1, 2, 3, 4], [0, 1, 2, 3, 4]]), [1, 1, 5])
    assert r.result() == m.result()
    with pytest.raises(MetricError):
        m.update(np.zeros((2, 6)), np.zeros(3))


# ------------------------------------------------------------------------------- VOC07 mAP
def _box(x: float, y: float, s: float = 20) -> list[float]:
    return [x, y, x + s, y + s]


def test_voc_known_pr_curve_and_duplicate_detection():
    # 4 objects; detections by score: hit g0, miss, hit g1, hit g2, duplicate of g0
    # -> matches 1 0 1 1 0, recall .25 .25 .5 .75 .75, precision 1 .5 .667 .75 .6
    gts = [_box(0, 0), _box(100, 0), _box(200, 0), _box(300, 0)]
    preds = [gts[0], _box(500, 500), gts[1], gts[2], _box(1, 1)]
    m = VOC07MAP()
    m.update(preds, [0] * 5, [0.9, 0.8, 0.7, 0.6, 0.5], gts, [0] * 4)
    r = m.result()
    # 11-point: recall >= 0, .1, .2 -> 1; >= .3 ... .7 -> .75; >= .8, .9, 1 -> 0: (3 + 5 * .75) / 11
    assert r["mAP"] == pytest.approx(100 * 6.75 / 11)
    # area: .25 * 1 + .25 * .75 + .25 * .75 + .25 * 0 (the envelope never reaches recall 1)
    assert r["mAP_area"] == pytest.approx(62.5)
    assert r["per_class"] == {"0": {"AP": r["mAP"], "AP_area": r["mAP_area"]}}


def test_voc_perfect_detections_on_the_fixture_give_100(tmp_path):
    ds = open_dataset("voc07", build_tiny("voc07", tmp_path / "voc", n=7))
    m = VOC07MAP(ds.classes)
    for s in ds:
        t = s.target
        ones = np.ones(len(t["labels"]), np.float32)
        m.update(t["boxes"], t["labels"], ones, t["boxes"], t["labels"], t["difficult"])
    r = m.result()
    # eleven additions of 1/11, in gluoncv's order, land one ulp above 1
    assert r["mAP"] == pytest.approx(100.0, rel=1e-15) and r["mAP_area"] == 100.0
    assert set(r["per_class"]) == {"person", "diningtable", "cat", "motorbike", "bicycle"}
    # the bicycle is difficult only: no positives, AP nan, left out of the mean
    assert math.isnan(r["per_class"]["bicycle"]["AP"])


def test_voc_difficult_matches_are_ignored_not_false_positives():
    # scores .9 on the difficult object, .85 a miss, .8 the normal object -> matches -1 0 1;
    # one positive: precision 0, .5 at recall 0, 1 -> AP .5 (as a false positive it would be 1/3)
    gts, difficult = [_box(0, 0), _box(100, 0)], [0, 1]
    m = VOC07MAP()
    m.update([gts[1], _box(500, 0), gts[0]], [0, 0, 0], [0.9, 0.85, 0.8], gts, [0, 0], difficult)
    assert m.result()["mAP"] == pytest.approx(50.0)
    assert m.result()["mAP_area"] == pytest.approx(50.0)


def test_voc_taken_best_match_is_a_false_positive():
    # a = (0,0,99,99), b = (0,10,99,109) overlap (IoU .82); the second detection's best object is a
    # (IoU .96), already taken: a false positive although b overlaps it by .85 -> matches 1 0,
    # recall .5 .5, precision 1 .5 -> 11-point: 6 thresholds up to .5 at 1 -> 6/11
    a, b = [0, 0, 99, 99], [0, 10, 99, 109]
    m = VOC07MAP()
    m.update([a, [0, 2, 99, 101]], [0, 0], [0.9, 0.8], [a, b], [0, 0])
    assert m.result()["mAP"] == pytest.approx(600 / 11)


def test_voc_boxes_are_integer_pixels():
    # object (0,0,1,1) is 2x2 pixels, detection (0,0,1,0) 2x1: IoU .5 -> a hit (in continuous
    # coordinates the detection has no area)
    m = VOC07MAP()
    m.update([[0, 0, 1, 0]], [0], [1.0], [[0, 0, 1, 1]], [0])
    assert m.result()["mAP"] == pytest.approx(100.0, rel=1e-15)


def test_voc_classes_without_objects_and_padding():
    # class 0 perfect; class 1 predicted but absent (AP nan, dropped); class 2 present, never found
    # (AP 0); -1 rows are padding -> mean over classes 0 and 2 = 50
    m = VOC07MAP(("a", "b", "c"))
    m.update([_box(0, 0), _box(50, 50), _box(9, 9)], [0, 1, -1], [0.9, 0.8, 0.99],
             [_box(0, 0), _box(200, 200), _box(0, 0)], [0, 2, -1])
    r = m.result()
    assert r["mAP"] == pytest.approx(50.0)
    assert math.isnan(r["per_class"]["b"]["AP"]) and r["per_class"]["c"]["AP"] == 0.0
    assert math.isnan(VOC07MAP().result()["mAP"])
    with pytest.raises(MetricError):
        m.update([_box(0, 0)], [0, 1], [0.5], [], [])


# ------------------------------------------------------------------------------------- COCO
EPS = 1e-12  # pycocotools' precision is tp / (tp + fp + np.spacing(1)): a perfect AP is 1 - 2e-16
@pytest.fixture(scope="module")
def coco(tmp_path_factory):
    base = tmp_path_factory.mktemp("coco")
    return open_dataset("coco", build_tiny("coco", base / "coco", n=7))


def _feed(metric: COCOBox, ds, shift: float = 0.0, relabel: dict | None = None) -> dict:
    for s in ds:
        t = s.target
        boxes = t["boxes"].astype(np.float64) + [shift, 0, shift, 0]
        labels = np.array([relabel.get(int(c), c) if relabel else c for c in t["labels"]])
        metric.update(t["image_id"], boxes, np.full(len(boxes), 0.9), labels)
    return metric.result()


def test_coco_perfect_boxes_give_ap_100(coco):
    r = _feed(COCOBox(coco.ann_file), coco)
    assert list(r) == list(COCOBox.names)
    for name in ("AP", "AP50", "AP75", "APl", "AR1", "AR100"):
        assert r[name] == pytest.approx(100.0, rel=EPS), name
    assert math.isnan(r["APs"])  # no small object in the fixture: pycocotools' -1


def test_coco_shifted_boxes_and_wrong_labels_score_less(coco):
    perfect = _feed(COCOBox(coco.ann_file), coco)["AP"]
    # a 30-pixel shift keeps IoU >= .5 on the big objects (AP50 ~ 100) but fails the tight thresholds
    shifted = _feed(COCOBox(coco.ann_file), coco, shift=30.0)
    assert shifted["AP"] < perfect and shifted["AP75"] < 100.0
    # person called bicycle: the label maps to COCO id 2, the person objects are missed
    assert _feed(COCOBox(coco.ann_file), coco, relabel={0: 1})["AP"] < perfect


def test_coco_score_threshold_and_evaluated_images(coco):
    m = COCOBox(coco.ann_file)
    s = coco[0].target  # the astronaut only: the other images' objects are not counted
    m.update(s["image_id"], s["boxes"], [0.04], s["labels"])  # under gluoncv's 0.05: dropped
    assert m.result()["AP"] == 0.0
    m = COCOBox(coco.ann_file)
    m.update(s["image_id"], s["boxes"], [0.06], s["labels"])
    assert m.result()["AP"] == pytest.approx(100.0, rel=EPS)
    with pytest.raises(MetricError, match="no image with id 5"):
        m.update(5, s["boxes"], [1.0], s["labels"])


def test_coco_keypoints_perfect_and_shifted(tmp_path):
    ds = open_dataset("coco-keypoints", build_tiny("coco-keypoints", tmp_path / "kp", n=7))

    def run(dx: float) -> dict:
        m = COCOKeypoints(ds.ann_file)
        for s in ds:
            k = s.target["keypoints"].astype(np.float64).copy()
            k[..., 0] += dx
            k[..., 2] = 0.8  # joint confidences; instance score = box score x mean confidence
            m.update(s.target["image_id"], k, np.ones(len(k)))
        return m.result()

    perfect = run(0.0)
    assert list(perfect) == list(COCOKeypoints.names)
    for name in ("AP", "AP50", "APl", "AR"):
        assert perfect[name] == pytest.approx(100.0, rel=EPS), name
    assert run(15.0)["AP"] < perfect["AP"]


def test_coco_boxes_become_xywh_with_the_inclusive_last_pixel(coco):
    m = COCOBox(coco.ann_file)
    m.update(coco[0].target["image_id"], [[10, 20, 29, 59]], [0.5], [41])  # 20 x 40 pixels, a cup
    assert m.results == [{"image_id": 1000, "category_id": 47, "bbox": [10.0, 20.0, 20.0, 40.0], "score": 0.5}]


def test_coco_missing_annotation_file(tmp_path):
    with pytest.raises(DatasetError) as exc:
        COCOBox(tmp_path / "nope.json")
    assert str(tmp_path / "nope.json") in str(exc.value) and "\n" not in str(exc.value)


# ----------------------------------------------------------------------------- segmentation
def test_seg_confusion_with_ignored_and_out_of_range_labels():
    label = np.array([[0, 0, 1, 1], [-1, 2, 2, 255]])
    pred = np.array([[0, 1, 1, 1], [2, 2, 0, 0]])
    m = SegMetric(3)
    m.update(pred, label)
    r = m.result()
    # labelled: 7 pixels (-1 ignored, 255 counts but can never be right); correct 4
    assert r["pixAcc"] == pytest.approx(400 / 7)
    # class 0: inter 1, union 3 predicted (one on the 255 pixel) + 2 labelled - 1 = 4
    # class 1: inter 2, union 3 + 2 - 2 = 3; class 2: inter 1, union 1 + 2 - 1 = 2
    assert r["per_class_IoU"] == pytest.approx([25.0, 200 / 3, 50.0])
    assert r["mIoU"] == pytest.approx((25.0 + 200 / 3 + 50.0) / 3)
    m4 = SegMetric(4)  # a class absent from both counts as IoU 0 in the mean
    m4.update(pred, label)
    assert m4.result()["mIoU"] == pytest.approx((25.0 + 200 / 3 + 50.0) / 4)
    with pytest.raises(MetricError):
        m.update(pred, label[:1])


def test_seg_accumulates_counts_not_means():
    m = SegMetric(2)
    m.update(np.zeros((1, 10)), np.zeros((1, 10)))  # 10/10 right
    m.update(np.zeros((1, 2)), np.ones((1, 2)))     # 0/2 right
    assert m.result()["pixAcc"] == pytest.approx(100 * 10 / 12)


# ------------------------------------------------------------------------------ metric_for
def test_metric_for_each_kind(tmp_path):
    cases = {"imagenet": TopK, "folder": TopK, "voc07": VOC07MAP, "coco": COCOBox,
             "coco-keypoints": COCOKeypoints, "ade20k": SegMetric, "voc-seg": SegMetric}
    for kind, cls in cases.items():
        ds = open_dataset(kind, build_tiny(kind, tmp_path / kind, n=2))
        assert isinstance(metric_for(kind, ds), cls), kind
    assert metric_for("ade20k", open_dataset("ade20k", tmp_path / "ade20k")).num_classes == 150
    with pytest.raises(DatasetError, match="scores classification"):
        metric_for("imagenet", open_dataset("imagenet", tmp_path / "imagenet"),
                   SimpleNamespace(name="ssd", task="detection"))
