"""`zooport eval` / `explain` on Paddle models: Paddle itself is the source framework row (its
dygraph net, post-processing included), preprocessing variants run in both, and the ladder starts at
Paddle's own pipeline (cv2 code: zooport's cv2-exact is bit-exact with it)."""
from __future__ import annotations

import importlib.util
import math

import pytest

from parity.evaluate import EvalError, evaluate
from parity.explain import explain
from parity.fixtures import build_tiny

pytestmark = [pytest.mark.oracle, pytest.mark.usefixtures("one_thread"),
              pytest.mark.skipif(importlib.util.find_spec("paddle") is None, reason="paddle is not installed")]

CLS = "ResNet18"


@pytest.fixture(scope="module")
def imagenet(tmp_path_factory):
    return build_tiny("imagenet", tmp_path_factory.mktemp("paddle-eval") / "imagenet", 8)




def _by(report):
    return {(r.framework, r.preprocess, r.nms): r.to_dict()["metrics"] for r in report.rows}


def test_paddle_classifier_same_metrics_in_paddle_and_torch(converted, imagenet):
    report = evaluate(converted(CLS), imagenet, ["cv2-exact", "pil"], ["torch", "paddle"], progress=False)
    rows = _by(report)
    assert len(report.rows) == 4 and report.n == 8
    for pre in ("cv2-exact", "pil"):
        assert rows[("torch", pre, None)] == rows[("paddle", pre, None)], pre


def test_paddle_ladder_starts_at_paddle_s_pipeline(converted, imagenet):
    ladder = explain(converted(CLS), imagenet, target="pil", progress=False)
    stages = [s.stage for s in ladder.steps]
    assert stages[:2] == ["source", "framework"] and "mxnet" not in str(ladder.steps[0].change).lower()
    assert ladder.steps[0].row.framework == "paddle" and ladder.steps[1].delta == 0
    assert math.isclose(ladder.sum_of_deltas, ladder.total_gap, abs_tol=1e-9)


def test_mxnet_is_refused_for_a_paddle_model(converted, imagenet):
    with pytest.raises(EvalError, match="source framework paddle"):
        evaluate(converted(CLS), imagenet, ["cv2-exact"], ["mxnet"], progress=False)
