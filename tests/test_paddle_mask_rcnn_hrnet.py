"""PaddleX MaskRCNN_HRNet_W18_FPN (converters/paddle/hrnet_mask_rcnn.py), without paddle: the dygraph
rules over every target tensor, a .pdparams file through the reader and pipeline, and a small
detector on the HRNet + HRFPN body with the mask branch in both numerics (CI's check; parity is slow)."""
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
from converters.paddle import hrnet_mask_rcnn, hrnet_rcnn
from test_paddle_cls_fixtures import write_pdparams

NAME = "MaskRCNN_HRNet_W18_FPN"
TINY = HRNetConfig(4, modules=(1, 1, 1), blocks=1)


def test_registered():
    spec = registry.get(NAME)
    assert spec.task == "detection" and spec.slow and set(spec.rules) == {"dygraph"}
    assert spec.numerics == {"dygraph": "ppdet"} and spec.preprocess.pad_to == 32
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


def test_pdparams_converts(tmp_path):
    spec = registry.get(NAME)
    target = spec.build().state_dict()
    rng = np.random.default_rng(0)
    tensors = {}
    for s, t, _ in hrnet_mask_rcnn.dygraph():
        shape = tuple(target[t].shape)
        linear = t.startswith(("box_head.fc", "score.", "delta.")) and t.endswith("weight")
        a = rng.standard_normal(shape[::-1] if linear else shape).astype(np.float32)
        tensors[s] = np.abs(a) + 0.5 if t.endswith("running_var") else a
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
