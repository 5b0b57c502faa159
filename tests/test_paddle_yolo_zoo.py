"""PaddleX / PaddleDetection YOLOv3 (converters/paddle/yolov3.py, converters/arch/paddle_yolo.py)
without paddle: both rule tables cover every tensor and agree, the static names by hand, yolo_box
decoding against a loop written from the kernel's definition, the numerics switch, and the
detector's output contract."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

import converters
from converters import registry
from converters.arch.paddle_yolo import NUMERICS, PaddleYOLOConfig, PaddleYOLOv3, YOLOBox
from converters.paddle import ppcls, ppdet_io
from converters.paddle import yolov3 as py
from converters.paddle.paddlex import layout_tables
from converters.registry import ppdet_eval
from test_paddle_cls_fixtures import assert_layouts_agree, convert_tensors, synthetic_source, write_pdparams

MODELS = {"YOLOv3_MobileNetV1": py.mobilenet_v1, "YOLOv3_DarkNet53": py.darknet53, "YOLOv3_ResNet34": py.resnet34}
CONV_BN = {"YOLOv3_MobileNetV1": 27, "YOLOv3_DarkNet53": 52, "YOLOv3_ResNet34": 37}  # backbone conv-BN units


def table(name: str) -> dict[str, str]:
    return layout_tables(py.tensors(MODELS[name]))[2]


def test_registered_family():
    names = [n for n in registry.names() if registry.get(n).family == "paddle.yolov3"]
    assert sorted(names) == sorted([*MODELS, "YOLOv3_MobileNetV3_large"])  # its own tests below
    for name in names:
        spec = registry.get(name)
        assert (spec.task, spec.source_format) == ("detection", "paddle-checkpoint")
        assert set(spec.rules) == {"dygraph", "fluid"}
        assert spec.numerics == {"dygraph": "ppdet", "fluid": "paddlex", "inference": "ppdet"}
        assert spec.floor_points == {"score": "score_out", "box": "box_out"}
        assert spec.weights().url.startswith("https://paddlemodels.bj.bcebos.com/object_detection/yolov3_")
        assert spec.source_net is not None and spec.source_run is not None
    assert registry.get("YOLOv3_MobileNetV1").preprocess == ppdet_eval((320, 320), False)  # CI size
    assert registry.get("YOLOv3_DarkNet53").preprocess == ppdet_eval((608, 608), False)  # the configs'
    assert not registry.get("YOLOv3_MobileNetV1").slow


@pytest.mark.parametrize("name", sorted(MODELS))
def test_both_layouts_cover_every_tensor_and_agree(name):
    t = table(name)
    # backbone units + 3 x 6 neck units + 2 transitions, 5 tensors each; 3 predictor weights and biases
    assert len(t) == (CONV_BN[name] + 20) * 5 + 6
    assert_layouts_agree(registry.get(name), t)


def test_static_names_follow_paddledetection_0x():
    t = table("YOLOv3_DarkNet53")
    assert t["backbone.conv0.conv.weight"] == "yolo_input.conv.weights"
    assert t["backbone.downsample0.conv_bn_layer.batch_norm._variance"] == "yolo_input.downsample.bn.var"
    assert t["backbone.stage.2.stage.2.7.conv2.conv.weight"] == "stage.2.7.1.conv.weights"
    assert t["backbone.stage.0.basicblock0.conv1.batch_norm.weight"] == "stage.0.0.0.bn.scale"
    assert t["backbone.stage.3.downsample.conv_bn_layer.batch_norm.bias"] == "stage.3.downsample.bn.offset"
    assert t["neck.yolo_block.1.conv_module.conv2.batch_norm._mean"] == "yolo_block.1.1.0.bn.mean"
    assert t["neck.yolo_block.2.conv_module.route.conv.weight"] == "yolo_block.2.2.conv.weights"
    assert t["neck.yolo_block.0.tip.conv.weight"] == "yolo_block.0.tip.conv.weights"
    assert t["neck.yolo_transition.1.batch_norm.weight"] == "yolo_transition.1.bn.scale"
    assert t["yolo_head.yolo_output.2.bias"] == "yolo_output.2.conv.bias"
    m = table("YOLOv3_MobileNetV1")
    assert m["backbone.conv1._batch_norm._variance"] == "conv1_bn_variance"
    assert m["backbone.conv5_6._pointwise_conv._conv.weight"] == "conv5_6_sep_weights"
    assert m["backbone.conv6._depthwise_conv._batch_norm.bias"] == "conv6_dw_bn_offset"
    r = table("YOLOv3_ResNet34")
    assert r["backbone.conv1.conv1.norm.weight"] == "bn_conv1_scale"
    assert r["backbone.res2.res2a.short.conv.weight"] == "res2a_branch1_weights"
    assert r["backbone.res4.res4f.branch2b.norm._mean"] == "bn4f_branch2b_mean"


def test_units_land_on_the_right_target_layers():
    spec = registry.get("YOLOv3_DarkNet53")
    dy = synthetic_source(spec, table("YOLOv3_DarkNet53"))
    got, _ = convert_tensors(spec, "dygraph", dy)
    assert got["backbone.net.stages.1.down.conv.weight"].shape == (128, 64, 3, 3)  # stage.0.downsample
    assert torch.equal(got["backbone.net.stages.1.down.conv.weight"],
                       torch.from_numpy(dy["backbone.stage.0.downsample.conv_bn_layer.conv.weight"]))
    # the route (5th unit) is 1x1 to 256 in block 1; the transition into block 2 is 1x1 256 -> 128
    assert got["yolo_blocks.1.body.4.conv.weight"].shape == (256, 512, 1, 1)
    assert got["transitions.1.conv.weight"].shape == (128, 256, 1, 1)
    assert got["yolo_blocks.2.body.0.conv.weight"].shape == (128, 384, 1, 1)  # 128 upsampled ++ 256 backbone
    assert got["yolo_outputs.0.weight"].shape == (255, 1024, 1, 1)


# -- yolo_box ------------------------------------------------------------------------------------
def _sig(v):
    return np.float32(1.0 / (1.0 + np.exp(-np.float64(v))))


def yolo_box_loop(x, anchors, class_num, conf_thresh, ratio, img_h, img_w, scale, clip):
    """The kernel, one anchor/cell at a time: boxes [A*H*W, 4], scores [A*H*W, C]."""
    f = np.float32
    a, (h, w) = len(anchors), x.shape[-2:]
    p = x.reshape(a, 5 + class_num, h, w)
    bias = f(-0.5 * (float(f(scale)) - 1.0))
    boxes, scores = np.zeros((a * h * w, 4), f), np.zeros((a * h * w, class_num), f)
    for j in range(a):
        for k in range(h):
            for l in range(w):
                conf = _sig(p[j, 4, k, l])
                if conf < f(conf_thresh):
                    continue
                cx = f(f(f(f(l) + f(_sig(p[j, 0, k, l]) * f(scale))) + bias) * f(img_w)) / f(w)
                cy = f(f(f(f(k) + f(_sig(p[j, 1, k, l]) * f(scale))) + bias) * f(img_h)) / f(h)
                bw = f(f(np.exp(p[j, 2, k, l]) * f(anchors[j][0])) * f(img_w)) / f(ratio * w)
                bh = f(f(np.exp(p[j, 3, k, l]) * f(anchors[j][1])) * f(img_h)) / f(ratio * h)
                box = [cx - bw / f(2), cy - bh / f(2), cx + bw / f(2), cy + bh / f(2)]
                if clip:
                    box = [max(box[0], f(0)), max(box[1], f(0)), min(box[2], f(img_w - 1)), min(box[3], f(img_h - 1))]
                i = j * h * w + k * w + l
                boxes[i] = box
                scores[i] = [conf * _sig(p[j, 5 + c, k, l]) for c in range(class_num)]
    return boxes, scores


@pytest.mark.parametrize("scale,clip", [(1.0, True), (1.05, True), (1.2, False)])
def test_yolo_box_matches_the_kernel_written_out(scale, clip):
    cfg = PaddleYOLOConfig(backbone=None, cuts=(0, 0, 0), num_classes=3, scale_x_y=scale, clip_bbox=clip)
    dec = YOLOBox(cfg, conf_thresh=0.3)
    rng = np.random.default_rng(0)
    img_h, img_w = 100, 80  # not the network input: yolo_box rescales per axis
    maps = [rng.normal(0, 2, (1, 3 * 8, s, s + 1)).astype(np.float32) for s in (2, 4, 8)]
    boxes, scores, keep = dec([torch.from_numpy(m) for m in maps], (img_h, img_w))
    boxes = torch.where(keep.unsqueeze(-1), boxes, 0)
    scores = torch.where(keep.unsqueeze(1), scores, 0)
    ref = [yolo_box_loop(m[0], dec.anchors[i], 3, 0.3, 32 // 2 ** i, img_h, img_w, scale, clip)
           for i, m in enumerate(maps)]
    ref_boxes, ref_scores = np.concatenate([r[0] for r in ref]), np.concatenate([r[1] for r in ref])
    assert 0 < keep.sum() < keep.numel()  # both sides of conf_thresh exercised
    np.testing.assert_allclose(boxes[0].numpy(), ref_boxes, rtol=1e-6, atol=1e-4)  # sigmoid: torch vs double
    np.testing.assert_allclose(scores[0].numpy().T, ref_scores, rtol=1e-6, atol=1e-7)
    if clip:
        assert boxes[..., 2].max() <= img_w - 1 and boxes[..., 3].max() <= img_h - 1 and boxes.min() >= 0


# -- the numerics switch and the output contract -------------------------------------------------------
def small_net(numerics: str = "ppdet") -> PaddleYOLOv3:
    spec = registry.get("YOLOv3_MobileNetV1")
    torch.manual_seed(0)
    net = spec.build().eval()
    net.set_numerics(numerics)
    return net


def test_set_numerics_switches_post_processing():
    net = small_net()
    assert (net.decode.conf_thresh, net.nms.post.normalized) == (0.005, True)
    net.set_numerics("paddlex")
    assert (net.decode.conf_thresh, net.nms.post.normalized) == (0.01, False)
    assert NUMERICS["paddlex"].keep_top_k == NUMERICS["ppdet"].keep_top_k == 100
    with pytest.raises(ValueError, match="numerics"):
        net.set_numerics("mxnet")


def test_forward_returns_padded_rows_grouped_by_label():
    net = small_net()
    with torch.no_grad():
        for p in net.yolo_outputs.parameters():  # spread the logits so that NMS has work
            p.mul_(50)
        ids, scores, boxes = net(torch.randn(2, 3, 96, 128))
    assert ids.shape == (2, 100, 1) and scores.shape == (2, 100, 1) and boxes.shape == (2, 100, 4)
    for b in range(2):
        valid = ids[b, :, 0] >= 0
        n = int(valid.sum())
        assert n > 0 and valid[:n].all() and not valid[n:].any()  # valid rows first, then -1 padding
        assert (torch.diff(ids[b, :n, 0]) >= 0).all()  # labels ascending
        assert (boxes[b, n:] == -1).all() and (scores[b, :n] > 0.01).all()
        assert boxes[b, :n, 2].max() <= 127 and boxes[b, :n, 3].max() <= 95  # clipped to the input


def test_pad_detections_handles_empty_images():
    bbox = np.float32([[3, 0.9, 1, 2, 3, 4], [5, 0.5, 0, 0, 1, 1]])
    ids, scores, boxes = ppdet_io.pad_detections(bbox, np.int32([0, 2]), 4)
    assert (ids[0] == -1).all() and ids[1, :, 0].tolist() == [3, 5, -1, -1]
    assert boxes[1, 0].tolist() == [1, 2, 3, 4] and scores[1, 1, 0] == np.float32(0.5)
    ids, _, _ = ppdet_io.pad_detections(np.float32([[-1]]), np.int32([0]), 4)  # Paddle's "no detection" row
    assert (ids == -1).all()


def test_paddlex_numerics_changes_only_post_processing():
    """The layouts share one network: both numerics give the same raw maps."""
    a, b = small_net("ppdet"), small_net("paddlex")
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert all(torch.equal(u, v) for u, v in zip(a.head(x), b.head(x)))
    assert dataclasses.replace(NUMERICS["ppdet"], conf_thresh=0.01, normalized=False) == NUMERICS["paddlex"]


def mobilenet_v3_spec():
    spec = registry.get("YOLOv3_MobileNetV3_large")
    return spec, ppcls._FLUID_NAMES[spec.name]()


def test_mobilenet_v3_large_tables_cover_every_tensor_and_agree():
    spec, t = mobilenet_v3_spec()
    # stem + 15 blocks x 3 conv-BN units; 8 SE blocks x 2 biased convs; neck and head as the others
    assert len(t) == (1 + 45 + 20) * 5 + 8 * 4 + 6
    assert t["backbone.conv12.mid_se.conv2.bias"] == "conv12_se_2_offset"
    assert t["backbone.conv16.linear_conv.bn._variance"] == "conv16_linear_bn_variance"
    assert_layouts_agree(spec, t)
    net = spec.build().eval()
    with torch.no_grad():
        outs = net.head(torch.randn(1, 3, 64, 96))
    assert [tuple(o.shape) for o in outs] == [(1, 255, 2, 3), (1, 255, 4, 6), (1, 255, 8, 12)]
    assert not hasattr(net.backbone.net, "last")  # the classifier's last 1x1 conv is not in the detector


def test_fluid_checkpoint_converts_with_paddlex_numerics_and_reloads_them(tmp_path):
    """A fluid directory and a .pdparams with the same values: one state dict; the fluid conversion
    runs PaddleX 1.x's post-processing, records it, and ``load`` restores it from the written file."""
    from converters.pipeline import load
    from test_paddle_cls_fixtures import convert_both_files
    a, _ = convert_both_files("YOLOv3_MobileNetV1", table("YOLOv3_MobileNetV1"), tmp_path)
    b = converters.convert("YOLOv3_MobileNetV1", weights=tmp_path / "YOLOv3_MobileNetV1_pretrained")
    assert (a.module.numerics, b.module.numerics) == ("ppdet", "paddlex")
    weights, _ = b.write(tmp_path / "out")
    back = load("YOLOv3_MobileNetV1", weights)
    assert back.numerics == "paddlex" and not back.training and back.nms.post.normalized is False


def test_fluid_save_pickle_reads_as_the_fluid_layout(tmp_path):
    """PaddleX links YOLOv3_MobileNetV3_large as one .pdparams: a fluid.save pickle of static names.
    The pipeline reads it as "fluid" because the static rules name every tensor; the same values
    pickled under dygraph names stay "dygraph"; both give one state dict."""
    spec, t = mobilenet_v3_spec()
    dygraph = synthetic_source(spec, t)
    a = converters.convert(spec.name, weights=write_pdparams(tmp_path / "dy.pdparams", dygraph))
    b = converters.convert(spec.name, weights=write_pdparams(tmp_path / "yolov3_mobilenet_v3.pdparams",
                                                             {t[k]: v for k, v in dygraph.items()}))
    assert (a.layout, b.layout) == ("dygraph", "fluid")
    assert b.manifest["metadata"]["numerics"] == "paddlex" and a.manifest["metadata"]["numerics"] == "ppdet"
    assert all(torch.equal(a.state_dict[k], b.state_dict[k]) for k in a.state_dict)


def test_single_pdparams_link_downloads_without_a_published_hash():
    w = registry.get("YOLOv3_MobileNetV3_large").weights()
    assert w.archive == "none" and w.sha1 is None and w.url.endswith("/yolov3_mobilenet_v3.pdparams")
