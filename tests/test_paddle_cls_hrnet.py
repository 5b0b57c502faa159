"""PaddleClas HRNet_W18_C (converters/paddle/hrnet.py), without paddle: both rule tables against the
family's names, fluid == dygraph on one set of values, static names checked by hand against
PaddleClas 1.x's scheme (release/static hrnet.py), and the target's HRNet-specific parts (the
fusion's nearest upsampling and sums, the strided fusion chains, the head) against independent
computations."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import converters
from converters import registry
from converters.arch.hrnet import HRModule, HRNet, HRNetConfig
from converters.errors import MappingError
from converters.paddle import hrnet as ph
from converters.registry import paddleclas_eval
from test_paddle_cls_fixtures import assert_layouts_agree, convert_both_files, synthetic_source, write_pdparams

NAME = "HRNet_W18_C"


@pytest.fixture(scope="module")
def table() -> dict[str, str]:
    return ph.fluid_names(ph.W18)


def test_registered_as_a_paddle_checkpoint():
    assert [n for n in registry.names() if registry.get(n).family == "paddle.hrnet"] == [NAME]
    spec = registry.get(NAME)
    assert spec.framework == "paddle" and spec.source_format == "paddle-checkpoint" and not spec.slow
    assert set(spec.rules) == {"dygraph", "fluid"} and spec.preprocess == paddleclas_eval()  # 256 -> 224
    w = spec.weights()
    assert w.archive == "tar" and w.url.endswith("/HRNet_W18_C_pretrained.tar")
    assert [(m.name, m.value) for m in spec.metrics] == [("top1", 76.9), ("top5", 93.4)]


def test_both_layouts_cover_every_tensor_and_agree(table):
    assert_layouts_agree(registry.get(NAME), table)


def test_layer_count(table):
    """325 conv-BN layers (2 stem, 13 in layer1, 4 transitions, 1 + 4 + 3 modules of 8/24/32 block
    convs plus 2/7/16 fusion convs, 16 + 3 + 1 in the head), 5 tensors each, plus fc weight and bias."""
    convs = 2 + 13 + 4 + (16 + 2) + 4 * (24 + 7) + 3 * (32 + 16) + 16 + 3 + 1
    assert len(table) == len(set(table.values())) == 5 * convs + 2 == 1627


def test_static_names_follow_paddleclas_1x(table):
    """Spot checks against PaddleClas release/static hrnet.py: 1-based names throughout, ``_bn_``
    between a layer's name and its BN parameter, the fusion named by (i, j[, k])."""
    t = table
    assert t["conv_layer1_1.conv.weight"] == "layer1_1_weights" and t["conv_layer1_2.bn._mean"] == "layer1_2_bn_mean"
    assert t["layer1.0.conv_down.bn.weight"] == "layer2_1_downsample_bn_scale"
    assert t["layer1.3.conv3.conv.weight"] == "layer2_4_conv3_weights"
    assert (t["conv_tr1_2.conv.weight"], t["conv_tr2.bn.bias"], t["conv_tr3.conv.weight"]) == (
        "tr1_layer_2_weights", "tr2_layer_3_bn_offset", "tr3_layer_4_weights")
    assert t["st3.stage_func_list.2.basic_block_list.1.3.conv2.conv.weight"] == "st3_3_branch_layer_2_4_conv2_weights"
    # ppcls's flat fusion list, in (i, j, k) order: st2 has [1_2, 2_1_1]; st4 has 16 steps
    assert t["st2.stage_func_list.0.fuse_func.residual_func_list.1.conv.weight"] == "st2_1_layer_2_1_1_weights"
    fuse = "st4.stage_func_list.2.fuse_func.residual_func_list"
    assert [t[f"{fuse}.{f}.conv.weight"].removeprefix("st4_3_layer_").removesuffix("_weights")
            for f in range(16)] == [
        "1_2", "1_3", "1_4", "2_1_1", "2_3", "2_4", "3_1_1", "3_1_2", "3_2_1", "3_4",
        "4_1_1", "4_1_2", "4_1_3", "4_2_1", "4_2_2", "4_3_1"]
    assert t[f"{fuse}.9.bn._variance"] == "st4_3_layer_3_4_bn_variance"
    assert t["last_cls.func_list.3.conv_down.conv.weight"] == "cls_headconv_4_downsample_weights"
    assert t["cls_head_conv_list.2.bn.bias"] == "cls_head_add3_bn_offset"
    assert t["conv_last.conv.weight"] == "cls_head_last_conv_weights"
    assert (t["fc.weight"], t["fc.bias"]) == ("fc_weights", "fc_offset")


def test_files_in_both_layouts_convert_to_the_same_weights(tmp_path, table):
    """Through the readers and the pipeline: a .pdparams file and a fluid directory with the same
    values give one state dict; the fusion's flat list lands on (i, j, k) modules."""
    a, dygraph = convert_both_files(NAME, table, tmp_path)
    assert torch.equal(a.state_dict["fc.weight"], torch.from_numpy(dygraph["fc.weight"].T))
    assert torch.equal(a.state_dict["stage4.0.fuse.3.1.1.conv.weight"],
                       torch.from_numpy(dygraph["st4.stage_func_list.0.fuse_func.residual_func_list.14.conv.weight"]))
    assert torch.equal(a.state_dict["incre.0.downsample.1.running_var"],
                       torch.from_numpy(dygraph["last_cls.func_list.0.conv_down.bn._variance"]))


def test_a_checkpoint_of_another_model_names_the_tensors(tmp_path, table):
    """An HRNet file with one fusion step dropped (as if from a net with fewer steps): one line
    listing the unfilled targets."""
    dygraph = synthetic_source(registry.get(NAME), table)
    gone = "st3.stage_func_list.1.fuse_func.residual_func_list.4"
    f = write_pdparams(tmp_path / "h.pdparams", {k: v for k, v in dygraph.items() if not k.startswith(gone + ".")})
    with pytest.raises(MappingError) as exc:
        converters.convert(NAME, weights=f)
    msg = str(exc.value)
    assert "\n" not in msg and "target stage3.1.fuse.2.0.0.conv.weight (18, 18, 3, 3) is not filled" in msg


# ------------------------------------------------------------------------------ the target net

def _randomise_bn(module: nn.Module) -> None:
    """Random BN statistics and affines, so every BN does something."""
    g = torch.Generator().manual_seed(0)
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.randn(m.num_features, generator=g))
            m.bias.data.copy_(torch.randn(m.num_features, generator=g))


def test_fusion_upsamples_by_repetition_and_sums_every_branch():
    """Output i = ReLU(x_i + sum_j path_ij(x_j)), a coarser branch's path output repeated
    2^(j-i) times along each axis (paddle's integer nearest upsampling), computed in numpy from
    each path's own output."""
    cfg = HRNetConfig(4, blocks=1)
    module = HRModule(cfg.channels(4), cfg).eval()
    with torch.no_grad():
        _randomise_bn(module)
        xs = [torch.randn(2, c, 24 // 2 ** b, 16 // 2 ** b) for b, c in enumerate(cfg.channels(4))]
        got = module(xs)
        branched = [br(x) for br, x in zip(module.branches, xs)]
        for i in range(4):
            want = branched[i].numpy().astype(np.float64)
            for j in range(4):
                if j == i:
                    continue
                y = module.fuse[i][j](branched[j]).numpy()
                if j > i:
                    y = y.repeat(2 ** (j - i), axis=2).repeat(2 ** (j - i), axis=3)
                want = want + y
            np.testing.assert_allclose(got[i].numpy(), np.maximum(want, 0), rtol=1e-5, atol=1e-5)


def test_fusion_chains_stride_down_with_relu_between_steps():
    """j < i: i - j conv3x3/2-BN steps; all but the last keep branch j's width and end in a ReLU,
    the last goes to branch i's width without one. j > i: a 1x1 conv-BN without activation."""
    cfg = HRNetConfig(18)
    c = cfg.channels(4)
    module = HRModule(c, cfg)
    chain = module.fuse[3][0]
    assert len(chain) == 3
    assert [(s.conv.in_channels, s.conv.out_channels, s.conv.stride) for s in chain] == [
        (18, 18, (2, 2)), (18, 18, (2, 2)), (18, 144, (2, 2))]
    assert [type(s.act) for s in chain] == [nn.ReLU, nn.ReLU, nn.Identity]
    up = module.fuse[0][3]
    assert (up.conv.in_channels, up.conv.out_channels, up.conv.kernel_size) == (144, 18, (1, 1))
    assert isinstance(up.act, nn.Identity) and isinstance(module.fuse[2][2], nn.Identity)


def test_paddle_conventions_of_the_whole_net():
    """No conv biases, BN eps 1e-5 everywhere, ResNet blocks stride on the 3x3, and the head lifts
    the four branches to 128/256/512/1024 channels before the 2048-wide 1x1 conv."""
    net = registry.get(NAME).build()
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 325 and all(m.bias is None for m in convs)
    assert all(m.eps == 1e-5 for m in net.modules() if isinstance(m, nn.BatchNorm2d))
    assert [m.conv3.out_channels for m in net.incre] == [128, 256, 512, 1024]
    assert [m.downsample[0].in_channels for m in net.incre] == [18, 36, 72, 144]
    assert net.final.conv.out_channels == 2048 and net.fc.in_features == 2048
    x = torch.randn(1, 3, 64, 96)  # any multiple of 32 per side
    with torch.no_grad():
        assert net.eval()(x).shape == (1, 1000)


def test_sides_that_are_not_multiples_of_32_do_not_fuse():
    """Like the source, the fusion adds maps of exactly 2^k times the size: 72 = 8 * 9 breaks at the
    third branch (72 -> 18 at stride 4 -> 9 -> 5, and 5 * 2 != 9)."""
    net = HRNet(HRNetConfig(4, modules=(1, 1, 1), blocks=1)).eval()
    with torch.no_grad():
        assert net(torch.randn(1, 3, 64, 64)).shape == (1, 1000)
        with pytest.raises(RuntimeError):
            net(torch.randn(1, 3, 72, 72))
