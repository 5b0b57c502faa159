"""converters/arch/paddle_ops.py's layer forms of Paddle ops used by the classification families,
against formulas written from the ops' definitions (no paddle; the parity suite compares them with
paddle itself in parity/tests/test_paddle_classification.py)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

from converters.arch.paddle_ops import BatchNormAct, DownscaleInInfer, fold_bn_relu


@pytest.mark.parametrize("act", [None, "relu"])
def test_batchnorm_act_is_the_batchnorm_formula_then_the_activation(act):
    """(x - mean) / sqrt(var + eps) * scale + offset, then max(0, .) when act is ReLU; float64 so
    only the order of operations differs; the keys are a plain BatchNorm2d's."""
    rng, c, eps = np.random.default_rng(0), 5, 1e-3
    bn = BatchNormAct(c, nn.ReLU() if act else None, eps=eps).double().eval()
    scale, offset, mean = (rng.standard_normal(c) for _ in range(3))
    var = np.abs(rng.standard_normal(c)) + 0.1
    with torch.no_grad():
        for t, v in ((bn.weight, scale), (bn.bias, offset), (bn.running_mean, mean), (bn.running_var, var)):
            t.copy_(torch.from_numpy(v))
    x = rng.standard_normal((2, c, 3, 4))
    r = lambda a: a.reshape(1, c, 1, 1)  # noqa: E731
    want = (x - r(mean)) / np.sqrt(r(var) + eps) * r(scale) + r(offset)
    want = np.maximum(want, 0) if act else want
    with torch.no_grad():
        got = bn(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    assert (want == 0).any() == bool(act)
    assert list(bn.state_dict()) == list(nn.BatchNorm2d(c).state_dict())


def test_fold_bn_relu_keeps_function_and_keys():
    """torchvision's ShuffleNetV2: every BN that a ReLU follows is folded, the rest left alone; the
    output is bit for bit the unfolded net's and the state dict loads into it unchanged."""
    torch.manual_seed(0)
    plain = torchvision.models.shufflenet_v2_x0_5(weights=None).eval()
    folded = fold_bn_relu(torchvision.models.shufflenet_v2_x0_5(weights=None)).eval()
    folded.load_state_dict(plain.state_dict())
    acts = [m for m in folded.modules() if isinstance(m, BatchNormAct)]
    plain_bns = [m for m in folded.modules() if type(m) is nn.BatchNorm2d]
    assert acts and plain_bns  # the BNs before a linear 1x1 / depthwise conv stay plain
    assert not any(isinstance(m, nn.ReLU) and not isinstance(p, BatchNormAct)
                   for p in folded.modules() for m in p.children())
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(folded(x), plain(x))


def test_downscale_in_infer_scales_in_eval_too():
    d = DownscaleInInfer(0.2).eval()
    x = torch.randn(3, 4)
    assert torch.equal(d(x), x * 0.8) and not torch.equal(d(x), x)
