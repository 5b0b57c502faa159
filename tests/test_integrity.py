"""Integrity flags of `zooport convert` and the checks of `zooport verify --weights FILE`.

Sources are synthetic PaddleClas MobileNetV1 checkpoints (tests/test_paddle_cls_fixtures.py: every
tensor under its dygraph name, shaped for its target; no framework), and the PP-OCR classifier of
the installed wheel where a registered source is needed.
"""
from __future__ import annotations

import hashlib
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from converters import registry
from converters.io.mxnet_params import BFLOAT16
from converters.io.writer import read_weights
from converters.paddle import mobilenet as pm
from parity.cli import app
from test_paddle_cls_fixtures import synthetic_source, write_fluid_dir, write_pdparams
from tests import fuzz_seeds

ROOT = Path(__file__).resolve().parents[1]
MODEL = "MobileNetV1"
runner = CliRunner()
pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def tensors() -> dict[str, np.ndarray]:
    return synthetic_source(registry.get(MODEL), pm.fluid_names(1))


def _convert(source: Path, out: Path, *extra: str):
    return runner.invoke(app, ["convert", MODEL, "--weights", str(source), "--out", str(out), *extra])


def _outputs(out: Path) -> tuple[dict[str, torch.Tensor], dict]:
    return read_weights(out / f"{MODEL}.safetensors")[0], json.loads((out / f"{MODEL}.json").read_text())


# --- NaN / Inf ----------------------------------------------------------------------------------

def test_nonfinite_source_is_refused_unless_allowed(tensors, tmp_path):
    bad = dict(tensors)
    bad["conv.conv.weight"] = bad["conv.conv.weight"].copy()
    bad["conv.conv.weight"].reshape(-1)[[0, 5, 7]] = [np.nan, np.inf, np.nan]
    bad["fc.bias"] = bad["fc.bias"].copy()
    bad["fc.bias"][3] = -np.inf
    source = write_pdparams(tmp_path / "nan.pdparams", bad)
    res = _convert(source, tmp_path / "out")
    assert res.exit_code == 2
    first = res.stderr.strip().splitlines()[0]
    assert str(source) in first and "2 tensor(s) hold NaN or Inf" in first, first
    assert "'conv.conv.weight' (2 nan, 1 posinf)" in first and "'fc.bias' (1 neginf)" in first
    assert "--allow-nonfinite" in res.stderr
    assert not (tmp_path / "out").exists()

    res = _convert(source, tmp_path / "out", "--allow-nonfinite")
    assert res.exit_code == 0, res.stderr
    state, manifest = _outputs(tmp_path / "out")
    assert manifest["metadata"]["allow_nonfinite"] == "true"
    targets = {r["source"]: r["target"] for r in manifest["mapping"] if r["source"]}
    assert manifest["nonfinite"] == [
        {"tensor": "conv.conv.weight", "target": targets["conv.conv.weight"], "nan": 2, "posinf": 1, "neginf": 0},
        {"tensor": "fc.bias", "target": targets["fc.bias"], "nan": 0, "posinf": 0, "neginf": 1}]
    assert "warning: non-finite values allowed in conv.conv.weight" in res.stderr.replace("\n", " ")
    assert torch.isneginf(state[targets["fc.bias"]][3])


def test_clean_sources_give_the_same_bytes_with_or_without_the_flag(tensors, tmp_path):
    source = write_pdparams(tmp_path / "ok.pdparams", tensors)
    assert _convert(source, tmp_path / "a").exit_code == 0
    assert _convert(source, tmp_path / "b", "--allow-nonfinite").exit_code == 0
    for name in (f"{MODEL}.safetensors", f"{MODEL}.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


# --- dtypes -------------------------------------------------------------------------------------

def _floats(state: dict[str, torch.Tensor]) -> set[torch.dtype]:
    return {t.dtype for t in state.values() if t.is_floating_point()}


@pytest.mark.parametrize("flag, want", [(None, torch.float16), ("float32", torch.float32),
                                        ("bfloat16", torch.bfloat16), ("float16", torch.float16)])
def test_fp16_source_stays_fp16_unless_cast(tensors, tmp_path, flag, want):
    half = {k: v.astype(np.float16) for k, v in tensors.items()}
    source = write_pdparams(tmp_path / "half.pdparams", half)
    res = _convert(source, tmp_path / "out", *(["--dtype", flag] if flag else []))
    assert res.exit_code == 0, res.stderr
    state, manifest = _outputs(tmp_path / "out")
    assert _floats(state) == {want}
    assert state["stem.bn.num_batches_tracked"].dtype == torch.int64  # integers are never cast
    assert manifest["metadata"].get("dtype") == flag
    fc = torch.from_numpy(half["fc.weight"].T.astype(np.float32))
    assert torch.equal(state["fc.weight"].float(), fc.to(want).float())  # each value once rounded
    rows = {r["source"]: r for r in manifest["mapping"] if r["source"]}
    assert rows["fc.weight"]["dtype"] == "float16"  # the audit table keeps the source dtype


def test_bf16_and_mixed_sources_keep_each_dtype(tensors, tmp_path):
    """bfloat16 (a fluid directory: Paddle's dtype 22) comes back bfloat16 bit for bit; a mixed
    checkpoint keeps each tensor's dtype and its defaults take float32."""
    def bf16(a):  # round to nearest even, as torch does
        return torch.from_numpy(a).to(torch.bfloat16)
    names = pm.fluid_names(1)
    root = tmp_path / "fluid"
    root.mkdir()
    for key, arr in tensors.items():
        words = bf16(arr).view(torch.int16).numpy().view("<u2").view(BFLOAT16)
        (root / names[key]).write_bytes(fuzz_seeds.tensor_record(words))
    res = _convert(root, tmp_path / "out")
    assert res.exit_code == 0, res.stderr
    state, manifest = _outputs(tmp_path / "out")
    assert _floats(state) == {torch.bfloat16}
    assert torch.equal(state["fc.weight"], bf16(tensors["fc.weight"].T.copy()))
    assert {r["dtype"] for r in manifest["mapping"] if r["source"]} == {"bfloat16"}

    mixed = dict(tensors, **{"fc.weight": tensors["fc.weight"].astype(np.float16)})
    res = _convert(write_pdparams(tmp_path / "mixed.pdparams", mixed), tmp_path / "mixed")
    assert res.exit_code == 0, res.stderr
    state, _ = _outputs(tmp_path / "mixed")
    assert state["fc.weight"].dtype == torch.float16 and state["fc.bias"].dtype == torch.float32


def test_cast_overflow_and_integer_sources_are_refused(tensors, tmp_path):
    big = dict(tensors, **{"fc.bias": tensors["fc.bias"] * 1e6})  # beyond float16's 65504
    source = write_pdparams(tmp_path / "big.pdparams", big)
    res = _convert(source, tmp_path / "out", "--dtype", "float16")
    assert res.exit_code == 2 and "overflow to Inf when cast to float16" in res.stderr.replace("\n", " ")
    assert not (tmp_path / "out").exists()
    ints = dict(tensors, **{"fc.bias": tensors["fc.bias"].view(np.uint16)[::2].copy()})  # bf16 as Paddle pickles it
    res = _convert(write_pdparams(tmp_path / "int.pdparams", ints), tmp_path / "out")
    assert res.exit_code == 2 and "integer tensor(s) for floating targets: 'fc.bias' (torch.uint16)" in \
        res.stderr.replace("\n", " ")


# --- byte-identical outputs ---------------------------------------------------------------------

def test_outputs_are_byte_identical_across_processes_and_directories(tensors, tmp_path):
    """The manifest holds no timestamp, path or hash-order-dependent field: two runs, in different
    processes (different PYTHONHASHSEED) and directories, write the same bytes."""
    source = write_pdparams(tmp_path / "src.pdparams", tensors)
    assert _convert(source, tmp_path / "a").exit_code == 0
    env = dict(os.environ, PYTHONHASHSEED="12345")
    done = subprocess.run([sys.executable, "-m", "parity.cli", "convert", MODEL, "--weights", str(source),
                           "--out", str(tmp_path / "b" / "deeper")], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    for name in (f"{MODEL}.safetensors", f"{MODEL}.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / "deeper" / name).read_bytes(), name
    assert "date" not in (tmp_path / "a" / f"{MODEL}.json").read_text().lower()


# --- zooport verify --weights FILE --------------------------------------------------------------

def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _verify(model: str, weights: Path):
    res = runner.invoke(app, ["verify", model, "--weights", str(weights)])
    return res, (res.stderr.strip().splitlines() or [""])[0]


def test_verify_weights_refuses_a_file_that_changed(tensors, tmp_path):
    source = write_pdparams(tmp_path / "src.pdparams", tensors)
    assert _convert(source, tmp_path / "out").exit_code == 0
    weights, manifest = tmp_path / "out" / f"{MODEL}.safetensors", tmp_path / "out" / f"{MODEL}.json"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0x01  # one bit of the last tensor
    weights.write_bytes(bytes(data))
    res, first = _verify(MODEL, weights)
    assert res.exit_code == 2 and str(weights) in first
    assert f"sha256 {_sha(weights)} does not match its manifest's" in first, first

    info = json.loads(manifest.read_text())  # the manifest edited to match: the source decides
    info["output"]["sha256"] = _sha(weights)
    manifest.write_text(json.dumps(info))
    res, first = _verify(MODEL, weights)
    assert res.exit_code == 2 and "is not available here" in first  # a user's own source: named
    manifest.unlink()
    res, first = _verify(MODEL, weights)
    assert res.exit_code == 2 and f"no manifest {MODEL}.json beside it" in first
    res, first = _verify("MobileNetV2", tmp_path / "nowhere.safetensors")
    assert res.exit_code == 2 and "no manifest" in first


@pytest.mark.oracle  # the wheel's PP-OCR files (no framework runs here)
def test_verify_weights_redoes_the_conversion_from_its_registered_source(tmp_path):
    from converters.integrity import reconvert
    model = "ppocr_mobile_v2_cls"
    assert runner.invoke(app, ["convert", model, "--out", str(tmp_path), "--dtype", "float16"]).exit_code == 0
    weights = tmp_path / f"{model}.safetensors"
    result = reconvert(model, weights)  # sha256 checked, then converted again with the recorded --dtype
    assert _floats(result.state_dict) == {torch.float16}
    state, _ = read_weights(weights)
    assert all(torch.equal(state[k], result.state_dict[k]) for k in state)

    data = bytearray(weights.read_bytes())  # weights and manifest edited together: caught by the source
    data[-2:] = b"\x00\x3c"  # the last float16 becomes 1.0
    weights.write_bytes(bytes(data))
    info = json.loads((tmp_path / f"{model}.json").read_text())
    info["output"]["sha256"] = _sha(weights)
    (tmp_path / f"{model}.json").write_text(json.dumps(info))
    res, first = _verify(model, weights)
    assert res.exit_code == 2 and "tensor(s) differ from a fresh conversion of its source" in first, first


def test_published_file_name_with_the_wrong_hash(tmp_path):
    record = registry.get("resnet50_v1").weights()
    fake = tmp_path / record.filename
    fake.write_bytes(b"\x12\x01" + b"\0" * 22)
    for command in ("convert", "verify"):
        res = runner.invoke(app, [command, "resnet50_v1", "--weights", str(fake), "--no-download"]
                            if command == "convert" else [command, "resnet50_v1", "--weights", str(fake)])
        first = res.stderr.strip().splitlines()[0]
        assert res.exit_code == 2 and f"does not match the published sha1 {record.sha1}" in first, first
    mine = tmp_path / "mine.params"  # the same bytes under the user's own name: read, and refused as data
    mine.write_bytes(fake.read_bytes())
    res = runner.invoke(app, ["convert", "resnet50_v1", "--weights", str(mine), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "published sha1" not in res.stderr and "mine.params" in res.stderr


@pytest.mark.oracle  # runs Paddle's executor on the wheel's classifier (~10 s)
def test_verify_weights_runs_parity_on_a_converted_file(tmp_path):
    model = "ppocr_mobile_v2_cls"
    assert runner.invoke(app, ["convert", model, "--out", str(tmp_path)]).exit_code == 0
    res = runner.invoke(app, ["verify", model, "--weights", str(tmp_path / f"{model}.safetensors"),
                              "--images", "1", "--json"])
    assert res.exit_code == 0, res.stderr
    report = json.loads(res.stdout)
    assert report["passed"] and report["source"]["file"] == "ch_ppocr_mobile_v2_cls_infer"
