"""PaddleX HRNet_W18 segmenter (converters/paddle/hrnet_seg.py, arch/hrnet.py's HRNetFCN), without
paddle: one trunk shared with the classifier, PaddleSeg's two switches (strided "same" padding,
bilinear fusion to the branch's size) against their definitions, and names from the PaddleSeg net."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from converters import registry
from converters.arch.hrnet import SEG_W18, HRModule, HRNet, HRNetBody, HRNetConfig, HRNetFCN
from converters.arch.paddle_seg import SameConv2d
from converters.paddle import hrnet_seg

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
