"""PaddleClas AlexNet against paddle itself (the registry sweep covers its dygraph parity): the
static names against ppcls's net, ppcls's own inference Dropouts against ours, the fluid layout on
a directory paddle writes, and a naive port with torch's Dropout caught at fc6."""
from __future__ import annotations

import copy
import dataclasses
import importlib.util

import numpy as np
import pytest
import torch

from converters import registry
from converters.paddle import alexnet as pa
from converters.paddle import ppcls
from converters.samples import sample_photos
from parity.verify import verify

pytestmark = [pytest.mark.oracle,
              pytest.mark.skipif(importlib.util.find_spec("paddle") is None, reason="paddle is not installed")]


@pytest.fixture(scope="module")
def ppcls_alexnet():
    return ppcls.build("AlexNet")


def test_generated_static_names_are_ppcls_s_own(ppcls_alexnet):
    assert {k: t.name for k, t in ppcls_alexnet.state_dict().items()} == pa.fluid_names()


def test_ppcls_s_dropouts_equal_ours_in_eval(ppcls_alexnet):
    """ppcls's ``_drop1``/``_drop2`` (eval mode, as the oracle runs them) against our classifier's
    DownscaleInInfer modules: the same float32 multiply, bit for bit, and not the identity."""
    from converters.frameworks import import_paddle
    paddle = import_paddle()
    ours = registry.get("AlexNet").build().eval()
    x = np.random.default_rng(0).standard_normal((2, 9216)).astype(np.float32) * 5
    for theirs, mine in ((ppcls_alexnet._drop1, ours.classifier[0]), (ppcls_alexnet._drop2, ours.classifier[3])):
        assert not theirs.training
        want = theirs(paddle.to_tensor(x)).numpy()
        got = mine(torch.from_numpy(x)).numpy()
        assert np.array_equal(got, want) and np.array_equal(want, x * np.float32(0.5))


def test_torch_s_dropout_diverges_at_fc6(converted):
    """A port with torch's Dropout (the identity in eval, as torchvision's AlexNet) instead of
    Paddle's inference scale passes every conv and fails at fc6, the first layer after it."""
    result = converted("AlexNet")
    bad = copy.deepcopy(result.module)
    bad.classifier[0] = torch.nn.Dropout(0.5).eval()
    bad.classifier[3] = torch.nn.Dropout(0.5).eval()
    r = verify("AlexNet", result=dataclasses.replace(result, module=bad), images=sample_photos()[:1])
    assert not r.passed and r.layers.first_divergent.name == "classifier.1"
    assert all(d.passed for d in r.layers.diffs if d.name.startswith("features"))
