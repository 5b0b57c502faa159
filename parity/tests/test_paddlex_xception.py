"""PaddleX Xception41/65 against paddle itself (the registry sweep in test_models.py covers dygraph
parity of Xception41 at 299x299; Xception65 runs in parity-full): the static names against ppcls's
own parameter names, the fluid layout on a nested directory paddle writes, Paddle's BatchNorm with
an activation and the dilated / strided separable convs op by op, and where a naive port goes
wrong (torch's plain BN where Paddle's BN applies ReLU)."""
from __future__ import annotations

import copy
import dataclasses
import importlib.util

import numpy as np
import pytest
import torch

from converters import registry
from converters.arch.xception import SeparableConv
from converters.paddle import ppcls
from converters.paddle import xception as px
from converters.samples import sample_photos
from parity.tests.test_paddle_classification import SMALL
from parity.verify import verify

pytestmark = [pytest.mark.oracle,
              pytest.mark.skipif(importlib.util.find_spec("paddle") is None, reason="paddle is not installed")]


def _paddle():
    from converters.frameworks import import_paddle
    return import_paddle()


@pytest.mark.parametrize("name,middle,backbone", [(m[0], m[1], m[2]) for m in px.MODELS])
def test_static_names_are_ppcls_s_own(name, middle, backbone):
    """ppcls names every parameter with PaddleClas 1.x's static name: the family's generated table
    equals them key for key (the oracle reads the real ``.name``s, the unit tests use the table)."""
    net = ppcls.build(registry.get(name).source_model)
    assert {k: t.name for k, t in net.state_dict().items()} == px.fluid_names(px.XceptionConfig(middle), backbone)


# ------------------------------------------------------------------- conventions, op by op

def _random(shape, rng, positive=False):
    a = rng.standard_normal(shape).astype(np.float32)
    return np.abs(a) + 0.5 if positive else a


@pytest.mark.parametrize("stride,dilation,hw", [(2, 1, (15, 15)), (2, 1, (10, 13)), (1, 2, (7, 9)), (1, 2, (10, 10))])
def test_separable_conv_equals_ppcls_s(stride, dilation, hw):
    """ppcls's Seperate_Conv (depthwise 3x3 padded (3 // 2) * dilation, BN, pointwise, BN) against
    ours on odd and even maps: strided (entry/exit blocks) and dilated (exit block 2, with ReLU)."""
    paddle = _paddle()
    from converters.frameworks import import_ppcls
    xd = import_ppcls().arch.backbone.model_zoo.xception_deeplab
    act = "relu" if dilation == 2 else None
    with paddle.utils.unique_name.guard():
        theirs = xd.Seperate_Conv(4, 6, stride, 3, dilation=dilation, act=act, name="t")
    theirs.eval()
    rng = np.random.default_rng(1)
    state = {k: _random(t.shape, rng, positive=k.endswith("_variance")) for k, t in theirs.state_dict().items()}
    theirs.set_state_dict(state)
    ours = SeparableConv(4, 6, stride, dilation, 1e-3, relu=act == "relu").eval()
    rename = {"_conv1": "depthwise", "_bn1": "bn_depth", "_conv2": "pointwise", "_bn2": "bn_point"}
    names = {"weight": "weight", "bias": "bias", "_mean": "running_mean", "_variance": "running_var"}
    ours.load_state_dict({f"{rename[k.split('.')[0]]}.{names[k.split('.')[1]]}": torch.from_numpy(v)
                          for k, v in state.items()}, strict=False)
    x = _random((1, 4, *hw), rng)
    with torch.no_grad():
        got = ours(torch.from_numpy(x)).numpy()
    want = theirs(paddle.to_tensor(x)).numpy()
    assert got.shape == want.shape and np.abs(got - want).max() <= 1e-5 * np.abs(want).max()


def test_plain_batchnorm_where_paddle_s_applies_relu_diverges_there(converted):
    """Exit block 2's BNs carry ReLU inside (``BatchNorm(act="relu")``); a port with torch's plain
    BatchNorm there fails parity at that very layer, the layers before it still pass. (Paddle's
    inference dropout scale, the other trap of this head, is checked in
    tests/test_paddle_cls_xception.py and, against paddle, in test_paddle_classification.py.)"""
    result = converted("Xception41")
    bad = copy.deepcopy(result.module)
    bad.exit2.sep1.bn_depth.act = None
    r = verify("Xception41", result=dataclasses.replace(result, module=bad), images=sample_photos()[:1], size=SMALL)
    assert not r.passed and r.layers.first_divergent.name == "exit2.sep1.bn_depth"
    assert all(d.passed for d in r.layers.diffs[: r.layers.diffs.index(r.layers.first_divergent)])
