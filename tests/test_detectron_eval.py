"""`zooport eval` on Detectron models: the box pipeline (torch only: Caffe2 cannot run here) on a
tiny COCO set of real photographs with a seeded checkpoint, and, when a real model-zoo pickle and
COCO val2017 are on disk, Detectron's published box AP (skipped offline, saying what is missing)."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from converters import registry
from converters.errors import WeightsNotFound
from converters.pipeline import convert
from converters.sources import resolve
from parity.datasets import DatasetError, open_dataset
from parity.evaluate import evaluate
from parity.fixtures import build_tiny
from parity.metrics import COCODetectron, metric_for

COCO = os.environ.get("ZOOPORT_COCO")  # a COCO root: annotations/instances_val2017.json + val2017/


def test_seeded_faster_rcnn_evaluates_deterministically(tmp_path):
    """The whole eval path (cv2 decode, Detectron's resize and means, the model, boxes back to the
    original by im_scale, COCO metric) runs and gives identical metrics twice."""
    data = build_tiny("coco", tmp_path / "coco", 1)
    result = convert("e2e_faster_rcnn_R-50-FPN_1x", init="random", seed=3)
    runs = [evaluate(result, data, progress=False) for _ in range(2)]
    a, b = (r.rows[0].to_dict() for r in runs)
    assert a["n"] == 1 and a["metrics"] == b["metrics"]
    assert set(a["metrics"]) >= {"AP", "AP50", "AR100"}


@pytest.mark.parametrize("name, prefix", [("e2e_mask_rcnn_R-50-FPN_1x", "mask_"),
                                          ("e2e_keypoint_rcnn_R-50-FPN_1x", "keypoint_")])
def test_seeded_mask_and_keypoint_ap_deterministic(tmp_path, name, prefix):
    """Mask AP (RLEs of the pasted masks at original size) and keypoint AP (joints mapped back by
    im_scale, scored on person_keypoints) are computed, in range, and identical over two runs."""
    data = build_tiny("coco", tmp_path / "coco", 1)
    if prefix == "keypoint_":  # the same photograph's person keypoints json next to the instances one
        kp = build_tiny("coco-keypoints", tmp_path / "kp", 1)
        shutil.copy(kp / "annotations" / "person_keypoints_val2017.json", data / "annotations")
    result = convert(name, init="random", seed=3)
    runs = [evaluate(result, data, progress=False) for _ in range(2)]
    a, b = (r.rows[0].to_dict() for r in runs)
    assert a["n"] == 1 and a["metrics"] == b["metrics"]
    assert {"AP", f"{prefix}AP", f"{prefix}AP50"} <= set(a["metrics"])
    ap = a["metrics"][f"{prefix}AP"]
    assert ap != ap or 0.0 <= ap <= 100.0  # nan only when pycocotools marks it absent


def _gt_as_detectron_output(coco, image_id: int, hw: tuple[int, int], contiguous: dict) -> dict:
    """Ground truth as a torchvision-style Detectron output at input size ``hw``: boxes, masks
    (probabilities pasted at input size) and keypoints in input pixels."""
    import cv2
    h, w = hw
    img = coco.imgs[image_id]
    sx, sy = w / img["width"], h / img["height"]
    anns = coco.loadAnns(coco.getAnnIds(imgIds=[image_id]))
    boxes = np.array([[x * sx, y * sy, (x + bw - 1) * sx, (y + bh - 1) * sy] for x, y, bw, bh in
                      (a["bbox"] for a in anns)])
    masks = np.stack([cv2.resize(coco.annToMask(a).astype(np.float32), (w, h))[None] for a in anns])
    out = {"boxes": boxes, "scores": np.linspace(0.9, 0.8, len(anns)), "masks": masks,
           "labels": np.array([contiguous[a["category_id"]] + 1 for a in anns])}
    if all("keypoints" in a for a in anns):
        kps = np.array([a["keypoints"] for a in anns], np.float64).reshape(-1, 17, 3)
        out["keypoints"] = kps * [sx, sy, 1.0]
    return out


def test_ground_truth_through_the_detectron_mapping_scores_full_ap(tmp_path):
    """Ground-truth masks and keypoints, resized to a 0.8x input as the model's outputs are, go back
    through predict's Detectron mapping (masks to original size, > 0.5, RLE; joints / im_scale) and
    score near-perfect mask and keypoint AP: the mapping and the json fields are COCO's."""
    from parity.predict import _detectron
    data = build_tiny("coco", tmp_path / "coco", 2)
    kp_root = build_tiny("coco-keypoints", tmp_path / "kp", 2)
    kp_ann = kp_root / "annotations" / "person_keypoints_val2017.json"
    for metric, ann in ((COCODetectron(data / "annotations" / "instances_val2017.json", masks=True), None),
                        (COCODetectron(data / "annotations" / "instances_val2017.json", keypoints_ann=kp_ann), kp_ann)):
        coco = (metric.kps or metric.mask).gt
        contiguous = {c["id"]: i for i, c in enumerate(coco.dataset["categories"])}
        for image_id in sorted(coco.imgs):
            img = coco.imgs[image_id]
            if not coco.getAnnIds(imgIds=[image_id]):
                continue
            hw = (round(0.8 * img["height"]), round(0.8 * img["width"]))
            out = _gt_as_detectron_output(coco, image_id, hw, contiguous)
            pred = _detectron(out, hw, (img["height"], img["width"]), None)
            extra = {"keypoints": pred["keypoints"]} if ann else {"masks": pred["masks"]}
            metric.update(image_id, pred["boxes"], pred["scores"], pred["labels"], **extra)
        res = metric.result()
        key = "keypoint_AP" if ann else "mask_AP"
        assert res[key] >= 99.0, (key, res)


def test_keypoint_eval_needs_person_keypoints_json(tmp_path):
    """Keypoint nets are scored on person_keypoints: without that json, a one-line error says so."""
    ds = open_dataset("coco", build_tiny("coco", tmp_path / "coco", 1))
    with pytest.raises(DatasetError, match="person_keypoints_val2017.json"):
        metric_for("coco", ds, registry.get("e2e_keypoint_rcnn_R-50-FPN_1x"))


REAL = [("e2e_faster_rcnn_R-50-FPN_1x", {"AP": 36.7}),
        ("e2e_mask_rcnn_R-50-FPN_1x", {"AP": 37.7, "mask_AP": 33.9}),
        ("e2e_keypoint_rcnn_R-50-FPN_1x", {"AP": 53.6, "keypoint_AP": 64.2}),
        ("retinanet_R-50-FPN_1x", {"AP": 35.7})]


@pytest.mark.slow
@pytest.mark.parametrize("name, published", REAL)
def test_published_ap_with_real_weights(name, published):
    """Detectron's MODEL_ZOO box / mask / keypoint AP on COCO val2017 (5000 images), within 0.3
    points: the +1 decode in input rather than original pixels, the uint8-first resize and (masks)
    pasting at input size then resizing to the original are the known differences."""
    need = ["instances_val2017.json"] + (["person_keypoints_val2017.json"] if "keypoint_AP" in published else [])
    missing = [n for n in need if not COCO or not (Path(COCO) / "annotations" / n).exists()]
    if missing:
        pytest.skip(f"COCO val2017 not available: set ZOOPORT_COCO to a root with annotations/"
                    f"{' and annotations/'.join(missing)} and val2017/")
    try:
        weights = resolve(registry.get(name).weights(), download=False)
    except WeightsNotFound:
        pytest.skip(f"{name}: the model-zoo pickle is not in weights/src (no download offline); "
                    f"fetch {registry.get(name).weights().url}")
    metrics = evaluate(name, COCO, weights=weights, progress=False).rows[0].to_dict()["metrics"]
    for key, value in published.items():  # metrics are percentages already
        assert abs(metrics[key] - value) <= 0.3, (key, metrics[key], value)
