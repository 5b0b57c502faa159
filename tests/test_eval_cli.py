"""`zooport eval` / `zooport explain` without MXNet: a randomly initialised torch module stands in
for the conversion, on a tiny folder dataset of real photographs. Checks the options, the --limit
rule, the table, the atomically written JSON, the ladder's arithmetic and the sharded scoring."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from converters import registry
from converters.pipeline import ConversionResult
from parity import evaluate as ev
from parity.cli import app
from parity.fixtures import build_tiny

runner = CliRunner()
MODEL = "cifar_resnet20_v1"  # 0.3M parameters, 32x32: milliseconds per image

pytestmark = pytest.mark.usefixtures("one_thread")


def _random_conversion(name, weights=None, init=None, seed=0, **_):
    spec = registry.get(name)
    torch.manual_seed(seed)
    module = spec.build().eval()
    return ConversionResult(spec, module, module.state_dict(), [], Path(f"{name}-random.params"), "gluon",
                            seed=seed, manifest={"source": {"sha256": "0" * 64}})


class _TorchAsMXNet:
    """Stands in for gluoncv's net (explain's source step) so the ladder runs without MXNet."""

    def __init__(self, result):
        from parity.predict import TorchNet
        self.net = TorchNet(result.module)

    def __call__(self, x, variants):
        return self.net(x, variants)




@pytest.fixture(autouse=True)
def no_mxnet(monkeypatch):
    monkeypatch.setattr(ev, "convert", _random_conversion)
    monkeypatch.setattr("parity.predict.MXNetNet", _TorchAsMXNet)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return build_tiny("folder", tmp_path_factory.mktemp("eval") / "folder", 6)


def _eval(*args):
    return runner.invoke(app, ["eval", MODEL, *args])


def test_eval_prints_a_table_and_writes_json_atomically(folder, tmp_path):
    out = tmp_path / "report.json"
    res = _eval("--data", str(folder), "--preprocess", "cv2-exact,pil", "--init", "random", "--json", str(out))
    assert res.exit_code == 0, res.stderr
    assert "all 6 samples" in res.stdout and "top1" in res.stdout and "seconds" in res.stdout
    report = json.loads(out.read_text())
    assert [(r["framework"], r["preprocess"], r["nms"], r["n"]) for r in report["rows"]] == [
        ("torch", "cv2-exact", None, 6), ("torch", "pil", None, 6)]
    assert set(report["rows"][0]["metrics"]) == {"top1", "top5"}
    assert report["complete"] and report["n"] == report["dataset"]["size"] == 6 and report["limit"] is None
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]  # no temp file left behind


def test_limit_evaluates_the_first_n_and_says_so(folder, tmp_path):
    out = tmp_path / "r.json"
    res = _eval("--data", str(folder), "--limit", "4", "--json", str(out))
    assert res.exit_code == 0, res.stderr
    assert "4 of 6 samples (--limit)" in res.stdout
    report = json.loads(out.read_text())
    assert (report["n"], report["limit"], report["complete"]) == (4, 4, False)
    assert report["rows"][0]["n"] == 4


@pytest.mark.parametrize("limit,message", [
    ("7", "--limit 7: the dataset at {} holds 6 samples"),
    ("0", "--limit 0: evaluate at least one sample (the dataset at {} holds 6)")])
def test_limit_outside_the_dataset_is_an_error(folder, tmp_path, limit, message):
    res = _eval("--data", str(folder), "--limit", limit, "--json", str(tmp_path / "r.json"))
    assert res.exit_code == 2
    assert message.format(folder) in res.stderr.replace("\n", " ")
    assert not (tmp_path / "r.json").exists()


def test_fewer_samples_than_asked_is_an_error(folder, tmp_path, monkeypatch):
    """A sample lost on the way (here: one dropped from the shard) fails the run; nothing is written."""
    monkeypatch.setattr(ev.Job, "indices", property(lambda self: range(self.rank, self.n - 1, self.world)))
    res = _eval("--data", str(folder), "--json", str(tmp_path / "r.json"))
    assert res.exit_code == 2
    assert "evaluated 5 of the 6 samples asked for (the dataset holds 6)" in res.stderr.replace("\n", " ")
    assert not (tmp_path / "r.json").exists()


@pytest.mark.parametrize("args,message", [
    (["--preprocess", "pil,bogus"], "--preprocess bogus: expected a comma list of mxnet, cv2-exact, pil, torchvision"),
    (["--framework", "tf"], "--framework tf: expected a comma list of torch, mxnet, paddle"),
])
def test_unknown_names_are_one_line_errors(folder, args, message):
    res = _eval("--data", str(folder), *args)
    assert res.exit_code == 2
    assert res.stderr.strip().splitlines()[0] == f"error: {message}"


def test_missing_data_names_the_path(tmp_path):
    res = _eval("--data", str(tmp_path / "nowhere"))
    assert res.exit_code == 2 and str(tmp_path / "nowhere") in res.stderr


def test_rows_are_framework_x_preprocess_x_nms_and_mxnet_keeps_its_own_nms():
    configs, notes = ev.configs_for(registry.get("ssd_300_vgg16_atrous_voc"), ["mxnet", "pil"], ["torch", "mxnet"],
                                    ["mxnet", "naive"])
    assert [(c.framework, c.preprocess, c.nms) for c in configs] == [
        ("torch", "mxnet", "mxnet"), ("torch", "mxnet", "naive"), ("torch", "pil", "mxnet"), ("torch", "pil", "naive"),
        ("mxnet", "mxnet", "mxnet"), ("mxnet", "pil", "mxnet")]
    assert notes == ["framework mxnet runs MXNet's own box_nms only: no mxnet row for nms naive"]
    configs, notes = ev.configs_for(registry.get(MODEL), ["pil"], ["torch"], ["naive"])
    assert [c.nms for c in configs] == [None]
    assert notes == ["--nms ignored: cifar_resnet20_v1 is a classification model"]


def test_sharded_scoring_equals_one_process(folder):
    """Ranks 0 and 1 of 2 predict samples 0::2 and 1::2; scored together they give one process's rows."""
    result = _random_conversion(MODEL)
    configs, _ = ev.configs_for(result.spec, ["cv2-exact", "pil"], ["torch"], ["mxnet"])
    one = ev.prepare(result, folder)
    parts = []
    for rank in (0, 1):
        job = ev.Job(one.result, one.dataset, one.n, None, rank, 2)
        assert list(job.indices) == list(range(rank, 6, 2))
        parts.append(ev.predict_shard(job, configs))
    sharded = ev._score(one, configs, parts)
    single = ev._score(one, configs, [ev.predict_shard(one, configs)])
    assert [r.metrics for r in sharded] == [r.metrics for r in single]
    assert [r.n for r in sharded] == [6, 6]


def test_not_distributed_without_torchrun(monkeypatch):
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert ev.distributed() == (0, 1)


@pytest.mark.oracle  # the source step runs gluoncv's own transforms (the "mxnet" preprocessing variant)
def test_explain_ladder_table_and_json(folder, tmp_path):
    out = tmp_path / "ladder.json"
    res = runner.invoke(app, ["explain", MODEL, "--data", str(folder), "--to", "pil", "--json", str(out)])
    assert res.exit_code == 0, res.stderr
    ladder = json.loads(out.read_text())
    # CIFAR's record has no crop and the same colour order: those steps change nothing and are left out
    assert [s["stage"] for s in ladder["steps"]] == ["source", "framework", "preprocess", "decoder", "resize"]
    assert ladder["metric"] == "top1" and ladder["steps"][0]["delta"] == 0
    values = [s["value"] for s in ladder["steps"]]
    assert all(math.isclose(s["delta"], b - a) for s, a, b in zip(ladder["steps"][1:], values, values[1:]))
    assert math.isclose(ladder["sum_of_deltas"], ladder["total_gap"], abs_tol=1e-9)
    assert ladder["total_gap"] == values[-1] - values[0]
    assert "total gap in top1" in res.stdout and "sum of the step deltas" in res.stdout
    assert ladder["target"] == {"framework": "torch", "preprocess": "pil", "nms": None}


def test_explain_rejects_the_source_variant_as_target(folder):
    res = runner.invoke(app, ["explain", MODEL, "--data", str(folder), "--to", "mxnet"])
    assert res.exit_code == 2 and "--to 'mxnet'" in res.stderr


def test_voc_is_scored_at_input_scale_for_ssd_and_yolo_presets():
    """eval_ssd/eval_yolo score VOC on input-scale boxes against ground truth resized by the val
    transform (float64 scale, float32 cast); the +1 pixel IoU makes that differ from original scale."""
    import numpy as np
    from parity.predict import detect, gt_at_input_scale
    out = (np.array([[[3.0]]]), np.array([[[0.9]]]), np.array([[[10.0, 20.0, 310.0, 330.0]]]))
    ssd = detect(out, "ssd", (300, 300), (480, 640))
    assert np.allclose(ssd["input_boxes"], [[10, 20, 300, 300]])  # clipped to the input side
    assert np.allclose(ssd["boxes"], [[10 * 640 / 300, 20 * 480 / 300, 640, 480]])
    gt = gt_at_input_scale(np.array([[64.0, 48.0, 639.0, 479.0]], np.float32), ssd["input_scale"])
    assert gt.dtype == np.float32 and np.allclose(gt, [[30, 30, 639 * 300 / 640, 479 * 300 / 480]])
    rcnn = detect(out, "rcnn", (600, 800), (480, 640))
    assert "input_scale" not in rcnn and np.allclose(rcnn["boxes"], np.array([[10, 20, 310, 330]]) * 0.8)
