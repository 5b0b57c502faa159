"""`zooport eval` / `zooport explain` against MXNet, on tiny datasets of real photographs
(parity/fixtures.py) with seeded weights: the converted module and gluoncv's own net give the same
predictions and identical metrics under gluoncv's transforms and under zooport's cv2-exact; the
ladder's deltas add up to the gap; two torch.distributed processes give what one gives."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from parity.evaluate import Config, evaluate, predict_shard, prepare
from parity.explain import explain
from parity.fixtures import build_tiny

pytestmark = [pytest.mark.oracle, pytest.mark.usefixtures("one_thread")]

CLS, SSD, POSE, SEG = "cifar_resnet20_v1", "ssd_300_vgg16_atrous_voc", "simple_pose_resnet18_v1b", "fcn_resnet50_ade"
SAME = [("torch", "mxnet"), ("torch", "cv2-exact"), ("mxnet", "cv2-exact")]  # must equal (mxnet, mxnet)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval-data")

    def get(kind: str, n: int = 6):
        path = root / f"{kind}-{n}"
        return path if path.exists() else build_tiny(kind, path, n)
    return get




def _by(report):
    """Metrics as the JSON holds them (NaN, e.g. AP of a class without objects, as None: comparable)."""
    return {(r.framework, r.preprocess, r.nms): r.to_dict()["metrics"] for r in report.rows}


def _predictions(result, path, configs):
    preds, _ = predict_shard(prepare(result, path), configs)
    return {c: [p for _, p in preds[c]] for c in configs}


def test_classifier_same_rankings_and_metrics_in_both_frameworks(converted, data):
    path = data("folder", 12)
    report = evaluate(converted(CLS), path, ["mxnet", "cv2-exact", "pil"], ["torch", "mxnet"], progress=False)
    rows = _by(report)
    ref = rows[("mxnet", "mxnet", None)]
    assert 0 < ref["top5"] < 100, ref  # not a degenerate score: a changed ranking would show
    for fw, pre in SAME:
        assert rows[(fw, pre, None)] == ref, (fw, pre)
    assert report.n == 12 and report.complete and [r.n for r in report.rows] == [12] * 6
    # the per-image top-5 behind the metric, not only the metric
    configs = [Config(fw, pre, None) for fw in ("mxnet", "torch") for pre in ("mxnet", "cv2-exact")]
    preds = _predictions(converted(CLS), path, configs)
    top5 = {c: [p.tolist() for p in preds[c]] for c in configs}
    assert all(top5[c] == top5[configs[0]] for c in configs)


@pytest.fixture(scope="module")
def ssd_report(converted, data):
    return evaluate(converted(SSD), data("voc07"), ["mxnet", "cv2-exact"], ["torch", "mxnet"],
                    ["mxnet", "naive"], progress=False)


def test_detector_identical_map_in_both_frameworks(ssd_report):
    rows = _by(ssd_report)
    ref = rows[("mxnet", "mxnet", "mxnet")]
    assert ref["mAP"] > 0, ref  # the seeded SSD finds some of the fixture's objects
    for fw, pre in SAME:
        assert rows[(fw, pre, "mxnet")] == ref, (fw, pre)
    assert ("mxnet", "mxnet", "naive") not in rows and any("box_nms only" in n for n in ssd_report.notes)
    assert len(ssd_report.rows) == 6


def test_explain_ladder_deltas_add_up_to_the_gap(converted, data, ssd_report):
    ladder = explain(converted(SSD), data("voc07"), target="pil", nms="naive", progress=False)
    assert [s.stage for s in ladder.steps] == ["source", "framework", "preprocess", "decoder", "resize", "nms"]
    by = {s.stage: s for s in ladder.steps}
    # the converted module and zooport's preprocessing are exact: they explain none of the gap
    assert by["framework"].delta == 0 and by["preprocess"].delta == 0
    assert ladder.total_gap == ladder.steps[-1].value - ladder.steps[0].value
    assert math.isclose(ladder.sum_of_deltas, ladder.total_gap, abs_tol=1e-9)
    # the metric tells pipelines apart (measured: PIL's antialiased resize moves mAP on these photographs),
    # so the zero deltas above are a real check
    assert by["resize"].delta != 0
    # explain and eval agree on the pipelines they share
    rows = _by(ssd_report)
    assert ladder.steps[0].value == rows[("mxnet", "mxnet", "mxnet")]["mAP"]
    assert by["preprocess"].row.to_dict()["metrics"] == rows[("torch", "cv2-exact", "mxnet")]


def test_pose_keypoints_and_metrics_identical(converted, data):
    path = data("coco-keypoints")
    report = evaluate(converted(POSE), path, ["mxnet", "cv2-exact"], ["torch", "mxnet"], progress=False)
    rows = _by(report)
    assert all(m == rows[("mxnet", "mxnet", None)] for m in rows.values())  # COCO keypoint AP: 0 on a seeded net
    configs = [Config(fw, pre, None) for fw in ("mxnet", "torch") for pre in ("mxnet", "cv2-exact")]
    preds = _predictions(converted(POSE), path, configs)
    ref = np.concatenate(preds[configs[0]])
    assert len(ref) == 2  # the fixture's two people
    for c in configs[1:]:
        got = np.concatenate(preds[c])
        assert np.array_equal(got[..., :2], ref[..., :2]), c  # the peak cell of every joint
        np.testing.assert_allclose(got[..., 2], ref[..., 2], rtol=1e-4, atol=1e-6)  # peak heights, fp32


@pytest.mark.slow  # a dilated ResNet-50 at 480x480: ~10 s per forward on 2 shared cores
def test_segmentation_metrics_equal_up_to_logit_ties(converted, data):
    report = evaluate(converted(SEG), data("ade20k", 2), ["mxnet", "cv2-exact"], ["torch", "mxnet"], progress=False)
    rows = _by(report)
    for fw in ("torch", "mxnet"):  # bit-exact preprocessing: the same maps, the same metrics
        assert rows[(fw, "cv2-exact", None)] == rows[(fw, "mxnet", None)]
    ref, got = rows[("mxnet", "mxnet", None)], rows[("torch", "mxnet", None)]
    assert ref["pixAcc"] > 0
    # across frameworks argmax flips at fp32 logit ties (verify counts them: ~60 of 460800 pixels on
    # this net) move a few pixels: pixAcc (percent) within 1e-4 of the pixels, i.e. 0.01 points; a
    # seeded net's pixAcc is ~3%, so a relative bound would amplify 3 flipped pixels (2.6932 vs 2.6927).
    # mIoU (~0.05% here): a flipped pixel moves one class's IoU by at most 100/union points, averaged
    # over the classes: 1e-3 points (measured 1e-5: 0.051582 vs 0.051572)
    assert math.isclose(got["pixAcc"], ref["pixAcc"], abs_tol=0.01), (got["pixAcc"], ref["pixAcc"])
    assert math.isclose(got["mIoU"], ref["mIoU"], abs_tol=1e-3), (got["mIoU"], ref["mIoU"])


def test_two_processes_give_what_one_gives(converted, data, tmp_path):
    """torchrun, 2 CPU processes (gloo): samples 0::2 and 1::2, gathered and scored once on rank 0."""
    path = data("voc07")
    one = evaluate(converted(SSD), path, ["cv2-exact"], ["torch"], ["mxnet", "naive"], progress=False)
    out = tmp_path / "two.json"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "parity.cli", "eval", SSD, "--data", str(path), "--init", "random", "--preprocess", "cv2-exact",
           "--nms", "mxnet,naive", "--json", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MXNET_GLUON_REPO": "http://127.0.0.1:9/"}
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    two = json.loads(out.read_text())
    assert two["world_size"] == 2 and two["n"] == one.n == 6
    assert [r["metrics"] for r in two["rows"]] == [r.to_dict()["metrics"] for r in one.rows]
    assert one.rows[0].metrics["mAP"] > 0
    assert res.stdout.count("all 6 samples, 2 processes") == 1  # only rank 0 prints
