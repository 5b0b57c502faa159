"""PaddleClas DarkNet53 against paddle itself (the registry sweep covers its dygraph parity): the
static names against ppcls's net, Paddle's ``BatchNorm(act="relu")`` against our BatchNormAct, and
the fluid layout on a directory paddle writes."""
from __future__ import annotations

import copy
import dataclasses
import importlib.util

import numpy as np
import pytest
import torch
from torch import nn

import converters
from converters.arch.darknet import BatchNormAct
from converters.paddle import darknet as pd
from converters.paddle import ppcls
from converters.samples import sample_photos
from parity.tests.test_paddle_classification import SMALL, write_fluid_with_paddle
from parity.verify import verify

pytestmark = [pytest.mark.oracle,
              pytest.mark.skipif(importlib.util.find_spec("paddle") is None, reason="paddle is not installed")]


def test_generated_static_names_are_ppcls_s_own():
    """ppcls's DarkNet53 names every parameter with PaddleClas 1.x's static name: the family's
    generated table equals those names, key for key (the oracle reads the real ``.name``s)."""
    net = ppcls.build("DarkNet53")
    assert {k: t.name for k, t in net.state_dict().items()} == pd.fluid_names()


def test_bn_act_equals_paddle_s_batchnorm_with_relu():
    """paddle.nn.BatchNorm(act="relu") in eval is our BatchNormAct(ReLU) on the same statistics.
    Not bit for bit (paddle's kernel folds the affine differently): within 2 float32 ulps of the
    output scale."""
    from converters.frameworks import import_paddle
    paddle = import_paddle()
    rng = np.random.default_rng(0)
    c = 16
    w, b, m = (rng.standard_normal(c).astype(np.float32) for _ in range(3))
    v = (rng.random(c) + 0.2).astype(np.float32)
    x = (rng.standard_normal((2, c, 9, 7)) * 3).astype(np.float32)
    theirs = paddle.nn.BatchNorm(c, act="relu", epsilon=1e-5)
    theirs.set_state_dict({"weight": w, "bias": b, "_mean": m, "_variance": v})
    theirs.eval()
    ours = BatchNormAct(c, nn.ReLU(), eps=1e-5).eval()
    ours.load_state_dict({"weight": torch.from_numpy(w), "bias": torch.from_numpy(b),
                          "running_mean": torch.from_numpy(m), "running_var": torch.from_numpy(v),
                          "num_batches_tracked": torch.tensor(0)})
    want = theirs(paddle.to_tensor(x)).numpy()
    with torch.no_grad():
        got = ours(torch.from_numpy(x)).numpy()
    assert 0.2 < (want == 0).mean() < 0.8  # the ReLU acts inside the layer's output
    np.testing.assert_allclose(got, want, rtol=0, atol=2 * np.finfo(np.float32).eps * np.abs(want).max())


def test_fluid_layout_converts_to_the_same_weights_and_passes(converted, tmp_path):
    ref = converted("DarkNet53")
    table = {key: static for static, key in ppcls.static_names("DarkNet53", ppcls.build("DarkNet53")).items()}
    d = write_fluid_with_paddle(ref.source, table, tmp_path / "DarkNet53_ImageNet1k_pretrained")
    fluid = converters.convert("DarkNet53", weights=d)
    assert fluid.layout == "fluid" and fluid.state_dict.keys() == ref.state_dict.keys()
    different = [k for k in ref.state_dict if not torch.equal(fluid.state_dict[k], ref.state_dict[k])]
    assert not different, different[:5]
    report = verify("DarkNet53", result=fluid, images=sample_photos()[:1], size=SMALL)
    assert report.passed, report.layers.first_divergent or report.topk
    assert report.source["layout"] == "fluid" and len(report.layers.diffs) == 52 * 2 + 1


def test_gluon_s_leaky_relu_diverges_at_the_first_bn(converted):
    """The gluon configuration (LeakyReLU(0.1)) on PaddleClas's weights fails at the first BN pair:
    the pair compares activated outputs, so the activation is checked in every layer."""
    result = converted("DarkNet53")
    bad = copy.deepcopy(result.module)
    for m in bad.modules():
        if isinstance(m, BatchNormAct):
            m.act = nn.LeakyReLU(0.1).eval()
    r = verify("DarkNet53", result=dataclasses.replace(result, module=bad), images=sample_photos()[:1], size=SMALL)
    assert not r.passed and r.layers.first_divergent.name == "stem.bn"
    assert r.layers.diffs[0].name == "stem.conv" and r.layers.diffs[0].passed
