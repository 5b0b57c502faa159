"""PaddleX segmentation (converters/paddle/segmentation.py), without paddle: the rule tables cover
every tensor of each layout, Paddle's "same" padding and align_corners switch against their
definitions, and the Fast-SCNN switch between the PaddleSeg 2.8 and static nets."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import converters
from converters import registry
from converters.arch.fast_scnn import FastSCNN, FastSCNNConfig
from converters.arch.paddle_seg import SameConv2d, conv2d, resize
from converters.engine import map_tensors
from converters.paddle import hrnet_seg
from converters.paddle import seg_mobilenet_v3 as seg_mnv3
from converters.paddle import segmentation as seg
from test_paddle_cls_fixtures import write_fluid_dir, write_pdparams

MODELS = {"FastSCNN": {"dygraph": seg.fast_scnn_dygraph, "fluid": seg.fast_scnn_fluid},
          "UNet": {"dygraph": seg.unet_dygraph, "fluid": seg.unet_fluid},
          "HRNet_W18": {"dygraph": hrnet_seg.fcn_dygraph, "fluid": hrnet_seg.fcn_fluid},
          "DeepLabv3_Xception65": {"dygraph": lambda: iter([*seg.xception65_dygraph(), *seg.deeplab_head_dygraph()]),
                                   "fluid": lambda: iter([*seg.xception65_fluid(), *seg.deeplab_head_fluid()])},
          "DeepLabv3_MobileNetV2_x1.0": {
              "dygraph": lambda: iter([*seg.mobilenet_v2_dygraph(), *seg.deeplab_head_dygraph()]),
              "fluid": lambda: iter([*seg.mobilenet_v2_fluid(), *seg.deeplab_head_fluid()])},
          "DeepLabv3_MobileNetV3_large_x1_0_ssld": {
              "dygraph": lambda: iter([*seg_mnv3.trunk_dygraph(), *seg.deeplab_head_dygraph()]),
              "fluid": lambda: iter([*seg_mnv3.trunk_fluid(), *seg_mnv3.lite_head_fluid()])}}
# a tensor each layout's rules ignore: training-only heads, PaddleSeg's UNet classifier's second name
AUX = {"dygraph": {"FastSCNN": ("auxlayer.conv.weight", (19, 32, 1, 1)), "UNet": ("conv.weight", (81, 64, 3, 3))},
       "fluid": {"FastSCNN": ("aux_layer_higher/logit/weights", (19, 32, 1, 1))}}


def target(name: str, layout: str) -> nn.Module:
    spec = registry.get(name)
    net = spec.build()
    if layout in spec.numerics:
        net.set_numerics(spec.numerics[layout])
    return net


def synthetic(name: str, layout: str, seed: int = 0) -> dict[str, np.ndarray]:
    """Random tensors under the layout's source names, shaped as the targets they go to."""
    state = target(name, layout).state_dict()
    rng = np.random.default_rng(seed)
    out = {}
    for src, tgt, _ in MODELS[name][layout]():
        a = rng.standard_normal(tuple(state[tgt].shape)).astype(np.float32)
        out[src] = np.abs(a) + 0.5 if tgt.endswith("running_var") else a
    if name in AUX[layout]:
        key, shape = AUX[layout][name]
        out[key] = rng.standard_normal(shape).astype(np.float32)
    return out


def test_registered():
    fam = sorted(n for n in registry.names() if registry.get(n).family == "paddle.segmentation")
    assert fam == sorted(MODELS)
    for name in fam:
        spec = registry.get(name)
        assert spec.task == "segmentation" and spec.source_format == "paddle-checkpoint"
        assert set(spec.rules) == set(MODELS[name]) and spec.source_net and spec.source_run
        assert spec.preprocess.mean == spec.preprocess.std == (0.5, 0.5, 0.5) and spec.preprocess.color == "BGR"
        assert name == "UNet" or (spec.metrics and spec.metrics[0].name == "mIoU")  # COCO UNet: none published


@pytest.mark.parametrize("name,layout", [(n, lay) for n in MODELS for lay in MODELS[n]])
def test_rules_cover_every_tensor_one_to_one(name, layout):
    spec = registry.get(name)
    net = target(name, layout)
    tensors = synthetic(name, layout)
    got, rows = map_tensors(name, tensors, net, spec.rules[layout], spec.fixups, spec.defaults)
    status = {r.source: r.status for r in rows if r.source}
    assert got.keys() == net.state_dict().keys()
    if name in AUX[layout]:
        assert status.pop(AUX[layout][name][0]) == "ignored"
    assert set(status.values()) == {"mapped"}
    defaults = {r.target for r in rows if r.status == "default"}
    assert defaults == {k for k in got if k.endswith("num_batches_tracked")}
    src = dict((s, t) for s, t, _ in MODELS[name][layout]())
    assert all(torch.equal(got[t], torch.from_numpy(tensors[s])) for s, t in src.items())


def test_static_names_follow_the_paddlex_programs():
    fluid = {t: s for s, t, _ in seg.fast_scnn_fluid()}
    assert fluid["stem.conv.weight"] == "learning_to_downsample/weights"
    assert fluid["down1.depthwise.bn.running_var"] == \
        "learning_to_downsample/dsconv1/depthwise/BatchNorm/moving_variance"
    assert fluid["bottlenecks.4.dw.bn.weight"] == "inverted_block_2_2_dwise_bn_scale"
    assert fluid["ppm.stages.3.conv.weight"] == "global_feature_extractor/psp6/weights"
    assert fluid["fuse_low.conv.bias"] == "feature_fusion/conv_lower_res/biases"
    assert fluid["logit.bias"] == "classifier/biases"
    dy = {t: s for s, t, _ in seg.mobilenet_v2_dygraph()}
    assert dy["backbone.blocks.0.expand.conv.weight"] == "backbone.conv2._first_block._expand_conv._conv.weight"
    assert dy["backbone.blocks.16.project.bn.running_mean"] == \
        "backbone.conv8._first_block._linear_conv._batch_norm._mean"


@pytest.mark.parametrize("size", [8, 9, 512, 511])
def test_same_padding_is_paddles(size):
    """Paddle "same": out = ceil(in / s), total pad = (out - 1) s + k - in, before = total // 2."""
    conv = conv2d(2, 3, 3, 2, "same")
    assert isinstance(conv, SameConv2d)
    x = torch.randn(1, 2, size, size + 1)
    out = -(-size // 2)
    total_h, total_w = max((out - 1) * 2 + 3 - size, 0), max((-(-(size + 1) // 2) - 1) * 2 + 3 - size - 1, 0)
    ref = F.conv2d(F.pad(x, (total_w // 2, total_w - total_w // 2, total_h // 2, total_h - total_h // 2)),
                   conv.weight, conv.bias, 2)
    got = conv(x)
    assert got.shape[2] == out and torch.equal(got, ref)
    assert not isinstance(conv2d(2, 3, 3, 1, "same"), SameConv2d)  # stride 1, odd kernel: symmetric


def _bilinear_corners(x: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """align_corners=True from its definition: source coordinate i * (in - 1) / (out - 1)."""
    def axis(n_in, n_out):
        src = np.arange(n_out) * ((n_in - 1) / (n_out - 1) if n_out > 1 else 0.0)
        lo = np.minimum(np.floor(src).astype(int), n_in - 1)
        hi = np.minimum(lo + 1, n_in - 1)
        return lo, hi, src - lo
    (y0, y1, wy), (x0, x1, wx) = axis(x.shape[2], size[0]), axis(x.shape[3], size[1])
    top = x[:, :, y0][..., x0] * (1 - wx) + x[:, :, y0][..., x1] * wx
    bot = x[:, :, y1][..., x0] * (1 - wx) + x[:, :, y1][..., x1] * wx
    return top * (1 - wy)[:, None] + bot * wy[:, None]


def test_align_corners_resize_matches_its_definition():
    x = np.random.default_rng(1).standard_normal((1, 2, 5, 7))
    got = resize(torch.from_numpy(x), (13, 9), True).numpy()
    assert np.allclose(got, _bilinear_corners(x, (13, 9)), atol=1e-12)


def test_fast_scnn_numerics_switch_the_net():
    net = FastSCNN()
    assert net.stem.conv.bias is not None and isinstance(net.stem.conv, SameConv2d)
    assert net.fuse_dw.conv.groups == 128 and net.fuse_dw.conv.kernel_size == (3, 3)
    assert isinstance(net.bottlenecks[0].expand.act, nn.ReLU) and net.ppm.project.conv.kernel_size == (3, 3)
    assert isinstance(net.cls1.depthwise.act, nn.Identity) and net.cls1.depthwise.conv.bias is not None
    net.set_numerics("paddlex")
    assert net.cfg == FastSCNNConfig(19, "paddlex")
    assert net.stem.conv.bias is None and net.stem.conv.padding == (0, 0)
    assert net.fuse_dw.conv.groups == 1 and net.fuse_dw.conv.kernel_size == (1, 1)
    assert isinstance(net.bottlenecks[0].expand.act, nn.ReLU6) and net.ppm.project.conv.kernel_size == (1, 1)
    assert isinstance(net.cls1.depthwise.act, nn.ReLU) and net.cls1.depthwise.conv.bias is None
    with pytest.raises(ValueError):
        net.set_numerics("fluid")


@pytest.mark.parametrize("numerics", ["paddleseg", "paddlex"])
def test_fast_scnn_outputs_logits_at_input_size(numerics):
    net = FastSCNN()
    net.set_numerics(numerics)
    with torch.no_grad():
        assert net.eval()(torch.randn(1, 3, 96, 160)).shape == (1, 19, 96, 160)


def test_fluid_dir_converts_into_the_static_net(tmp_path):
    """Through the reader and the pipeline: a fluid directory is the static net (numerics "paddlex",
    recorded), a .pdparams file PaddleSeg 2.8's; both load back and run."""
    fluid_dir = write_fluid_dir(tmp_path / "fast_scnn_cityscape", synthetic("FastSCNN", "fluid"))
    fl = converters.convert("FastSCNN", weights=fluid_dir)
    pdparams = write_pdparams(tmp_path / "f.pdparams", synthetic("FastSCNN", "dygraph"))
    dy = converters.convert("FastSCNN", weights=pdparams)
    assert (fl.layout, dy.layout) == ("fluid", "dygraph")
    assert fl.module.cfg.numerics == "paddlex" and dy.module.cfg.numerics == "paddleseg"
    assert fl.manifest["metadata"]["numerics"] == "paddlex" and dy.manifest["metadata"]["numerics"] == "paddleseg"
    st, _ = fl.write(tmp_path / "out")
    again = converters.load("FastSCNN", st)
    assert again.cfg.numerics == "paddlex"
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(again(x), fl.module(x))


def test_unet_numerics_switch_biases_and_corners():
    from converters.arch.unet import UNet, UNetConfig
    net = UNet(UNetConfig(5))
    assert all(m.bias is not None for m in net.modules() if isinstance(m, nn.Conv2d))
    net.set_numerics("paddlex")
    assert all(m.bias is None for m in net.modules() if isinstance(m, nn.Conv2d))
    assert net.cfg.numerics == "paddlex" and net.logit.out_channels == 5
    with torch.no_grad():  # odd sides: the pools floor, the resizes go back to each skip's size
        assert net.eval()(torch.randn(1, 3, 37, 50)).shape == (1, 5, 37, 50)


def test_unet_class_count_comes_from_the_checkpoint(tmp_path):
    tensors = synthetic("UNet", "fluid")
    tensors["logit/weights"] = tensors["logit/weights"][:7]
    r = converters.convert("UNet", weights=write_fluid_dir(tmp_path / "unet_coco_v3", tensors))
    assert r.module.logit.out_channels == 7 and r.module.cfg.numerics == "paddlex"


def test_deeplab_static_files_with_and_without_aspp(tmp_path):
    """A static DeepLabV3+ with ASPP and decoder (PaddleSeg 0.x COCO), and the Cityscapes MobileNetV2
    one trained without them (backbone + ``logit`` only): both convert, as static nets, and run."""
    full = synthetic("DeepLabv3_MobileNetV2_x1.0", "fluid")
    bare = {k: v for k, v in full.items() if not k.startswith(("encoder/", "decoder/", "logit/"))}
    bare["logit/weights"] = np.random.default_rng(2).standard_normal((19, 320, 1, 1)).astype(np.float32)
    bare["logit/biases"] = np.zeros(19, np.float32)
    x = torch.randn(1, 3, 64, 96)
    for tag, tensors, head in (("coco", full, True), ("cityscapes", bare, False)):
        r = converters.convert("DeepLabv3_MobileNetV2_x1.0", weights=write_fluid_dir(tmp_path / tag, tensors))
        net = r.module
        assert r.layout == "fluid" and net.cfg.numerics == "paddlex" and net.cfg.head is head
        assert hasattr(net, "aspp") is head and net.backbone.blocks[13].dw.conv.stride == (1, 1)
        assert all(row.status == "mapped" for row in r.mapping if row.source)
        with torch.no_grad():
            assert net(x).shape == (1, 19, 64, 96)
        st, _ = r.write(tmp_path / f"out_{tag}")
        again = converters.load("DeepLabv3_MobileNetV2_x1.0", st)
        with torch.no_grad():
            assert torch.equal(again(x), net(x))


def test_deeplab_static_switches():
    from converters.arch.deeplab import deeplab_mobilenet_v2
    from converters.arch.paddle_ops import DownscaleInInfer
    net = deeplab_mobilenet_v2(19)
    assert net.backbone.channels == (24, 320) and net.backbone.blocks[13].dw.conv.stride == (2, 2)
    assert net.aspp.project.conv.bias is not None and isinstance(net.aspp.drop, nn.Identity)
    net.set_numerics("paddlex")
    assert net.backbone.channels == (144, 320) and net.decoder.reduce.conv.in_channels == 144
    assert isinstance(net.aspp.drop, DownscaleInInfer) and net.aspp.drop.p == 0.9
    assert net.aspp.project.conv.bias is None and isinstance(net.decoder.sep1.depthwise.act, nn.ReLU)
    assert net.logit.bias is not None
    feats = []
    net.aspp.project.register_forward_pre_hook(lambda _m, inp: feats.append(inp[0]))
    pooled = []
    net.aspp.pool.register_forward_hook(lambda _m, _i, out: pooled.append(out))
    with torch.no_grad():
        net.eval()(torch.randn(1, 3, 64, 64))
    assert feats[0].shape[1] == 5 * 256 and torch.equal(feats[0][:, :256, :1, :1], pooled[0])  # pool first


def test_mobilenet_v3_deeplab_trunks():
    """PaddleSeg 2.8's MobileNetV3_large_x1_0_os8 (block 6 unstrided and undilated, 7-12 dilated 2,
    13-14 dilated 4) and the static halved trunk at output stride 32 with its 480-ch last conv."""
    from converters.arch.deeplab_mobilenet_v3 import deeplab_mobilenet_v3
    net = deeplab_mobilenet_v3(19)
    blocks = net.backbone.blocks
    assert net.backbone.channels == (24, 160) and net.backbone.last is None
    assert [b.dw.conv.dilation[0] for b in blocks] == [1] * 7 + [2] * 6 + [4] * 2
    assert [b.dw.conv.stride[0] for b in blocks] == [1, 2, 1, 2, 1, 1] + [1] * 9
    assert all(b.dw.conv.padding[0] == (b.dw.conv.kernel_size[0] // 2) * b.dw.conv.dilation[0] for b in blocks)
    assert net.aspp.branches[3].depthwise.conv.dilation == (36, 36) and net.aspp.project.conv.bias is not None
    feats = []
    net.aspp.register_forward_pre_hook(lambda _m, inp: feats.append(inp[0].shape))
    net.decoder.reduce.register_forward_pre_hook(lambda _m, inp: feats.append(inp[0].shape))
    with torch.no_grad():
        assert net.eval()(torch.randn(1, 3, 64, 96)).shape == (1, 19, 64, 96)
    assert feats == [(1, 160, 8, 12), (1, 24, 16, 24)]  # 1/8 and 1/4
    net.set_numerics("paddlex")
    blocks = net.backbone.blocks
    assert net.backbone.channels == (120, 480) and not hasattr(net, "aspp") and not hasattr(net, "logit")
    assert [b.project.bn.num_features for b in blocks[12:]] == [80] * 3 and blocks[12].dw.conv.stride == (2, 2)
    assert all(b.dw.conv.dilation == (1, 1) for b in blocks) and net.head.kernel == (25, 25)
    assert all(m.bias is None for m in net.head.modules() if isinstance(m, nn.Conv2d))
    net.set_numerics("paddleseg")  # and back: the static head goes
    assert not hasattr(net, "head") and net.backbone.channels == (24, 160)


def test_mobilenet_v3_static_head_gates_and_merges():
    """The static head from its definition: aspp0 x resized qsigmoid(conv(avgpool 25, stride (4, 5))),
    resized to the tap (align_corners True), 1x1 to classes, plus the tap's own 1x1."""
    from converters.arch.deeplab_mobilenet_v3 import LiteHead
    torch.manual_seed(0)
    head = LiteHead(16, 8, 5, channels=6).eval()
    high, low = torch.randn(1, 16, 33, 40), torch.randn(1, 8, 130, 160)
    with torch.no_grad():
        got = head(high, low)
        gate = F.conv2d(F.avg_pool2d(high, 25, (4, 5)), head.pool.weight)  # (33-25)//4+1 = 3, (40-25)//5+1 = 4
        assert gate.shape[2:] == (3, 4)
        gate = F.interpolate(torch.clamp(gate + 3, 0, 6) * 0.16667, (33, 40), mode="bilinear", align_corners=True)
        y = F.interpolate(head.aspp0(high) * gate, (130, 160), mode="bilinear", align_corners=True)
        ref = F.conv2d(y, head.project.weight) + F.conv2d(low, head.merge.weight)
    assert torch.allclose(got, ref, atol=1e-5)
    with pytest.raises(ValueError, match="769"):
        head(torch.randn(1, 16, 24, 40), low)


def test_mobilenet_v3_fluid_names_follow_paddleseg_0x():
    fluid = {t: s for s, t, _ in seg_mnv3.trunk_fluid()}
    assert fluid["backbone.stem.conv.weight"] == "conv1_weights"
    assert fluid["backbone.blocks.14.se.expand.bias"] == "conv16_se_2_offset"
    assert fluid["backbone.blocks.5.dw.bn.running_var"] == "conv7_depthwise_bn_variance"
    assert fluid["backbone.last.bn.weight"] == "conv_last_bn_scale"
    dy = {t: s for s, t, _ in seg_mnv3.trunk_dygraph()}
    assert "backbone.last.conv.weight" not in dy
    assert dy["backbone.blocks.3.se.reduce.weight"] == "backbone.blocks.3.mid_se.conv1.weight"
    assert dy["backbone.blocks.0.dw.bn.running_mean"] == "backbone.blocks.0.bottleneck_conv.bn._mean"


def test_xception_deeplab_static_tap_and_fluid_file(tmp_path):
    """The static Xception65 DeepLabV3+: the decoder reads entry block 2's second separable conv
    (256 ch at 1/4) instead of entry block 1's output (128 ch), the head switches as MobileNetV2's;
    a seeded-shape fluid directory converts to it and runs."""
    from converters.arch.deeplab import deeplab_xception65
    net = deeplab_xception65(19)
    assert net.backbone.channels == (128, 2048) and net.decoder.reduce.conv.in_channels == 128
    net.set_numerics("paddlex")
    assert net.backbone.channels == (256, 2048) and net.decoder.reduce.conv.in_channels == 256
    assert net.aspp.project.conv.bias is None and isinstance(net.aspp.branches[1].depthwise.act, nn.ReLU)
    assert net.backbone.exit1.sep3.depthwise.stride == (1, 1) and net.backbone.exit2.sep1.depthwise.dilation == (2, 2)
    seen = {}
    net.backbone.entry[1].sep2.register_forward_hook(lambda _m, _i, out: seen.setdefault("sep2", out))
    net.decoder.reduce.register_forward_pre_hook(lambda _m, inp: seen.setdefault("low", inp[0]))
    net.aspp.register_forward_pre_hook(lambda _m, inp: seen.setdefault("high", inp[0]))
    with torch.no_grad():
        assert net.eval()(torch.randn(1, 3, 64, 96)).shape == (1, 19, 64, 96)
    assert seen["low"].shape == (1, 256, 16, 24) and torch.equal(seen["low"], seen["sep2"])
    assert seen["high"].shape == (1, 2048, 4, 6)

    r = converters.convert("DeepLabv3_Xception65",
                           weights=write_fluid_dir(tmp_path / "xc", synthetic("DeepLabv3_Xception65", "fluid")))
    assert r.layout == "fluid" and r.module.cfg.numerics == "paddlex" and r.module.backbone.static
    assert all(row.status == "mapped" for row in r.mapping if row.source)
    with torch.no_grad():
        assert r.module(torch.randn(1, 3, 64, 96)).shape == (1, 19, 64, 96)
