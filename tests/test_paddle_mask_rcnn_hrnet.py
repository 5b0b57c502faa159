"""PaddleX MaskRCNN_HRNet_W18_FPN (converters/paddle/hrnet_mask_rcnn.py), without paddle: the rules of
both layouts over every target tensor, a .pdparams file and a fluid directory through the reader and
pipeline, and a small detector on the HRNet + HRFPN body with the mask branch in both numerics (CI's
check; parity is slow)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import converters
from converters import registry
from converters.arch.hrfpn import HRFPN, hrnet_hrfpn
from converters.arch.hrnet import HRNetBody, HRNetConfig
from converters.arch.paddle_mask_rcnn import MaskConfig, PaddleMaskRCNN
from converters.arch.paddle_rcnn import RCNNConfig
from converters.paddle import hrnet_mask_rcnn, hrnet_rcnn, ppcls
from test_paddle_cls_fixtures import convert_both_layouts, write_pdparams
from test_paddle_mask_rcnn_zoo import _to_static

NAME = "MaskRCNN_HRNet_W18_FPN"
TINY = HRNetConfig(4, modules=(1, 1, 1), blocks=1)


def test_registered():
    spec = registry.get(NAME)
    assert spec.task == "detection" and spec.slow and set(spec.rules) == {"dygraph", "fluid"}
    assert spec.numerics == {"dygraph": "ppdet", "fluid": "paddlex"} and spec.preprocess.pad_to == 32
    assert spec.weights().url.endswith("/mask_rcnn_hrnetv2p_w18_2x.tar")
    assert [(m.name, m.value) for m in spec.metrics] == [("mAP", 38.7), ("mask_mAP", 34.7)]
    assert [t for _, t in spec.replay] == ["collect", "mask_rois"]
    net = spec.build()
    assert isinstance(net, PaddleMaskRCNN) and isinstance(net.backbone, HRNetBody) and isinstance(net.fpn, HRFPN)
    assert net.backbone.cfg == HRNetConfig(18) and len(net.mask_head.convs) == 8


def test_rules_cover_every_target_tensor_one_to_one():
    spec = registry.get(NAME)
    target = {k for k in spec.build().state_dict() if not k.endswith("num_batches_tracked")}
    table = {s: t for s, t, _ in hrnet_mask_rcnn.dygraph()}
    faster = {s for s, _, _ in hrnet_rcnn.dygraph()}
    assert len(table) == 1557 and faster < set(table)  # ppdet 2.6's MaskRCNN(HRNet_W18, HRFPN): + 12 mask tensors
    hits = [next(r.apply(s) for r in spec.rules["dygraph"] if r.apply(s)) for s in table]
    assert sorted(hits) == sorted(target)
    assert table["mask_head.head.upsample.mask_inter_feat_4.weight"] == "mask_head.convs.6.weight"
    assert table["mask_head.head.upsample.conv5_mask.bias"] == "mask_head.deconv.bias"
    assert table["mask_head.mask_fcn_logits.weight"] == "mask_head.logits.weight"
    assert table["neck.reduction.weight"] == "fpn.reduction.weight"


def test_fluid_rules_cover_every_target_tensor_one_to_one():
    """The Faster R-CNN's static names (hrnet_rcnn.fluid) + the static mask head's."""
    spec = registry.get(NAME)
    target = {k for k in spec.build().state_dict() if not k.endswith("num_batches_tracked")}
    table = {s: t for s, t, _ in hrnet_mask_rcnn.fluid()}
    assert len(table) == 1557 and {s for s, _, _ in hrnet_rcnn.fluid()} < set(table)
    hits = [next(r.apply(s) for r in spec.rules["fluid"] if r.apply(s)) for s in table]
    assert sorted(hits) == sorted(target)
    assert table["mask_inter_feat_4_w"] == "mask_head.convs.6.weight" and table["conv5_mask_b"] == "mask_head.deconv.bias"
    assert table["mask_fcn_logits_w"] == "mask_head.logits.weight" and table["hrfpn_reduction_weights"] == "fpn.reduction.weight"
    names = ppcls._FLUID_NAMES[NAME]()
    assert sorted(names) == sorted(s for s, _, _ in hrnet_mask_rcnn.dygraph()) and len(set(names.values())) == 1557


def _synthetic() -> dict[str, np.ndarray]:
    target = registry.get(NAME).build().state_dict()
    rng = np.random.default_rng(0)
    tensors = {}
    for s, t, _ in hrnet_mask_rcnn.dygraph():
        shape = tuple(target[t].shape)
        linear = t.startswith(("box_head.fc", "score.", "delta.")) and t.endswith("weight")
        a = rng.standard_normal(shape[::-1] if linear else shape).astype(np.float32)
        tensors[s] = np.abs(a) + 0.5 if t.endswith("running_var") else a
    return tensors


def test_fluid_and_dygraph_files_convert_to_one_state_dict(tmp_path):
    """Static values (background class first, its box rows and mask channel added): the same state dict
    as the .pdparams, the target in PaddleX 1.x's numerics (HRFPN align_corners True included)."""
    dy, names = _synthetic(), hrnet_mask_rcnn.fluid_names()
    _, b = convert_both_layouts(NAME, dy, {names[k]: _to_static(k, v) for k, v in dy.items()}, tmp_path,
                                "mask_rcnn_hrnetv2p_w18_2x")
    assert b.module.fpn.align_corners and b.module.mask_roi_align.numerics.sampling_ratio == 2
    fixed = {r.target: r.fixup for r in b.mapping if r.status == "mapped"}
    assert fixed["mask_head.logits.weight"] == "static_mask_logits_weight_drop_bg"
    assert fixed["score.bias"] == "static_score_bias_bg_last"


def test_pdparams_converts(tmp_path):
    tensors = _synthetic()
    r = converters.convert(NAME, weights=write_pdparams(tmp_path / "m.pdparams", tensors))
    got = r.module.state_dict()
    assert r.layout == "dygraph" and all(row.status in ("mapped", "default") for row in r.mapping)
    assert torch.equal(got["mask_head.deconv.weight"], torch.from_numpy(tensors["mask_head.head.upsample.conv5_mask.weight"]))
    assert torch.equal(got["box_head.fc6.weight"], torch.from_numpy(tensors["bbox_head.head.fc6.weight"].T))


@pytest.mark.parametrize("numerics", ["ppdet", "paddlex"])
def test_a_small_mask_detector_runs(numerics):
    torch.manual_seed(0)
    net = PaddleMaskRCNN(MaskConfig(RCNNConfig(TINY, body=hrnet_hrfpn))).eval()
    net.set_numerics(numerics)
    with torch.no_grad():
        net.score.bias.zero_()
        net.score.bias[5] = 12.0  # one class over the threshold everywhere: rows and masks to check
        ids, scores, boxes, masks = net(torch.randn(1, 3, 64, 96))
    assert ids.shape == scores.shape == (1, 100, 1) and boxes.shape == (1, 100, 4) and masks.shape == (1, 100, 28, 28)
    n = int((scores[0, :, 0] >= 0).sum())
    assert n > 0 and masks[0, :n].ge(0).all() and masks[0, :n].le(1).all() and masks[0, n:].eq(-1).all()
