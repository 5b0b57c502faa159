"""PaddleClas DenseNets against paddle itself (the registry sweep in test_models.py runs dygraph
parity of DenseNet121; 161/201 run in parity-full): ppcls's own parameter names are the family's
static table, a fluid directory written by paddle converts to the same weights and passes, Paddle's
BatchNorm(act="relu") and pools op by op, and a port that keeps torchvision's separate ReLU
diverges at the first BN pair."""
from __future__ import annotations

import dataclasses
import importlib.util

import numpy as np
import pytest
import torch
import torchvision

from converters import registry
from converters.paddle import densenet as pdn
from converters.paddle import ppcls
from converters.samples import sample_photos
from parity.verify import verify

pytestmark = [pytest.mark.oracle,
              pytest.mark.skipif(importlib.util.find_spec("paddle") is None, reason="paddle is not installed")]

# odd sizes on the way down (49 after the stem conv, 25 after the max pool, 12 after transition 1):
# Paddle's floor-mode pools on odd maps; small enough to keep torch's float64 floor run cheap
ODD = (97, 97)


def _paddle():
    from converters.frameworks import import_paddle
    return import_paddle()


@pytest.mark.parametrize("name", sorted(m[0] for m in pdn.MODELS))
def test_ppcls_parameter_names_are_the_static_table(name):
    """ppcls's DenseNet names every parameter with PaddleClas 1.x's static name (the oracle reads
    these ``.name``s); the family's generated table must equal them, name for name."""
    net = ppcls.build(registry.get(name).source_model)
    assert {k: t.name for k, t in net.state_dict().items()} == pdn.fluid_names(int(name[-3:]))


@pytest.mark.parametrize("hw", [(49, 49), (25, 25), (12, 12), (9, 14)])
def test_pools_equal_paddle_s(hw):
    """The stem MaxPool2D(3, 2, padding 1) and the transitions' AvgPool2D(2, 2) (floor mode; Paddle's
    exclusive flag is moot without padding) against torchvision's pools, bit for bit."""
    paddle = _paddle()
    net = registry.get("DenseNet121").build().eval()
    x = np.random.default_rng(1).standard_normal((1, 4, *hw)).astype(np.float32) - 2  # mostly negative
    p = paddle.to_tensor(x)
    for ours, theirs in ((net.features.pool0, paddle.nn.MaxPool2D(3, 2, 1)),
                         (net.features.transition1.pool, paddle.nn.AvgPool2D(2, 2, 0))):
        with torch.no_grad():
            got = ours(torch.from_numpy(x)).numpy()
        want = theirs(p).numpy()
        assert got.shape == want.shape and np.array_equal(got, want)


def test_torchvision_s_separate_relu_diverges_at_the_first_bn(converted):
    """The same weights in plain torchvision densenet121: the function is the same (same logits),
    but its BN outputs are taken before the ReLU while Paddle's are after it, so a pairing that
    ignored BatchNorm(act="relu") fails at the stem BN, not later."""
    result = converted("DenseNet121")
    plain = torchvision.models.densenet121(weights=None).eval()
    plain.load_state_dict(result.state_dict)
    r = verify("DenseNet121", result=dataclasses.replace(result, module=plain), images=sample_photos()[:1],
               size=ODD)
    assert not r.passed and r.layers.first_divergent.name == "features.norm0"
    assert r.outputs and all(d.passed for d in r.outputs) and r.topk["unexplained"] == 0
