"""Torch activation capture and HDF5 run storage."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from parity.capture import load_run, run_torch, save_run


class Two(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(4, 3)
        self.b = nn.Linear(3, 2)

    def forward(self, x):
        h = self.a(x)
        return self.b(h), h


def test_run_torch_captures_outputs_inputs_and_order():
    torch.manual_seed(0)
    m = Two().eval()
    x = np.random.default_rng(0).standard_normal((2, 4)).astype(np.float32)
    out, caps, order = run_torch(m, x, ["b", "a", "b#in"])
    assert order == ["a", "b#in", "b"]  # an input is captured before its module runs
    np.testing.assert_array_equal(caps["a"], caps["b#in"])  # b's input is a's output
    np.testing.assert_array_equal(caps["b"], out[0])
    assert not m.a._forward_hooks and not m.b._forward_hooks  # hooks removed


def test_hdf5_run_round_trip(tmp_path):
    caps = {"layer1.conv": np.arange(6, dtype=np.float32).reshape(2, 3),
            "features:ssd0_relu/0": np.ones(3), "dec": (np.zeros(2), np.full(2, 7.0))}
    path = save_run(tmp_path / "run.h5", caps, {"image": "astronaut", "seed": 0})
    arrays, meta = load_run(path)
    assert meta == {"image": "astronaut", "seed": 0}
    np.testing.assert_array_equal(arrays["layer1.conv"], caps["layer1.conv"])
    np.testing.assert_array_equal(arrays["features:ssd0_relu/0"], np.ones(3))
    np.testing.assert_array_equal(arrays["dec[1]"], np.full(2, 7.0))
    assert [p.name for p in tmp_path.iterdir()] == ["run.h5"]  # no temp file left


def test_captures_survive_in_place_ops():
    """torchvision's ReLU(inplace=True) rewrites the tensor a capture was taken from."""
    m = nn.Sequential(nn.Linear(3, 3), nn.ReLU(inplace=True)).eval()
    with torch.no_grad():
        m[0].weight.copy_(torch.eye(3))
        m[0].bias.zero_()
    x = np.array([[1.0, -2.0, 3.0]], dtype=np.float32)
    _, caps, _ = run_torch(m, x, ["0", "1#in", "1"])
    assert (caps["0"] < 0).any() and np.array_equal(caps["0"], caps["1#in"])
    assert (caps["1"] >= 0).all()
