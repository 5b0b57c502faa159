"""PaddleClas DenseNets (converters/paddle/densenet.py), without paddle: both rule tables on the
family's names, fluid == dygraph, the static scheme by hand, and the target: torchvision's
DenseNet with every BN fused to the ReLU after it (Paddle's BatchNorm(act="relu")), which must
compute torchvision's function bit for bit and keep its state-dict keys."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

import converters
from converters import registry
from converters.arch.densenet import densenet
from converters.arch.paddle_ops import BatchNormAct
from converters.paddle import densenet as pdn
from converters.registry import paddleclas_eval
from test_paddle_cls_fixtures import assert_layouts_agree, convert_both_files, synthetic_source, write_pdparams

DEPTHS = {m[0]: m[1] for m in pdn.MODELS}


def test_every_model_is_registered_as_a_paddle_checkpoint():
    assert sorted(DEPTHS) == sorted(n for n in registry.names() if registry.get(n).family == "paddle.densenet")
    for name in DEPTHS:
        spec = registry.get(name)
        assert spec.source_format == "paddle-checkpoint" and set(spec.rules) == {"dygraph", "fluid"}
        assert spec.preprocess == paddleclas_eval()  # PaddleClas's DenseNet yamls: resize_short 256, crop 224
        assert spec.source_model == name and spec.weights().url.endswith(f"/{name}_pretrained.tar")


@pytest.mark.parametrize("name", sorted(DEPTHS))
def test_both_layouts_cover_every_tensor_and_agree(name):
    assert_layouts_agree(registry.get(name), pdn.fluid_names(DEPTHS[name]))


def test_static_names_follow_paddleclas_1x():
    """Spot checks against PaddleClas 1.x's static densenet.py: blocks named conv2..conv5, layers
    from 1, ``_x1``/``_x2`` for the two BN-ReLU-conv units, transitions ``conv<s>_blk``, the final
    BN ``conv5_blk_bn`` (there is no conv5_blk conv), classifier ``fc_weights``/``fc_offset``."""
    t121, t161 = pdn.fluid_names(121), pdn.fluid_names(161)
    assert t121["conv1_func._conv.weight"] == "conv1_weights"
    assert t121["conv1_func._batch_norm._mean"] == "conv1_bn_mean"
    assert t121["db_conv_2.conv2_1.bn_ac_func1._batch_norm.weight"] == "conv2_1_x1_bn_scale"
    assert t121["db_conv_3.conv3_12.bn_ac_func2._conv.weight"] == "conv3_12_x2_weights"
    assert t121["tr_conv4_blk.conv_ac_func._batch_norm.bias"] == "conv4_blk_bn_offset"
    assert t121["batch_norm._variance"] == "conv5_blk_bn_variance" and "conv5_blk_weights" not in t121.values()
    assert t161["db_conv_4.conv4_36.bn_ac_func1._conv.weight"] == "conv4_36_x1_weights"
    assert (t121["out.weight"], t121["out.bias"]) == ("fc_weights", "fc_offset")
    assert len(t121) == 1 + 4 + 58 * 2 * 5 + 3 * 5 + 4 + 2  # stem, dense layers, transitions, final BN, fc


def test_files_in_both_layouts_convert_to_the_same_weights(tmp_path):
    a, dygraph = convert_both_files("DenseNet121", pdn.fluid_names(121), tmp_path)
    assert torch.equal(a.state_dict["classifier.weight"], torch.from_numpy(dygraph["out.weight"].T))
    assert torch.equal(a.state_dict["features.denseblock2.denselayer3.norm2.running_var"],
                       torch.from_numpy(dygraph["db_conv_3.conv3_3.bn_ac_func2._batch_norm._variance"]))
    assert torch.equal(a.state_dict["features.transition3.conv.weight"],
                       torch.from_numpy(dygraph["tr_conv4_blk.conv_ac_func._conv.weight"]))


def test_torchvision_target_loads_the_conversion(tmp_path):
    """``load(..., target="torchvision")``: the written file goes into torchvision's own densenet121
    and computes what our fused module computes."""
    spec, table = registry.get("DenseNet121"), pdn.fluid_names(121)
    tensors = synthetic_source(spec, table)
    for k, v in tensors.items():  # unit-normal weights overflow through 121 layers: scale by fan-in
        if k.endswith("weight") and v.ndim > 1:
            v /= np.sqrt(np.prod(v.shape[1:]) if v.ndim == 4 else v.shape[0])
    source = write_pdparams(tmp_path / "d.pdparams", tensors)
    weights, _ = converters.convert("DenseNet121", weights=source).write(tmp_path)
    ours = converters.load("DenseNet121", weights)
    theirs = converters.load("DenseNet121", weights, target="torchvision")
    assert type(theirs) is torchvision.models.DenseNet and not theirs.training
    assert isinstance(theirs.features.norm0, nn.BatchNorm2d) and not isinstance(theirs.features.norm0, BatchNormAct)
    x = torch.randn(1, 3, 64, 64)
    with torch.inference_mode():
        got = ours(x)
        assert torch.isfinite(got).all() and torch.equal(got, theirs(x))


# ------------------------------------------------------------------------------ the target nets



@pytest.mark.parametrize("depth", sorted(pdn.BLOCKS))
def test_every_bn_is_fused_with_its_relu_and_the_keys_are_torchvision_s(depth):
    with torch.device("meta"):
        ours, theirs = densenet(depth), getattr(torchvision.models, f"densenet{depth}")(weights=None)
    bns = [m for m in ours.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and all(type(m) is BatchNormAct for m in bns)
    assert len(bns) == 2 * sum(pdn.BLOCKS[depth]) + 3 + 2  # dense layers, transitions, stem and final BN
    relus = [m for m in ours.modules() if isinstance(m, nn.ReLU)]
    assert len(relus) == len(bns) and all(any(r is b.act for b in bns) for r in relus)  # every ReLU in a BN
    assert ours.state_dict().keys() == theirs.state_dict().keys()
    assert all(ours.state_dict()[k].shape == v.shape for k, v in theirs.state_dict().items())


def test_fused_net_computes_torchvision_s_function_bit_for_bit():
    """Same weights (random BN statistics, so every ReLU cuts), same input: identical outputs, and
    identical post-ReLU features (torchvision's norm5 output is pre-ReLU; ours applies relu twice)."""
    torch.manual_seed(0)
    theirs = torchvision.models.densenet121(weights=None).eval()
    with torch.no_grad():
        for m in theirs.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.2)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.normal_(1, 0.2)
                m.bias.normal_(0, 0.2)
    ours = densenet(121).eval()
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(1, 3, 35, 43)  # odd sizes: transitions pool with floor, as Paddle's AvgPool2D(2, 2)
    with torch.no_grad():
        assert torch.equal(ours(x), theirs(x))
        assert torch.equal(ours.features(x), torch.relu(theirs.features(x)))
