"""The stable Python API: available(), convert(), load()."""
from __future__ import annotations


import pytest
import torch

import converters
from converters.errors import WeightsNotFound, ZooportError

needs_oracle = pytest.mark.oracle  # seeded source weights are built by gluoncv


def test_available_lists_registered_models():
    assert {"resnet50_v1", "ssd_512_resnet50_v1_voc"} <= set(converters.available())


def test_convert_offline_without_weights_raises(tmp_path, monkeypatch):
    monkeypatch.setenv("MXNET_GLUON_REPO", "http://127.0.0.1:9/")
    monkeypatch.setenv("ZOOPORT_WEIGHTS_DIR", str(tmp_path))
    monkeypatch.setenv("MXNET_HOME", str(tmp_path))
    with pytest.raises(WeightsNotFound):
        converters.convert("resnet50_v1")


def test_convert_rejects_unknown_init():
    with pytest.raises(ZooportError, match="--init"):
        converters.convert("resnet50_v1", init="zeros")


@needs_oracle
@pytest.mark.parametrize("name,shape", [("resnet50_v1", (1, 3, 224, 224)), ("ssd_512_resnet50_v1_voc", (1, 3, 512, 512))])
def test_load_returns_eval_module_equal_to_the_conversion(tmp_path, name, shape):
    result = converters.convert(name, init="random")
    weights, _ = result.write(tmp_path)
    module = converters.load(name, weights)
    assert not module.training
    x = torch.randn(*shape) * 0.5
    with torch.inference_mode():
        a, b = result.module(x), module(x)
    for u, v in zip(a if isinstance(a, tuple) else (a,), b if isinstance(b, tuple) else (b,)):
        assert torch.equal(u, v)
    if name.startswith("ssd"):
        assert [t.shape for t in b] == [(1, 100, 1), (1, 100, 1), (1, 100, 4)]


@needs_oracle
def test_load_refuses_another_models_weights(tmp_path):
    weights, _ = converters.convert("resnet50_v1", init="random").write(tmp_path)
    with pytest.raises(ZooportError, match="resnet50_v1"):
        converters.load("ssd_512_resnet50_v1_voc", weights)


@needs_oracle
def test_same_input_gives_byte_identical_outputs(tmp_path):
    a = converters.convert("resnet50_v1", init="random").write(tmp_path / "a")
    b = converters.convert("resnet50_v1", init="random").write(tmp_path / "b")
    assert a[0].read_bytes() == b[0].read_bytes() and a[1].read_bytes() == b[1].read_bytes()
