"""`python -m parity.bench --quick` end to end (fresh child processes, real MXNet and Paddle): `make parity-full`."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from parity import bench

# `oracle`: the root conftest skips without mxnet/gluoncv (or fails, under ZOOPORT_REQUIRE_ORACLES=1)
pytestmark = [pytest.mark.slow, pytest.mark.oracle]

MODEL = "resnet50_v1"


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    out = tmp_path_factory.mktemp("bench")
    assert bench.main(["--quick", "--models", MODEL, "--out", str(out)]) == 0
    return json.loads((out / "bench.json").read_text()), out


def _positive(x) -> bool:
    return isinstance(x, (int, float)) and x > 0


def test_top_level_keys(report) -> None:
    data, _ = report
    assert {"command", "date_utc", "machine", "settings", "units", "models"} <= set(data)
    assert data["command"] == f"python -m parity.bench --quick --models {MODEL} --out {report[1]}"
    m = data["machine"]
    assert m["cpu_model"] and _positive(m["logical_cores"]) and m["torch"] and m["mxnet"]
    assert data["settings"]["quick"] is True and list(data["models"]) == [MODEL]


def test_conversion_numbers(report) -> None:
    conv = report[0]["models"][MODEL]["conversion"]
    for route in ("zooport", "raw_io", "framework"):
        assert _positive(conv[route]["wall_s"]) and _positive(conv[route]["peak_rss_mib"])
        assert all(v >= 0 for v in conv[route]["phases_s"].values())
    assert conv["zooport"]["source_framework_imported"] is False
    assert conv["raw_io"]["bytes"] > 100 << 20  # resnet50_v1's 25.6M float32 parameters, read whole
    assert conv["same_output_bytes"] is True  # both routes wrote the same file
    for key in ("framework_over_zooport", "zooport_over_raw_io"):
        assert _positive(conv[key]["wall"]) and _positive(conv[key]["peak_rss"])


def test_inference_numbers(report) -> None:
    inference = report[0]["models"][MODEL]["inference"]
    assert inference["source_framework"] == "mxnet" and list(inference["batches"]) == ["batch_1"]  # --quick
    entry = inference["batches"]["batch_1"]
    for side in ("torch", "source"):
        assert entry[side]["runs"] == 3 and len(entry[side]["times_ms"]) == 3
        assert _positive(entry[side]["median_ms"])
    assert _positive(entry["source_over_torch"])


def test_harness_preprocessing_and_metrics(report) -> None:
    data = report[0]
    h = data["harness"]
    assert h["passed"] and h["layer_pairs"] == 107 and h["verify_over_plain_forwards"] > 1
    assert set(data["preprocessing"]["variants"]) == {"mxnet", "cv2-exact", "pil", "torchvision"}
    assert all(_positive(v["images_per_s"]) and v["images"] == 26 for v in data["preprocessing"]["variants"].values())
    for key in ("voc07", "coco_box"):
        m = data["metrics"][key]
        assert m["same_value"] is True and _positive(m["zooport"]["seconds"]) and _positive(m["gluoncv"]["seconds"])


def test_markdown_table(report) -> None:
    text = (report[1] / "bench.md").read_text()
    assert f"| {MODEL} |" in text and "| Model |" in text
    assert "python -m parity.bench --quick" in text
    assert not list(report[1].glob(".*.tmp"))  # atomic writes left no temp files
