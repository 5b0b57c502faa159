"""`python -m parity.bench --quick` end to end (fresh child processes, real MXNet): `make parity-full`."""
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
    for route in ("zooport", "framework"):
        assert _positive(conv[route]["wall_s"]) and _positive(conv[route]["peak_rss_mib"])
        assert all(v >= 0 for v in conv[route]["phases_s"].values())
    assert conv["zooport"]["mxnet_imported"] is False
    assert conv["same_output_bytes"] is True  # both routes wrote the same file
    assert _positive(conv["framework_over_zooport"]["wall"]) and _positive(conv["framework_over_zooport"]["peak_rss"])


def test_inference_numbers(report) -> None:
    batches = report[0]["models"][MODEL]["inference"]["batches"]
    assert list(batches) == ["batch_1"]  # --quick: batch 1 only
    entry = batches["batch_1"]
    for side in ("torch", "mxnet"):
        assert entry[side]["runs"] == 3 and len(entry[side]["times_ms"]) == 3
        assert _positive(entry[side]["median_ms"])
    assert _positive(entry["mxnet_over_torch"])


def test_markdown_table(report) -> None:
    text = (report[1] / "bench.md").read_text()
    assert f"| {MODEL} |" in text and "| Model |" in text
    assert "python -m parity.bench --quick" in text
    assert not list(report[1].glob(".*.tmp"))  # atomic writes left no temp files
