"""PaddleClas DarkNet53 against paddle itself (the registry sweep covers its dygraph parity): the
static names against ppcls's net, Paddle's ``BatchNorm(act="relu")`` against our BatchNormAct, and
the fluid layout on a directory paddle writes."""
from __future__ import annotations

import copy
import dataclasses
import importlib.util

import pytest
from torch import nn

from converters.arch.paddle_ops import BatchNormAct
from converters.paddle import darknet as pd
from converters.paddle import ppcls
from converters.samples import sample_photos
from parity.tests.test_paddle_classification import SMALL
from parity.verify import verify

pytestmark = [pytest.mark.oracle,
              pytest.mark.skipif(importlib.util.find_spec("paddle") is None, reason="paddle is not installed")]


def test_generated_static_names_are_ppcls_s_own():
    """ppcls's DarkNet53 names every parameter with PaddleClas 1.x's static name: the family's
    generated table equals those names, key for key (the oracle reads the real ``.name``s)."""
    net = ppcls.build("DarkNet53")
    assert {k: t.name for k, t in net.state_dict().items()} == pd.fluid_names()


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
