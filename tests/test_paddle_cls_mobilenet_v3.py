"""PaddleClas MobileNetV3 classifiers (converters/paddle/mobilenet_v3.py), without paddle: both rule
tables on the family's names, fluid == dygraph, and the classifier head's Paddle conventions."""
from __future__ import annotations

import pytest
import torch

from converters import registry
from converters.arch.mobilenet_v3_cls import MobileNetV3Classifier
from converters.arch.paddle_ops import DownscaleInInfer
from converters.arch.paddle_ops import HardSigmoid
from converters.paddle import mobilenet_v3 as pm
from test_paddle_cls_fixtures import assert_layouts_agree, convert_both_files

ARCH = {m[0]: m[1] for m in pm.MODELS}


def test_registered():
    assert sorted(ARCH) == sorted(n for n in registry.names() if registry.get(n).family == "paddle.mobilenet_v3")
    assert {registry.get(n).source_model for n in ARCH} == {"MobileNetV3_large_x1_0", "MobileNetV3_small_x1_0"}


@pytest.mark.parametrize("name", sorted(ARCH))
def test_both_layouts_cover_every_tensor_and_agree(name):
    assert_layouts_agree(registry.get(name), pm.fluid_names(ARCH[name]))


def test_static_names_follow_paddleclas_1x():
    large, small = pm.fluid_names("large"), pm.fluid_names("small")
    assert large["conv.bn._mean"] == "conv1_bn_mean"
    assert large["blocks.0.expand_conv.conv.weight"] == "conv2_expand_weights"
    assert large["blocks.3.mid_se.conv1.bias"] == "conv5_se_1_offset"
    assert large["blocks.14.bottleneck_conv.bn.weight"] == "conv16_depthwise_bn_scale"
    assert large["last_second_conv.bn._variance"] == "conv_last_bn_variance"
    assert (large["last_conv.weight"], large["fc.weight"], large["fc.bias"]) == \
        ("last_1x1_conv_weights", "fc_weights", "fc_offset")
    assert small["blocks.0.mid_se.conv2.weight"] == "conv2_se_2_weights"  # small's first block has SE
    assert "blocks.0.mid_se.conv1.weight" not in large  # large's has none


def test_files_in_both_layouts_convert_to_the_same_weights(tmp_path):
    a, dygraph = convert_both_files("MobileNetV3_small", pm.fluid_names("small"), tmp_path)
    assert torch.equal(a.state_dict["backbone.blocks.0.se.reduce.bias"], torch.from_numpy(dygraph["blocks.0.mid_se.conv1.bias"]))
    assert torch.equal(a.state_dict["fc.weight"], torch.from_numpy(dygraph["fc.weight"].T))


def test_head_applies_paddle_s_inference_dropout_and_gate():
    net = MobileNetV3Classifier("small").eval()
    assert isinstance(net.dropout, DownscaleInInfer) and net.dropout.p == 0.2
    x = torch.randn(2, 1280, 1, 1)
    assert torch.equal(net.dropout(x), x * 0.8)  # eval mode too: it is not torch's Dropout
    gate = net.backbone.blocks[0].se.gate
    assert isinstance(gate, HardSigmoid) and gate.offset == 0.5 and abs(gate.slope - 0.2) < 1e-7
    assert net.last_conv.bias is None and net.last_conv.out_channels == 1280 and net.fc.in_features == 1280
    with torch.no_grad():
        assert net(torch.randn(1, 3, 64, 64)).shape == (1, 1000)
