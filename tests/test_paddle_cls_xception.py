"""PaddleX Xception41/65 (converters/paddle/xception.py), without paddle: both rule tables on the
family's names, fluid == dygraph (also from files, the fluid one a nested directory as Paddle
writes "/"-named variables), and the target's Paddle switches against direct computations."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from converters import registry
from converters.arch.xception import SeparableConv, Xception, XceptionBlock, XceptionConfig
from converters.paddle import xception as px
from test_paddle_cls_fixtures import assert_layouts_agree, convert_both_files

MODELS = {m[0]: (XceptionConfig(m[1]), m[2]) for m in px.MODELS}


def test_registered():
    assert sorted(MODELS) == sorted(n for n in registry.names() if registry.get(n).family == "paddle.xception")
    for name in MODELS:
        spec = registry.get(name)
        assert set(spec.rules) == {"dygraph", "fluid"} and spec.source_format == "paddle-checkpoint"
        assert spec.source_model == name + "_deeplab" and spec.weights().url.endswith(f"{name}_deeplab_pretrained.tar")
        assert spec.preprocess.size == (299, 299) and spec.preprocess.resize_short == 320
    assert registry.get("Xception65").slow and not registry.get("Xception41").slow


@pytest.mark.parametrize("name", sorted(MODELS))
def test_both_layouts_cover_every_tensor_and_agree(name):
    table = px.fluid_names(*MODELS[name])
    assert len(table) == {"Xception41": 422, "Xception65": 662}[name]  # ppcls's state-dict sizes
    assert_layouts_agree(registry.get(name), table)


def test_static_names_follow_paddleclas_1x():
    t = px.fluid_names(*MODELS["Xception65"])
    assert t["_conv1._conv.weight"] == "xception_65/entry_flow/conv1/weights"
    assert t["_conv2._bn._variance"] == "xception_65/entry_flow/conv2/BatchNorm/moving_variance"
    assert (t["xception_65/entry_flow/block2._conv3._conv1.weight"]
            == "xception_65/entry_flow/block2/separable_conv3/depthwise/weights")
    assert (t["xception_65/middle_flow/block16._conv2._bn2.weight"]
            == "xception_65/middle_flow/block16/separable_conv2/pointwise/BatchNorm/gamma")
    assert t["_exit_flow_1._short._bn.bias"] == "xception_65/exit_flow/block1/shortcut/BatchNorm/beta"
    assert (t["_exit_flow_2._conv3._bn1._mean"]
            == "xception_65/exit_flow/block2/separable_conv3/depthwise/BatchNorm/moving_mean")
    assert (t["_fc.weight"], t["_fc.bias"]) == ("fc_weights", "fc_bias")
    assert not any("middle_flow" in k and "_short" in k for k in t)  # identity shortcuts hold nothing
    assert not any(k.startswith("_exit_flow_2._short") for k in t)  # exit block 2 has no shortcut


def test_files_in_both_layouts_convert_to_the_same_weights(tmp_path):
    """The fluid checkpoint as Paddle's save op lays it out: a variable per file at its name, so
    ``xception_41/entry_flow/conv1/weights`` is a file three directories down."""
    table = px.fluid_names(*MODELS["Xception41"])
    a, dygraph = convert_both_files("Xception41", table, tmp_path)
    assert (tmp_path / "Xception41_pretrained" / "xception_41" / "entry_flow" / "conv1" / "weights").is_file()
    assert torch.equal(a.state_dict["fc.weight"], torch.from_numpy(dygraph["_fc.weight"].T))
    assert torch.equal(a.state_dict["middle.7.sep2.bn_point.running_var"],
                       torch.from_numpy(dygraph["xception_41/middle_flow/block8._conv2._bn2._variance"]))


# ------------------------------------------------------------------------------- target switches

def _bn(x, bn):  # eval BatchNorm written out in numpy
    g, b, m, v = (t.detach().numpy()[None, :, None, None]
                  for t in (bn.weight, bn.bias, bn.running_mean, bn.running_var))
    return (x - m) / np.sqrt(v + bn.eps) * g + b


def _randomise(module, seed=0):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in module.state_dict().items():
            if t.is_floating_point():
                t.copy_(torch.rand(t.shape, generator=gen) + 0.5 if name.endswith("running_var")
                        else torch.randn(t.shape, generator=gen))
    return module.eval()




def test_block_pre_activation_leaves_the_shortcut_input_alone():
    """ReLU before each separable conv but the projection reads the raw input: negative inputs
    must reach the shortcut (an in-place ReLU would zero them)."""
    block = _randomise(XceptionBlock(4, (6, 6, 8), 2, 1e-3))
    x = torch.randn(1, 4, 9, 9)
    with torch.no_grad():
        y = x
        for sep in (block.sep1, block.sep2, block.sep3):
            y = sep(F.relu(y))
        want = y + block.shortcut_bn(block.shortcut_conv(x))
        got = block(x.clone())
    assert torch.allclose(got, want, atol=1e-6) and got.shape == (1, 8, 5, 5)
    # exit block 2: ReLU after each BN inside the separable convs, no ReLU in front, no shortcut
    last = _randomise(XceptionBlock(4, (6, 6, 8), 1, 1e-3, shortcut="none", dilation=2, relu_inside=True))
    with torch.no_grad():
        want = last.sep3(last.sep2(last.sep1(x)))
        assert torch.equal(last(x), want) and (want >= 0).all() and want.shape == (1, 8, 9, 9)
    with pytest.raises(ValueError, match="shortcut"):
        XceptionBlock(4, (6, 6, 8), 1, 1e-3, shortcut="add")


def test_separable_conv_pads_symmetrically_with_dilation():
    """Paddle's padding=(k // 2) * dilation on both sides: the dilated 3x3 at the border equals an
    explicit zero pad of 2 then an unpadded dilated conv (no TF "SAME" asymmetric padding)."""
    sep = _randomise(SeparableConv(3, 4, 1, 2, 1e-3, relu=False))
    x = torch.randn(1, 3, 7, 8)
    with torch.no_grad():
        dw = F.conv2d(F.pad(x, (2, 2, 2, 2)), sep.depthwise.weight, dilation=2, groups=3)
        assert torch.allclose(sep.depthwise(x), dw, atol=1e-6) and dw.shape == x.shape
        strided = SeparableConv(3, 4, 2, 1, 1e-3, relu=False).depthwise
        s = F.conv2d(F.pad(x, (1, 1, 1, 1)), strided.weight, stride=2, groups=3)
        assert torch.allclose(strided(x), s, atol=1e-6) and s.shape == (1, 3, 4, 4)


def test_head_scales_by_half_before_the_pool():
    """Paddle's Dropout(0.5, "downscale_in_infer") at inference: logits = fc(0.5 * mean(features))."""
    net = _randomise(Xception(XceptionConfig(1, entry=(8, 8, 16), exit1=(16, 16, 16), exit2=(16, 16, 24),
                                             num_classes=5)))
    x = torch.randn(2, 3, 45, 45)
    with torch.no_grad():
        feats = net.features(x)
        want = F.linear(0.5 * feats.mean((2, 3)), net.fc.weight, net.fc.bias)
        assert torch.allclose(net(x), want, atol=1e-5) and feats.shape == (2, 24, 2, 2)
    with torch.device("meta"):  # shapes only: the 299 eval input ends at 10x10 (output stride 32)
        full = Xception(XceptionConfig(8))
        assert full.features(torch.empty(1, 3, 299, 299)).shape == (1, 2048, 10, 10)
