"""PaddleX HRNet_W18 segmenter (converters/paddle/hrnet_seg.py, arch/hrnet.py's HRNetFCN), without
paddle: one trunk shared with the classifier, PaddleSeg's two switches (strided "same" padding,
bilinear fusion to the branch's size) and PaddleX 1.x's static net (numerics "paddlex": align_mode-1
fusion, bias-free head, align_corners True) against their definitions, names of both layouts, and
a fluid directory through the reader and pipeline."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import converters
from converters import registry
from converters.arch.hrnet import SEG_W18, HRModule, HRNet, HRNetBody, HRNetConfig, HRNetFCN
from converters.arch.paddle_seg import SameConv2d, resize_asym
from converters.paddle import hrnet, hrnet_seg
from test_paddle_cls_fixtures import write_fluid_dir

TINY = HRNetConfig(4, modules=(1, 1, 1), blocks=1, same_pad=True, fuse_up="bilinear")


def test_segmenter_and_classifier_share_the_trunk():
    """The segmenter's ``backbone.*`` keys are the classifier's trunk keys (cls keys unchanged)."""
    cls = set(HRNet(HRNetConfig(18)).state_dict())
    trunk = {k for k in cls if not k.startswith(("incre.", "downsamp.", "final.", "fc."))}
    seg = set(HRNetFCN(19).state_dict())
    assert {k.removeprefix("backbone.") for k in seg if k.startswith("backbone.")} == trunk
    assert seg - {f"backbone.{k}" for k in trunk} == {
        "head.conv.weight", "head.conv.bias", "logit.weight", "logit.bias",
        *(f"head.bn.{t}" for t in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"))}
    assert isinstance(HRNet(HRNetConfig(18)), HRNetBody)


def test_paddleseg_switches_select_same_padding_and_bilinear_fusion():
    seg, cls = HRNetBody(SEG_W18), HRNetBody(HRNetConfig(18))
    strided = [m for m in seg.modules() if isinstance(m, torch.nn.Conv2d) and m.stride == (2, 2)]
    assert strided and all(isinstance(m, SameConv2d) for m in strided)
    assert not any(isinstance(m, SameConv2d) for m in cls.modules())
    assert seg.stage4[0].bilinear and not cls.stage4[0].bilinear


def test_bilinear_fusion_resizes_to_the_branch_size():
    """PaddleSeg: y_i = relu(x_i + interpolate(path(x_j), size of x_i, bilinear, align_corners False))."""
    torch.manual_seed(0)
    m = HRModule([4, 8], TINY).eval()
    xs = [torch.randn(1, 4, 7, 9), torch.randn(1, 8, 4, 5)]  # odd sides: 4x5 is not half of 7x9
    with torch.no_grad():
        out = m(xs)
        b = [branch(x) for branch, x in zip(m.branches, xs)]
        ref = F.relu(b[0] + F.interpolate(m.fuse[0][1](b[1]), size=(7, 9), mode="bilinear", align_corners=False))
    assert out[0].shape == (1, 4, 7, 9) and out[1].shape == (1, 8, 4, 5)
    assert torch.equal(out[0], ref)


def test_fcn_outputs_logits_at_any_input_size():
    net = HRNetFCN(5, TINY).eval()
    with torch.no_grad():
        for hw in ((64, 96), (37, 50)):  # 37x50: "same" padding gives ceil sizes 19, 10, 5, 3 ... 
            assert net(torch.randn(1, 3, *hw)).shape == (1, 5, *hw)


def test_dygraph_names_follow_paddleseg():
    table = {t: s for s, t, _ in hrnet_seg.fcn_dygraph()}
    assert table["backbone.conv1.conv.weight"] == "backbone.conv_layer1_1._conv.weight"
    assert table["backbone.layer1.0.downsample.1.running_var"] == "backbone.la1.bb_layer2_1.conv_down._batch_norm._variance"
    assert table["backbone.transition3.conv.weight"] == "backbone.tr3.transition_tr3_layer_4._conv.weight"
    assert table["backbone.stage3.3.branches.2.1.bn2.weight"] == \
        "backbone.st3.stage_st3_4.branches_func.bb_st3_4_branch_layer_3_2.conv2._batch_norm.weight"
    assert table["backbone.stage4.2.fuse.0.3.conv.weight"] == \
        "backbone.st4.stage_st4_3.fuse_func.residual_st4_3_layer_1_4._conv.weight"
    assert table["backbone.stage4.0.fuse.3.0.2.bn.bias"] == \
        "backbone.st4.stage_st4_1.fuse_func.residual_st4_1_layer_4_1_3._batch_norm.bias"
    assert table["head.conv.bias"] == "head.conv_1._conv.bias" and table["logit.weight"] == "head.cls.weight"
    assert len(table) == 1533  # PaddleSeg 2.8's FCN(HRNet_W18) state dict has 1533 tensors


def test_registered():
    spec = registry.get("HRNet_W18")
    assert spec.family == "paddle.segmentation" and spec.source_model == "FCN"
    assert spec.weights().url.endswith("/hrnet_w18_bn_cityscapes.tgz") and spec.metrics[0].value == 79.36
    assert isinstance(spec.build(), HRNetFCN) and spec.build().cfg == SEG_W18
    assert set(spec.rules) == {"dygraph", "fluid"} and spec.numerics == {"dygraph": "paddleseg", "fluid": "paddlex"}


def _asym_reference(a: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Paddle's bilinear, align_corners False, align_mode 1, written from its definition: source
    coordinate k * in / out, lower index floor, upper index clamped to the last row / column."""
    out = np.zeros(a.shape[:-2] + size, np.float64)
    (h, w), (oh, ow) = a.shape[-2:], size
    for y in range(oh):
        sy = y * h / oh
        y0 = int(sy)
        y1, ty = min(y0 + 1, h - 1), sy - y0
        for x in range(ow):
            sx = x * w / ow
            x0 = int(sx)
            x1, tx = min(x0 + 1, w - 1), sx - x0
            out[..., y, x] = ((1 - ty) * ((1 - tx) * a[..., y0, x0] + tx * a[..., y0, x1])
                              + ty * ((1 - tx) * a[..., y1, x0] + tx * a[..., y1, x1]))
    return out


@pytest.mark.parametrize("src,size", [((4, 5), (8, 10)), ((4, 5), (7, 9)), ((3, 2), (3, 8))])
def test_resize_asym_is_align_mode_1(src, size):
    x = torch.randn(2, 3, *src, generator=torch.Generator().manual_seed(0))
    got = resize_asym(x, size)
    assert got.shape == (2, 3, *size)
    assert np.abs(got.numpy() - _asym_reference(x.numpy().astype(np.float64), size)).max() < 1e-5
    # not torch's half-pixel bilinear
    assert not torch.allclose(got, F.interpolate(x, size=size, mode="bilinear", align_corners=False), atol=1e-3)


def test_static_numerics_rebuild_the_paddlex_1x_net():
    net = HRNetFCN(19)
    net.set_numerics("paddlex")
    assert net.cfg == HRNetConfig(18, fuse_up="bilinear_asym") and net.numerics == "paddlex"
    assert not any(isinstance(m, SameConv2d) for m in net.modules())
    assert net.head.conv.bias is None and net.logit.bias is None
    net.set_numerics("paddleseg")
    assert net.cfg == SEG_W18 and net.logit.bias is not None
    with pytest.raises(ValueError, match="numerics"):
        net.set_numerics("ppdet")


def test_static_fcn_matches_its_definition():
    """fuse: relu(x_i + resize_asym(path(x_j))); head: cat(x0, resize(x_k, align_corners True)) ->
    1x1 conv-BN-ReLU (no bias) -> 1x1 (no bias) -> resize to the input, align_corners True."""
    torch.manual_seed(0)
    net = HRNetFCN(5, TINY)
    net.set_numerics("paddlex")
    net.eval()
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        m = net.backbone.stage2[0]
        xs = [torch.randn(1, 4, 16, 24), torch.randn(1, 8, 8, 12)]
        b = [branch(t) for branch, t in zip(m.branches, xs)]
        ref = F.relu(b[0] + resize_asym(m.fuse[0][1](b[1]), (16, 24)))
        assert torch.equal(m(xs)[0], ref)
        ys = net.backbone.branches(x)
        cat = torch.cat([ys[0]] + [F.interpolate(t, size=(16, 24), mode="bilinear", align_corners=True)
                                   for t in ys[1:]], 1)
        head = F.relu(net.head.bn(F.conv2d(cat, net.head.conv.weight)))
        out = F.interpolate(F.conv2d(head, net.logit.weight), size=(64, 96), mode="bilinear", align_corners=True)
        assert torch.allclose(net(x), out, atol=1e-6)
        assert net(torch.randn(1, 3, 37, 50)).shape == (1, 5, 37, 50)


def test_fluid_names_follow_paddlex_1x():
    table = {t: s for s, t, _ in hrnet_seg.fcn_fluid()}
    net = HRNetFCN(19)
    net.set_numerics("paddlex")
    target = {k for k in net.state_dict() if not k.endswith("num_batches_tracked")}
    assert sorted(table) == sorted(target) and len(set(table.values())) == len(table) == 1531
    assert table["backbone.conv1.conv.weight"] == "layer1_1_weights"
    assert table["backbone.stage4.0.fuse.3.0.2.bn.bias"] == "st4_1_layer_4_1_3_bn_offset"
    assert table["head.conv.weight"] == "conv-2_weights" and table["head.bn.running_var"] == "conv-2_bn_variance"
    assert table["logit.weight"] == "conv-1_weights"
    trunk = {s for t, s in table.items() if t.startswith("backbone.")}
    assert trunk < set(hrnet.fluid_names(hrnet.W18).values())  # HRNet_W18_C's static trunk names


def test_fluid_dir_converts_into_the_static_net(tmp_path):
    """Every static variable consumed, every target tensor filled: the module is PaddleX 1.x's net."""
    spec = registry.get("HRNet_W18")
    rng = np.random.default_rng(0)
    net = HRNetFCN(19)
    net.set_numerics("paddlex")
    shapes = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    tensors = {}
    for s, t, _ in hrnet_seg.fcn_fluid():
        a = rng.standard_normal(shapes[t]).astype(np.float32)
        tensors[s] = np.abs(a) + 0.5 if t.endswith("running_var") else a
    r = converters.convert("HRNet_W18", weights=write_fluid_dir(tmp_path / "hrnet_w18_bn_cityscapes", tensors))
    assert r.layout == "fluid" and r.module.numerics == "paddlex" and r.module.logit.bias is None
    assert all(row.status in ("mapped", "default") for row in r.mapping)
    assert torch.equal(r.state_dict["head.conv.weight"], torch.from_numpy(tensors["conv-2_weights"]))
    assert torch.equal(r.state_dict["backbone.stage3.3.branches.2.1.bn2.running_var"],
                       torch.from_numpy(tensors["st3_4_branch_layer_3_2_conv2_bn_variance"]))
    with pytest.raises(Exception, match="conv-1_biases"):  # an unknown variable is an error, named
        tensors["conv-1_biases"] = np.zeros(19, np.float32)
        converters.convert("HRNet_W18", weights=write_fluid_dir(tmp_path / "extra", tensors))
    assert spec.numerics["fluid"] == r.module.numerics
