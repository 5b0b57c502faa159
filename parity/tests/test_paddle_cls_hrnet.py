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
from parity.tests.test_paddle_classification import SMALL, write_fluid_with_paddle
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


def test_fluid_layout_converts_to_the_same_weights_and_passes(converted, tmp_path):
    ref = converted(NAME)
    table = {key: static for static, key in ppcls.static_names(NAME, ppcls.build("HRNet_W18_C")).items()}
    d = write_fluid_with_paddle(ref.source, table, tmp_path / "HRNet_W18_C_pretrained")
    assert sorted(p.name for p in d.iterdir()) == sorted(table.values())
    fluid = converters.convert(NAME, weights=d)
    assert fluid.layout == "fluid" and fluid.state_dict.keys() == ref.state_dict.keys()
    different = [k for k in ref.state_dict if not torch.equal(fluid.state_dict[k], ref.state_dict[k])]
    assert not different, different[:5]
    # the oracle reads the directory with paddle.load and pairs layers through the static names; at
    # 64x96 (sides multiples of 32) the lowest branch is 2x3 and every fusion upsamples a rectangle
    report = verify(NAME, result=fluid, images=sample_photos()[:1], size=(64, 96))
    assert report.passed and report.size == (64, 96), report.layers.first_divergent or report.topk
    layers = {r.target.rpartition(".")[0] for r in fluid.mapping if r.status == "mapped"}
    assert report.source["layout"] == "fluid" and len(report.layers.diffs) == len(layers) == 651


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
