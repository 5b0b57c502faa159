"""parity/reference64.py: the float64 reference run's depthwise convolutions (tap sums) equal
torch's own float64 kernel to float64 rounding, and the copy keeps paths and hooks."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from parity.capture import run_torch
from parity.reference64 import grouped_conv2d_taps, reference64


@pytest.mark.parametrize("c,o,g,k,s,p,d,hw", [
    (16, 16, 16, 3, 1, 1, 1, (17, 19)),           # depthwise
    (16, 32, 16, 3, 2, 1, 1, (16, 15)),           # channel multiplier 2, stride 2
    (8, 8, 8, 5, 2, 2, 1, (13, 11)),              # 5x5, odd sizes
    (8, 8, 8, 3, 1, 2, 2, (9, 10)),               # dilated
    (8, 8, 8, (3, 5), (1, 2), (1, 2), 1, (11, 13)),  # rectangular kernel, per-axis stride/padding
    (12, 24, 4, 3, 1, 1, 1, (7, 8)),              # plain grouped conv
])
def test_tap_sum_equals_torch_conv2d_in_float64(c, o, g, k, s, p, d, hw):
    gen = torch.Generator().manual_seed(0)
    kk = (k, k) if isinstance(k, int) else k
    x = torch.randn(2, c, *hw, generator=gen, dtype=torch.float64)
    w = torch.randn(o, c // g, *kk, generator=gen, dtype=torch.float64)
    b = torch.randn(o, generator=gen, dtype=torch.float64)
    ref = F.conv2d(x, w, b, s, p, d, g)
    got = grouped_conv2d_taps(x, w, b, s, p, d, g)
    assert got.shape == ref.shape
    assert float((got - ref).abs().max()) <= 1e-12 * float(ref.abs().max())


def test_reference_copy_matches_double_and_keeps_hooks():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
                        nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=8),   # depthwise: replaced
                        nn.Conv2d(8, 8, 3, padding=1, groups=2),             # grouped: torch's kernel
                        nn.Conv2d(8, 4, 1)).eval()
    ref = reference64(net)
    assert "forward" in vars(ref[2])
    assert "forward" not in vars(ref[0]) and "forward" not in vars(ref[3])
    assert next(net.parameters()).dtype == torch.float32  # the original is untouched
    x = torch.randn(1, 3, 15, 14).double().numpy()
    out, cap, order = run_torch(ref, x, ["2", "4"])
    base, base_cap, _ = run_torch(net.double(), x, ["2", "4"])
    assert order == ["2", "4"]
    assert abs(out - base).max() <= 1e-12 and abs(cap["2"] - base_cap["2"]).max() <= 1e-12
