"""The `zooport` command: list, convert, verify; errors are one line plus a hint, non-zero exit."""
from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from converters.io.writer import read_weights
from parity.cli import app

runner = CliRunner()
needs_oracle = pytest.mark.oracle  # seeded source weights are built by gluoncv


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    # a download attempt must never leave this machine: point the model store at a closed port
    monkeypatch.setenv("MXNET_GLUON_REPO", "http://127.0.0.1:9/")


def test_list_json_names_every_model():
    res = runner.invoke(app, ["list", "--json"])
    assert res.exit_code == 0
    rows = {r["name"]: r for r in json.loads(res.stdout)}
    assert rows["resnet50_v1"]["input"] == [224, 224]
    assert rows["ssd_512_resnet50_v1_voc"]["task"] == "detection"


def test_unknown_model_is_one_line_and_exit_2():
    res = runner.invoke(app, ["convert", "resnet51_v1"])
    assert res.exit_code == 2
    lines = res.stderr.strip().splitlines()
    assert lines[0].startswith("error: unknown model 'resnet51_v1'") and lines[1].startswith("hint:")


def test_offline_without_weights_names_the_three_ways(tmp_path, monkeypatch):
    monkeypatch.setenv("ZOOPORT_WEIGHTS_DIR", str(tmp_path / "src"))
    monkeypatch.setenv("MXNET_HOME", str(tmp_path / "mxhome"))
    res = runner.invoke(app, ["convert", "resnet50_v1", "--out", str(tmp_path)])
    assert res.exit_code == 2
    msg = res.stderr.replace("\n", " ")
    assert "--weights" in msg and "put resnet50_v1-cc729d95.params in" in msg and "--init random" in msg
    assert not list(tmp_path.glob("resnet50_v1.*"))


def test_truncated_checkpoint_names_file_and_offset(tmp_path):
    bad = tmp_path / "bad.params"
    bad.write_bytes((0x112).to_bytes(8, "little") + b"\0" * 8 + (5).to_bytes(8, "little") + b"\x01\x02")
    res = runner.invoke(app, ["convert", "resnet50_v1", "--weights", str(bad), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2
    first = res.stderr.strip().splitlines()[0]
    assert "bad.params" in first and "offset" in first
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


@needs_oracle
def test_convert_init_random_writes_weights_and_manifest(tmp_path):
    res = runner.invoke(app, ["convert", "resnet50_v1", "--init", "random", "--out", str(tmp_path)])
    assert res.exit_code == 0, res.stderr
    weights, manifest = tmp_path / "resnet50_v1.safetensors", tmp_path / "resnet50_v1.json"
    state, meta = read_weights(weights)
    info = json.loads(manifest.read_text())
    assert meta["model"] == "resnet50_v1" and meta["seeded"] == "true" and len(meta["rules_digest"]) == 64
    assert info["output"]["sha256"] in res.stdout
    assert info["counts"] == {"mapped": 299, "ignored": 0, "default": 53}
    assert len(info["mapping"]) == 299 + 53 and all(r["why"] for r in info["mapping"])
    assert len(state) == 299 + 53


@needs_oracle
def test_convert_pth_format(tmp_path):
    res = runner.invoke(app, ["convert", "resnet50_v1", "--init", "random", "--out", str(tmp_path), "--format", "pth"])
    assert res.exit_code == 0, res.stderr
    state, meta = read_weights(tmp_path / "resnet50_v1.pth")
    assert meta["model"] == "resnet50_v1" and "fc.weight" in state


@needs_oracle
def test_verify_prints_table_and_passes(tmp_path):
    res = runner.invoke(app, ["verify", "resnet50_v1", "--init", "random", "--images", "1", "--json"])
    assert res.exit_code == 0, res.stderr
    report = json.loads(res.stdout)
    assert report["passed"] and report["layers"]["pairs"] == 107 and report["layers"]["first_divergent"] is None
