"""PaddleClas ShuffleNetV2 (converters/paddle/shufflenet.py), without paddle: both rule tables on
the family's names, fluid == dygraph (through the readers), PaddleClas's static names by hand, and
the target: torchvision's shufflenet_v2_x1_0 with each BN + ReLU folded into one module, which
computes what torchvision's module computes and shares its state dict."""
from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

import converters
from converters import registry
from converters.arch.darknet import BatchNormAct
from converters.paddle import shufflenet as ps
from converters.registry import paddleclas_eval
from test_paddle_cls_fixtures import assert_layouts_agree, synthetic_source, write_fluid_dir, write_pdparams


def test_registered():
    assert [n for n in registry.names() if registry.get(n).family == "paddle.shufflenet"] == ["ShuffleNetV2"]
    spec = registry.get("ShuffleNetV2")
    assert spec.source_model == "ShuffleNetV2_x1_0" and set(spec.rules) == {"dygraph", "fluid"}
    assert spec.preprocess == paddleclas_eval()  # ShuffleNetV2_x1_0.yaml: resize_short 256, crop 224
    assert spec.weights().url.endswith("/ShuffleNetV2_pretrained.tar")
    assert not spec.slow and spec.torchvision is not None


def test_both_layouts_cover_every_tensor_and_agree():
    # 1 stem + 3 stride-2 blocks x 5 + 13 blocks x 3 + conv5 = 56 conv-BN layers, then fc
    assert len(ps.fluid_names()) == 56 * 5 + 2
    assert_layouts_agree(registry.get("ShuffleNetV2"), ps.fluid_names())


def test_static_names_follow_paddleclas_1x():
    t = ps.fluid_names()
    assert t["_conv1._conv.weight"] == "stage1_conv_weights"
    assert t["_conv1._batch_norm._variance"] == "stage1_conv_bn_variance"
    assert t["2_1._conv_dw_1._conv.weight"] == "stage_2_1_conv4_weights"
    assert t["3_1._conv_linear_1._batch_norm.weight"] == "stage_3_1_conv5_bn_scale"
    assert t["3_1._conv_pw_2._conv.weight"] == "stage_3_1_conv1_weights"
    assert t["4_4._conv_dw._batch_norm._mean"] == "stage_4_4_conv2_bn_mean"
    assert t["3_8._conv_linear._batch_norm.bias"] == "stage_3_8_conv3_bn_offset"
    assert (t["_last_conv._conv.weight"], t["_fc.weight"], t["_fc.bias"]) == ("conv5_weights", "fc6_weights",
                                                                              "fc6_offset")


def test_files_in_both_layouts_convert_to_the_same_weights(tmp_path):
    spec, table = registry.get("ShuffleNetV2"), ps.fluid_names()
    dygraph = synthetic_source(spec, table)
    a = converters.convert("ShuffleNetV2", weights=write_pdparams(tmp_path / "s.pdparams", dygraph))
    b = converters.convert("ShuffleNetV2", weights=write_fluid_dir(tmp_path / "ShuffleNetV2_pretrained",
                                                                   {table[k]: v for k, v in dygraph.items()}))
    assert (a.layout, b.layout) == ("dygraph", "fluid")
    assert all(torch.equal(a.state_dict[k], b.state_dict[k]) for k in a.state_dict)
    # branch 1 of a stride-2 block: depthwise conv4 then pointwise conv5, at torchvision's indices
    assert torch.equal(a.state_dict["stage3.0.branch1.0.weight"],
                       torch.from_numpy(dygraph["3_1._conv_dw_1._conv.weight"]))
    assert torch.equal(a.state_dict["stage3.0.branch1.3.running_var"],
                       torch.from_numpy(dygraph["3_1._conv_linear_1._batch_norm._variance"]))
    assert torch.equal(a.state_dict["stage4.2.branch2.4.weight"],
                       torch.from_numpy(dygraph["4_3._conv_dw._batch_norm.weight"]))
    assert torch.equal(a.state_dict["fc.weight"], torch.from_numpy(dygraph["_fc.weight"].T))


def test_relus_fold_into_the_bns_they_follow():
    """Every ReLU of torchvision's net is now inside the BN before it (ppcls fuses act="relu" into
    those BNs); the BNs without a ReLU (after each depthwise conv) stay plain."""
    net, tv = ps.build(), torchvision.models.shufflenet_v2_x1_0(weights=None)
    assert not any(isinstance(m, nn.ReLU) and not isinstance(p, BatchNormAct)
                   for p in net.modules() for m in p.children())
    fused = [n for n, m in net.named_modules() if isinstance(m, BatchNormAct)]
    # stem, three stride-2 blocks (3 ReLUs each), 13 stride-1 blocks (2 each), conv5
    assert len(fused) == sum(isinstance(m, nn.ReLU) for m in tv.modules()) == 1 + 3 * 3 + 13 * 2 + 1
    plain = [n for n, m in net.named_modules() if type(m) is nn.BatchNorm2d]
    assert len(plain) == 3 * 2 + 13 and all(n.endswith(("branch1.1", "branch2.4")) for n in plain)
    assert list(net.state_dict()) == list(tv.state_dict())


@pytest.mark.parametrize("hw", [(224, 224), (97, 131)])
def test_target_computes_torchvision_s_function(hw):
    """Folding ReLU into BN changes where a parity capture sits, not the function: our module and
    torchvision's on the same (random, non-trivial) weights agree bit for bit, odd sizes included."""
    torch.manual_seed(0)
    net = ps.build().eval()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5), m.bias.uniform_(-0.5, 0.5), m.running_mean.uniform_(-0.1, 0.1)
    tv = torchvision.models.shufflenet_v2_x1_0(weights=None).eval()
    tv.load_state_dict(net.state_dict())
    x = torch.randn(1, 3, *hw)
    with torch.no_grad():
        assert torch.equal(net(x), tv(x))
