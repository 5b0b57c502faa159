"""PaddleX FasterRCNN_HRNet_W18_FPN (converters/paddle/hrnet_rcnn.py, arch/hrfpn.py), without paddle:
the rules of both layouts over every target tensor, a .pdparams file and a fluid directory through the
reader and pipeline (one state dict), HRFPN in both numerics against its definition, and the
detector's forward on a small input (CI's check; parity is slow)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import converters
from converters import registry
from converters.arch.hrfpn import HRFPN, hrnet_hrfpn
from converters.arch.hrnet import HRNetBody, HRNetConfig
from converters.arch.paddle_rcnn import NUMERICS, PaddleFasterRCNN, RCNNConfig
from converters.paddle import hrnet, hrnet_rcnn, ppcls
from test_paddle_cls_fixtures import convert_both_layouts, write_pdparams
from test_paddle_mask_rcnn_zoo import _to_static

NAME = "FasterRCNN_HRNet_W18_FPN"
TINY = HRNetConfig(4, modules=(1, 1, 1), blocks=1)


def test_registered():
    spec = registry.get(NAME)
    assert spec.task == "detection" and spec.slow and set(spec.rules) == {"dygraph", "fluid"}
    assert spec.numerics == {"dygraph": "ppdet", "fluid": "paddlex"} and spec.preprocess.pad_to == 32
    assert spec.weights().url.endswith("/faster_rcnn_hrnetv2p_w18_1x.tar") and spec.metrics[0].value == 36.0
    net = spec.build()
    assert isinstance(net.backbone, HRNetBody) and isinstance(net.fpn, HRFPN)
    assert net.backbone.cfg == HRNetConfig(18)  # ppdet: PaddleClas's padding and nearest fusion


def test_rules_cover_every_target_tensor_one_to_one():
    spec = registry.get(NAME)
    target = {k for k in spec.build().state_dict() if not k.endswith("num_batches_tracked")}
    table = {s: t for s, t, _ in hrnet_rcnn.dygraph()}
    assert len(table) == 1545  # ppdet 2.6's FasterRCNN(HRNet_W18, HRFPN) state dict
    hits = [next(r.apply(s) for r in spec.rules["dygraph"] if r.apply(s)) for s in table]
    assert sorted(hits) == sorted(target)
    assert table["backbone.la1.block_layer2_1.conv_down.norm._variance"] == "backbone.layer1.0.downsample.1.running_var"
    assert table["backbone.st4.stage_st4_3.fuse_func.residual_st4_3_layer_4_2_2.conv.weight"] == \
        "backbone.stage4.2.fuse.3.1.1.conv.weight"
    assert table["neck.fpn_conv_4.weight"] == "fpn.fpn_convs.4.weight"
    assert table["bbox_head.head.fc6.weight"] == "box_head.fc6.weight"


def test_fluid_rules_cover_every_target_tensor_one_to_one():
    """PaddleX 1.x's static names (release/1.3): each names one target tensor, all are named."""
    spec = registry.get(NAME)
    target = {k for k in spec.build().state_dict() if not k.endswith("num_batches_tracked")}
    table = {s: t for s, t, _ in hrnet_rcnn.fluid()}
    assert len(table) == 1545
    hits = [next(r.apply(s) for r in spec.rules["fluid"] if r.apply(s)) for s in table]
    assert sorted(hits) == sorted(target)
    assert table["layer1_1_weights"] == "backbone.conv1.conv.weight"
    assert table["layer2_1_downsample_bn_variance"] == "backbone.layer1.0.downsample.1.running_var"
    assert table["tr3_layer_4_bn_offset"] == "backbone.transition3.bn.bias"
    assert table["st3_4_branch_layer_3_2_conv2_bn_scale"] == "backbone.stage3.3.branches.2.1.bn2.weight"
    assert table["st4_3_layer_4_2_2_weights"] == "backbone.stage4.2.fuse.3.1.1.conv.weight"
    assert table["hrfpn_reduction_weights"] == "fpn.reduction.weight"
    assert table["shared_fpn_conv_4_weights"] == "fpn.fpn_convs.4.weight"
    assert table["conv_rpn_fpn2_w"] == "rpn.conv.0.0.weight" and table["cls_score_b"] == "score.bias"


def test_static_trunk_names_are_the_classifier_s():
    """PaddleX 1.x builds the detection trunk with the classifier's class (cv/nets/hrnet.py): its
    static names are HRNet_W18_C's without the classification head."""
    trunk = {s for s, t, _ in hrnet_rcnn.fluid() if t.startswith("backbone.")}
    cls = set(hrnet.fluid_names(hrnet.W18).values())
    assert trunk < cls and {n.split("_")[0] for n in cls - trunk} == {"cls", "fc"}


def test_registered_static_names_pair_both_layouts():
    names = ppcls._FLUID_NAMES[NAME]()
    assert sorted(names) == sorted(s for s, _, _ in hrnet_rcnn.dygraph()) and len(set(names.values())) == 1545
    assert names["neck.fpn_conv_2.weight"] == "shared_fpn_conv_2_weights"
    assert names["backbone.st2.stage_st2_1.fuse_func.residual_st2_1_layer_1_2.norm._mean"] == "st2_1_layer_1_2_bn_mean"


def _synthetic() -> dict[str, np.ndarray]:
    """Random tensors under ppdet's names, shaped as ppdet stores them (Linear [in, out])."""
    target = registry.get(NAME).build().state_dict()
    rng = np.random.default_rng(0)
    tensors = {}
    for s, t, _ in hrnet_rcnn.dygraph():
        shape = tuple(target[t].shape)
        linear = t.startswith(("box_head.fc", "score.", "delta.")) and t.endswith("weight")
        a = rng.standard_normal(shape[::-1] if linear else shape).astype(np.float32)
        tensors[s] = np.abs(a) + 0.5 if t.endswith("running_var") else a
    return tensors


def test_fluid_and_dygraph_files_convert_to_one_state_dict(tmp_path):
    """One set of values as a .pdparams and as a static directory (background class first, its box
    rows added): the same state dict; the fluid one switches the target to PaddleX 1.x's numerics."""
    dy, names = _synthetic(), hrnet_rcnn.fluid_names()
    a, b = convert_both_layouts(NAME, dy, {names[k]: _to_static(k, v) for k, v in dy.items()}, tmp_path,
                                "faster_rcnn_hrnetv2p_w18_1x")
    assert a.module.numerics == NUMERICS["ppdet"] and not a.module.fpn.align_corners
    assert b.module.numerics == NUMERICS["paddlex"] and b.module.fpn.align_corners
    fixed = {r.target: r.fixup for r in b.mapping if r.status == "mapped"}
    assert fixed["score.weight"] == "static_score_weight_bg_last" and fixed["delta.bias"] == "static_delta_bias_drop_bg"


def test_pdparams_converts_with_linear_transposes(tmp_path):
    tensors = _synthetic()
    r = converters.convert(NAME, weights=write_pdparams(tmp_path / "m.pdparams", tensors))
    got = r.module.state_dict()
    assert r.layout == "dygraph" and all(row.status in ("mapped", "default") for row in r.mapping)
    assert torch.equal(got["fpn.reduction.weight"], torch.from_numpy(tensors["neck.reduction.weight"]))
    assert torch.equal(got["box_head.fc6.weight"], torch.from_numpy(tensors["bbox_head.head.fc6.weight"].T))


def _hrfpn_definition(neck, xs, align_corners: bool) -> list:
    """cat(x0, up2(x1), up4(x2), up8(x3)) -> 1x1 -> [y, avg2(y), avg4, avg8, avg16] -> one 3x3 each."""
    with torch.no_grad():
        cat = torch.cat([xs[0]] + [F.interpolate(x, size=xs[0].shape[2:], mode="bilinear", align_corners=align_corners)
                                   for x in xs[1:]], 1)
        y = F.conv2d(cat, neck.reduction.weight)
        return [F.conv2d(F.avg_pool2d(y, 2 ** k) if k else y, conv.weight, padding=1)
                for k, conv in enumerate(neck.fpn_convs)]


def test_hrfpn_matches_its_definition():
    """ppdet's HRFPN: the definition above with align_corners False."""
    torch.manual_seed(0)
    neck = HRFPN((2, 3, 4, 5), 6).eval()
    xs = [torch.randn(1, c, 32 // 2 ** i, 48 // 2 ** i) for i, c in enumerate((2, 3, 4, 5))]
    with torch.no_grad():
        outs = neck(xs)
    for k, (out, ref) in enumerate(zip(outs, _hrfpn_definition(neck, xs, False), strict=True)):
        assert out.shape == (1, 6, 32 // 2 ** k, 48 // 2 ** k) and torch.allclose(out, ref, atol=1e-6)


def test_static_hrfpn_upsamples_with_aligned_corners():
    """PaddleX 1.x: fluid resize_bilinear(out_shape = the first map's size), align_corners True (its
    default); the rest as ppdet's HRFPN. The switch changes the output."""
    torch.manual_seed(0)
    neck = HRFPN((2, 3, 4, 5), 6).eval()
    xs = [torch.randn(1, c, 32 // 2 ** i, 48 // 2 ** i) for i, c in enumerate((2, 3, 4, 5))]
    with torch.no_grad():
        dygraph = neck(xs)
        neck.align_corners = True
        outs = neck(xs)
    for k, (out, ref) in enumerate(zip(outs, _hrfpn_definition(neck, xs, True), strict=True)):
        assert torch.allclose(out, ref, atol=1e-6) and not torch.allclose(out, dygraph[k], atol=1e-3)


@pytest.mark.parametrize("numerics", ["ppdet", "paddlex"])
def test_a_small_detector_runs(numerics):
    net = PaddleFasterRCNN(RCNNConfig(TINY, body=hrnet_hrfpn)).eval()
    net.set_numerics(numerics)
    assert net.fpn.align_corners == (numerics == "paddlex")
    with torch.no_grad():
        feats = net.features(torch.randn(1, 3, 64, 96))
        ids, scores, boxes = net(torch.randn(1, 3, 64, 96))
    assert [tuple(f.shape[-2:]) for f in feats] == [(16, 24), (8, 12), (4, 6), (2, 3), (1, 1)]
    assert ids.shape == scores.shape == (1, 100, 1) and boxes.shape == (1, 100, 4)
