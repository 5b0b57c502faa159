"""PaddleClas ShuffleNetV2 against paddle itself (the registry sweep covers its dygraph parity):
the static names against ppcls's net, ppcls's channel split + shuffle against torchvision's, the
fluid layout on a directory paddle writes, and an odd input size end to end."""
from __future__ import annotations

import dataclasses
import importlib.util

import numpy as np
import pytest
import torch

from converters.paddle import ppcls
from converters.paddle import shufflenet as ps
from converters.samples import sample_photos
from parity.tests.test_paddle_classification import SMALL
from parity.verify import verify

pytestmark = [pytest.mark.oracle,
              pytest.mark.skipif(importlib.util.find_spec("paddle") is None, reason="paddle is not installed")]


def test_generated_static_names_are_ppcls_s_own():
    net = ppcls.build("ShuffleNetV2_x1_0")
    assert {k: t.name for k, t in net.state_dict().items()} == ps.fluid_names()


def test_channel_shuffle_equals_torchvision_s():
    """ppcls's channel_shuffle (reshape, transpose, reshape in paddle) moves the same channels as
    torchvision's: pure data movement, so equal bit for bit."""
    from converters.frameworks import import_paddle, import_ppcls
    from torchvision.models.shufflenetv2 import channel_shuffle
    paddle, ppcls_pkg = import_paddle(), import_ppcls()
    shuffle = importlib.import_module(ppcls_pkg.__name__ + ".arch.backbone.model_zoo.shufflenet_v2").channel_shuffle
    x = np.random.default_rng(0).standard_normal((2, 116, 5, 3)).astype(np.float32)
    want = shuffle(paddle.to_tensor(x), 2).numpy()
    got = channel_shuffle(torch.from_numpy(x), 2).numpy()
    assert np.array_equal(got, want) and not np.array_equal(got, x)


def test_torchvision_s_unfolded_module_fails_at_the_first_fused_bn(converted):
    """torchvision's own module with the converted weights computes the same logits, but its BN
    outputs precede the ReLU while ppcls's include it: the first such pair (the stem's BN) fails.
    That is why the target folds the ReLUs into BatchNormAct."""
    result = converted("ShuffleNetV2")
    tv = result.spec.torchvision().eval()
    tv.load_state_dict(result.module.state_dict())
    r = verify("ShuffleNetV2", result=dataclasses.replace(result, module=tv), images=sample_photos()[:1], size=SMALL)
    assert not r.passed and r.layers.first_divergent.name == "conv1.1"
    assert r.outputs[0].passed and r.topk["identical"] == 1  # same function, different capture point
