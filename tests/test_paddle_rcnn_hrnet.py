"""PaddleX FasterRCNN_HRNet_W18_FPN (converters/paddle/hrnet_rcnn.py, arch/hrfpn.py), without paddle:
the dygraph rules over every target tensor, a .pdparams file through the reader and pipeline, HRFPN
against its definition, and the detector's forward on a small input (CI's check; parity is slow)."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

import converters
from converters import registry
from converters.arch.hrfpn import HRFPN, hrnet_hrfpn
from converters.arch.hrnet import HRNetBody, HRNetConfig
from converters.arch.paddle_rcnn import PaddleFasterRCNN, RCNNConfig
from converters.paddle import hrnet_rcnn
from test_paddle_cls_fixtures import write_pdparams

NAME = "FasterRCNN_HRNet_W18_FPN"
TINY = HRNetConfig(4, modules=(1, 1, 1), blocks=1)


def test_registered():
    spec = registry.get(NAME)
    assert spec.task == "detection" and spec.slow and set(spec.rules) == {"dygraph"}
    assert spec.numerics == {"dygraph": "ppdet"} and spec.preprocess.pad_to == 32
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


def test_pdparams_converts_with_linear_transposes(tmp_path):
    spec = registry.get(NAME)
    target = spec.build().state_dict()
    rng = np.random.default_rng(0)
    tensors = {}
    for s, t, _ in hrnet_rcnn.dygraph():
        shape = tuple(target[t].shape)
        linear = t.startswith(("box_head.fc", "score.", "delta.")) and t.endswith("weight")
        a = rng.standard_normal(shape[::-1] if linear else shape).astype(np.float32)
        tensors[s] = np.abs(a) + 0.5 if t.endswith("running_var") else a
    r = converters.convert(NAME, weights=write_pdparams(tmp_path / "m.pdparams", tensors))
    got = r.module.state_dict()
    assert r.layout == "dygraph" and all(row.status in ("mapped", "default") for row in r.mapping)
    assert torch.equal(got["fpn.reduction.weight"], torch.from_numpy(tensors["neck.reduction.weight"]))
    assert torch.equal(got["box_head.fc6.weight"], torch.from_numpy(tensors["bbox_head.head.fc6.weight"].T))


def test_hrfpn_matches_its_definition():
    """cat(x0, up2(x1), up4(x2), up8(x3)) -> 1x1 -> [y, avg2(y), avg4, avg8, avg16] -> one 3x3 each."""
    torch.manual_seed(0)
    neck = HRFPN((2, 3, 4, 5), 6).eval()
    xs = [torch.randn(1, c, 32 // 2 ** i, 48 // 2 ** i) for i, c in enumerate((2, 3, 4, 5))]
    with torch.no_grad():
        outs = neck(xs)
        cat = torch.cat([xs[0]] + [F.interpolate(x, size=(32, 48), mode="bilinear", align_corners=False)
                                   for x in xs[1:]], 1)
        y = F.conv2d(cat, neck.reduction.weight)
        for k, out in enumerate(outs):
            ref = F.conv2d(F.avg_pool2d(y, 2 ** k) if k else y, neck.fpn_convs[k].weight, padding=1)
            assert out.shape == (1, 6, 32 // 2 ** k, 48 // 2 ** k) and torch.allclose(out, ref, atol=1e-6)


def test_a_small_detector_runs():
    net = PaddleFasterRCNN(RCNNConfig(TINY, body=hrnet_hrfpn)).eval()
    with torch.no_grad():
        feats = net.features(torch.randn(1, 3, 64, 96))
        ids, scores, boxes = net(torch.randn(1, 3, 64, 96))
    assert [tuple(f.shape[-2:]) for f in feats] == [(16, 24), (8, 12), (4, 6), (2, 3), (1, 1)]
    assert ids.shape == scores.shape == (1, 100, 1) and boxes.shape == (1, 100, 4)
