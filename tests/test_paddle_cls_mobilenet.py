"""PaddleClas MobileNetV1/V2 (converters/paddle/mobilenet.py), without paddle: both rule tables on
the family's names, fluid == dygraph, and the target switches PaddleClas's V2 needs (an expansion
conv in the t = 1 block, a biased Linear classifier), gluon's MobileNetV2 left as it was."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from converters import registry
from converters.arch.mobilenet import MobileNet, MobileNetConfig
from converters.paddle import mobilenet as pm
from test_paddle_cls_fixtures import assert_layouts_agree, convert_both_files

VERSIONS = {m[0]: m[1] for m in pm.MODELS}


def test_registered():
    assert sorted(VERSIONS) == sorted(n for n in registry.names() if registry.get(n).family == "paddle.mobilenet")
    for name in VERSIONS:
        spec = registry.get(name)
        assert set(spec.rules) == {"dygraph", "fluid"} and spec.source_format == "paddle-checkpoint"


@pytest.mark.parametrize("name", sorted(VERSIONS))
def test_both_layouts_cover_every_tensor_and_agree(name):
    assert_layouts_agree(registry.get(name), pm.fluid_names(VERSIONS[name]))


def test_static_names_follow_paddleclas_1x():
    v1, v2 = pm.fluid_names(1), pm.fluid_names(2)
    assert v1["conv.bn._mean"] == "conv1_bn_mean"
    assert v1["blocks.0.depthwise_conv.conv.weight"] == "conv2_1_dw_weights"
    assert v1["blocks.12.pointwise_conv.bn.bias"] == "conv6_sep_bn_offset"
    assert v1["blocks.11.depthwise_conv.conv.weight"] == "conv5_6_dw_weights"
    assert (v1["fc.weight"], v1["fc.bias"]) == ("fc7_weights", "fc7_offset")
    assert v2["conv1._batch_norm._variance"] == "conv1_1_bn_variance"
    assert v2["conv2._first_block._expand_conv._conv.weight"] == "conv2_1_expand_weights"
    assert v2["conv4.conv4_3._bottleneck_conv._batch_norm.weight"] == "conv4_3_dwise_bn_scale"
    assert v2["conv8._first_block._linear_conv._conv.weight"] == "conv8_1_linear_weights"
    assert (v2["out.weight"], v2["conv9._conv.weight"]) == ("fc10_weights", "conv9_weights")


def test_files_in_both_layouts_convert_to_the_same_weights(tmp_path):
    a, dygraph = convert_both_files("MobileNetV2", pm.fluid_names(2), tmp_path)
    assert torch.equal(a.state_dict["fc.weight"], torch.from_numpy(dygraph["out.weight"].T))
    assert torch.equal(a.state_dict["blocks.0.expand.bn.running_var"],
                       torch.from_numpy(dygraph["conv2._first_block._expand_conv._batch_norm._variance"]))


def test_paddle_v2_switches():
    net = registry.get("MobileNetV2").build()
    first = net.blocks[0]
    assert first.expand is not None and first.expand.conv.in_channels == first.expand.conv.out_channels == 32
    assert isinstance(first.expand.act, nn.ReLU6) and isinstance(first.project.act, nn.Identity)
    assert isinstance(net.fc, nn.Linear) and net.fc.bias is not None and net.fc.in_features == 1280
    assert not hasattr(net, "classifier")
    gluon = MobileNet(MobileNetConfig(2, 1.0, "relu6"))  # the defaults keep gluoncv's net
    assert gluon.blocks[0].expand is None and isinstance(gluon.classifier, nn.Conv2d) and not hasattr(gluon, "fc")
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert net.eval()(x).shape == (1, 1000)
    with pytest.raises(ValueError, match="v2_classifier"):
        MobileNet(MobileNetConfig(2, 1.0, "relu6", v2_classifier="dense"))
