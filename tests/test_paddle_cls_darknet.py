"""PaddleClas DarkNet53 (converters/paddle/darknet.py), without paddle: both rule tables on the
family's names, fluid == dygraph, PaddleClas's static names by hand, and the target switches
(ReLU inside the BN module) against a plain torch computation, gluon's DarkNet left as it was."""
from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from converters import registry
from converters.arch.darknet import DarkNet, DarkNetConfig
from converters.arch.paddle_ops import BatchNormAct
from converters.gluon.darknet import DARKNET53 as GLUON
from converters.paddle import darknet as pd
from converters.registry import paddleclas_eval
from test_paddle_cls_fixtures import assert_layouts_agree, convert_tensors, synthetic_source


def test_registered_with_paddleclas_s_256_eval():
    assert [n for n in registry.names() if registry.get(n).family == "paddle.darknet"] == ["DarkNet53"]
    spec = registry.get("DarkNet53")
    assert set(spec.rules) == {"dygraph", "fluid"} and spec.source_format == "paddle-checkpoint"
    # DarkNet53.yaml: ResizeImage(resize_short=292), CropImage(256), not the family-wide 224/256
    assert spec.preprocess == paddleclas_eval(256, 292) and spec.preprocess.size == (256, 256)
    assert spec.weights().url.endswith("/DarkNet53_ImageNet1k_pretrained.tar")
    assert spec.torchvision is None


def test_both_layouts_cover_every_tensor_and_agree():
    table = pd.fluid_names()
    assert len(table) == 52 * 5 + 2  # 52 conv-BN layers, fc weight and bias
    assert_layouts_agree(registry.get("DarkNet53"), table)


def test_static_names_follow_paddleclas_1x():
    t = pd.fluid_names()
    assert t["_conv1._conv.weight"] == "yolo_input.conv.weights"
    assert t["_conv1._bn._variance"] == "yolo_input.bn.var"
    assert t["_conv2._bn.weight"] == "yolo_input.downsample.bn.scale"
    assert t["_basic_block_01._conv2._conv.weight"] == "stage.0.0.1.conv.weights"
    assert t["_downsample_0._bn.bias"] == "stage.0.downsample.bn.offset"
    assert t["_basic_block_28._conv1._bn._mean"] == "stage.2.7.0.bn.mean"
    assert t["_downsample_3._conv.weight"] == "stage.3.downsample.conv.weights"
    assert t["_basic_block_44._conv2._conv.weight"] == "stage.4.3.1.conv.weights"
    assert (t["_out.weight"], t["_out.bias"]) == ("fc_weights", "fc_offset")


def test_layers_land_where_the_strides_are():
    """ppcls numbers each downsampling conv after the stage before it: ``_downsample_<s>`` is our
    stage s + 1's stride-2 conv, with the channels to prove it."""
    spec = registry.get("DarkNet53")
    dy = synthetic_source(spec, pd.fluid_names())
    got, _ = convert_tensors(spec, "dygraph", dy)
    assert got["stages.1.down.conv.weight"].shape == (128, 64, 3, 3)
    assert torch.equal(got["stages.1.down.conv.weight"], torch.from_numpy(dy["_downsample_0._conv.weight"]))
    assert torch.equal(got["stages.4.down.bn.running_var"], torch.from_numpy(dy["_downsample_3._bn._variance"]))
    assert torch.equal(got["stages.0.down.bn.weight"], torch.from_numpy(dy["_conv2._bn.weight"]))
    assert torch.equal(got["fc.weight"], torch.from_numpy(dy["_out.weight"].T))  # [in, out] -> [out, in]




def test_paddle_switches_and_gluon_s_net_unchanged():
    ours, gluon = registry.get("DarkNet53").build(), DarkNet(GLUON)
    assert not any(isinstance(m, nn.LeakyReLU) for m in ours.modules())
    bns = [m for m in ours.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(bns) == 52 and all(isinstance(m, BatchNormAct) and isinstance(m.act, nn.ReLU) for m in bns)
    assert isinstance(ours.stem.act, nn.Identity)
    # gluon's defaults: a plain BN then LeakyReLU(0.1), the same state-dict keys
    assert not any(isinstance(m, BatchNormAct) for m in gluon.modules())
    assert isinstance(gluon.stem.act, nn.LeakyReLU) and gluon.stem.act.negative_slope == 0.1
    assert list(ours.state_dict()) == list(gluon.state_dict())
    with pytest.raises(ValueError, match="activation"):
        DarkNet(DarkNetConfig(act="swish"))


def test_paddle_cell_equals_conv_bn_relu():
    """A whole small net with ``bn_act``: its output equals the same weights run as gluon-style cells
    (separate BN, then an activation module) with ReLU, so the switch moves the ReLU, not changes it."""
    cfg = dataclasses.replace(pd.DARKNET53, layers=(1, 1), channels=(4, 8, 16), num_classes=5)
    fused = DarkNet(cfg).eval()
    split = DarkNet(dataclasses.replace(cfg, bn_act=False)).eval()
    with torch.no_grad():
        for p in fused.parameters():
            p.uniform_(-0.5, 0.5)
    split.load_state_dict(fused.state_dict())
    assert isinstance(split.stem.act, nn.ReLU) and type(split.stem.bn) is nn.BatchNorm2d
    x = torch.randn(1, 3, 20, 20)
    with torch.no_grad():
        assert torch.equal(fused(x), split(x))
