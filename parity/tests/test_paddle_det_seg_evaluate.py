"""`zooport eval` / `explain` on a Paddle detector (YOLOv3_MobileNetV1, 320x320) and a Paddle
segmenter (FastSCNN, 512x512) with their Paddle presets: Paddle itself is the source-framework row.
The ground truth of the tiny COCO / Cityscapes sets (the repository's photographs) is the torch
module's own cv2-exact prediction (each image's top boxes; the class map at original size), so
that row scores high by construction and the Paddle row can only match it if Paddle predicts the
same; a port's Pillow pipeline moves the inputs and must score lower."""
from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest

from parity.datasets import open_dataset
from parity.fixtures import build_tiny

pytestmark = [pytest.mark.oracle, pytest.mark.usefixtures("one_thread"),
              pytest.mark.skipif(importlib.util.find_spec("paddle") is None, reason="paddle is not installed")]

DET, SEG = "YOLOv3_MobileNetV1", "FastSCNN"
N = 4  # photographs: astronaut, coffee, chelsea, rocket
GT_TOP = 5  # each image's best-scored torch detections become its ground truth, among those
GT_SIDE = 8  # at least this many pixels wide and high: the seeded net also draws sub-pixel-thin boxes,
# whose IoU the frameworks' fp32 differences (~1e-4 px, measured) move; on 8 px they move it < 1e-4
PRE = ["cv2-exact", "pil"]



def test_paddleseg_scores_at_original_size_as_its_reverse_transform():
    """PaddleSeg's val resizes the logits back to the image (bilinear) before argmax; labels stay at
    original size. Ours gives Paddle's own reverse_transform class map."""
    paddle = pytest.importorskip("paddle")
    from paddleseg.core.infer import reverse_transform

    from parity.predict import segment_at_original
    logits = np.random.default_rng(0).normal(size=(1, 19, 64, 48)).astype(np.float32)
    orig = (97, 130)
    theirs = reverse_transform(paddle.to_tensor(logits), [("resize", orig)], mode="bilinear").numpy()[0].argmax(0)
    ours = segment_at_original(logits, orig)
    assert ours.shape == orig and np.array_equal(ours, theirs)


def test_paddle_detectors_are_scored_as_ppdet_writes_coco_json(tmp_path):
    """ppdet's get_det_res: w = x2 - x1 (bias 0) and no score threshold; gluoncv: + 1 and >= 0.05."""
    from converters import registry
    from parity.metrics import metric_for
    root = build_tiny("coco", tmp_path / "coco", 2)
    ds = open_dataset("coco", root)
    gt = json.loads(ds.ann_file.read_text())
    ids = {c["id"]: i for i, c in enumerate(gt["categories"])}
    scores = {}
    for spec in (registry.get(DET), registry.get("yolo3_darknet53_coco")):
        metric = metric_for("coco", ds, spec)
        for sample in ds:
            anns = [a for a in gt["annotations"] if a["image_id"] == sample.target["image_id"]]
            boxes = [[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in anns)]
            metric.update(sample.target["image_id"], np.reshape(boxes, (-1, 4)), [0.02] * len(anns),
                          [ids[a["category_id"]] for a in anns])
        scores[spec.framework] = metric.result()["AP"]
    assert scores == {"paddle": pytest.approx(100), "gluon": 0}  # gluoncv drops the 0.02 detections
