"""`zooport eval` on Detectron models: the box pipeline (torch only: Caffe2 cannot run here) on a
tiny COCO set of real photographs with a seeded checkpoint, and, when a real model-zoo pickle and
COCO val2017 are on disk, Detectron's published box AP (skipped offline, saying what is missing)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from converters import registry
from converters.errors import WeightsNotFound
from converters.pipeline import convert
from converters.sources import resolve
from parity.evaluate import evaluate
from parity.fixtures import build_tiny

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


REAL = [("e2e_faster_rcnn_R-50-FPN_1x", 36.7), ("e2e_mask_rcnn_R-50-FPN_1x", 37.7), ("retinanet_R-50-FPN_1x", 35.7)]


@pytest.mark.slow
@pytest.mark.parametrize("name, box_ap", REAL)
def test_published_box_ap_with_real_weights(name, box_ap):
    """Detectron's MODEL_ZOO box AP on COCO val2017 (5000 images), within 0.3 points: the +1 decode
    in input rather than original pixels and the uint8-first resize are the known differences."""
    if not COCO or not (Path(COCO) / "annotations" / "instances_val2017.json").exists():
        pytest.skip("COCO val2017 not available: set ZOOPORT_COCO to a root with annotations/"
                    "instances_val2017.json and val2017/")
    try:
        weights = resolve(registry.get(name).weights(), download=False)
    except WeightsNotFound:
        pytest.skip(f"{name}: the model-zoo pickle is not in weights/src (no download offline); "
                    f"fetch {registry.get(name).weights().url}")
    report = evaluate(name, COCO, weights=weights, progress=False)
    assert abs(100 * report.rows[0].to_dict()["metrics"]["AP"] - box_ap) <= 0.3
