"""PaddleClas HRNet_W18_C against paddle itself (the registry sweep in test_models.py covers dygraph
parity on the photographs): the static name table against ppcls's real net, the fluid layout on a
directory paddle writes (on a rectangular input), the fusion's nearest upsampling op by op, and a
planted error inside ppcls's flat fusion list found at its (i, j, k) module."""
from __future__ import annotations

import copy
import dataclasses
import importlib.util

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import converters
from converters.paddle import ppcls
from converters.samples import sample_photos
from parity.tests.test_paddle_classification import SMALL
from parity.verify import verify

pytestmark = [pytest.mark.oracle,
              pytest.mark.skipif(importlib.util.find_spec("paddle") is None, reason="paddle is not installed")]

NAME = "HRNet_W18_C"


def _paddle():
    from converters.frameworks import import_paddle
    return import_paddle()


def test_static_table_fits_ppcls_s_net_in_names_and_shapes():
    """The generated table covers ppcls's state dict one to one, and each static name's rule sends
    the tensor to a target tensor of its shape (Linear transposed): the flat fusion list and the
    (i, j, k) names line up."""
    net = ppcls.build("HRNet_W18_C")
    names = ppcls.static_names(NAME, net)  # raises unless the table fits 1:1
    state = net.state_dict()
    assert sorted(names.values()) == sorted(state) and len(names) == len(state) == 1627
    target = converters.registry.get(NAME).build().state_dict()
    rules = converters.registry.get(NAME).rules["fluid"]
    for static, key in names.items():
        tname = next(hit for r in rules if (hit := r.apply(static)))
        shape = tuple(state[key].shape)
        assert tuple(target[tname].shape) == (shape[::-1] if tname == "fc.weight" else shape), static


@pytest.mark.parametrize("hw,factor", [((7, 7), 2), ((3, 5), 4), ((6, 4), 8)])
def test_fusion_upsampling_equals_paddle_s(hw, factor):
    """ppcls's ``upsample(x, scale_factor=2^k, mode="nearest")`` is our F.interpolate nearest,
    bit for bit (a copy of values), on square and rectangular maps."""
    paddle = _paddle()
    x = np.random.default_rng(0).standard_normal((2, 3, *hw)).astype(np.float32)
    theirs = paddle.nn.functional.upsample(paddle.to_tensor(x), scale_factor=factor, mode="nearest").numpy()
    ours = F.interpolate(torch.from_numpy(x), scale_factor=factor, mode="nearest").numpy()
    assert ours.shape == theirs.shape == (2, 3, hw[0] * factor, hw[1] * factor)
    assert np.array_equal(ours, theirs)


def test_a_planted_error_in_the_fusion_is_the_first_divergence(converted):
    """1% on the middle step of stage 4's 4 <- 1 chain (ppcls flat index 11 of module 0): every
    pair before it passes, and that step is the first divergence."""
    result = converted(NAME)
    bad = copy.deepcopy(result.module)
    with torch.no_grad():
        bad.stage4[0].fuse[3][0][1].conv.weight.mul_(1.01)
    r = verify(NAME, result=dataclasses.replace(result, module=bad), images=sample_photos()[:1], size=SMALL)
    assert not r.passed and r.layers.first_divergent.name == "stage4.0.fuse.3.0.1.conv"
    assert r.layers.first_divergent.source == "st4.stage_func_list.0.fuse_func.residual_func_list.11.conv"
    assert all(d.passed for d in r.layers.diffs[: r.layers.diffs.index(r.layers.first_divergent)])
