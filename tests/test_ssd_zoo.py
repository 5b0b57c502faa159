"""gluoncv's SSD zoo on one SSD module: per-model configuration facts (feature maps, anchors, extra
layers), the VGG16-atrous base (caffe input scale, ceil pools, L2Norm), the shared DetectionNMS as
the last stage, and (oracle) every rule table against the names gluoncv itself gives its nets."""
from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
import torch
from torch import nn

from converters import registry
from converters.arch.nms import DetectionNMS, set_nms
from converters.arch.ssd import SSD, ExtraBlock, MobileNetTaps, ResNetTaps, anchor_grid
from converters.arch.vgg_atrous import L2Norm, VGGAtrous, VGGAtrousConfig
from converters.engine import map_tensors

FAMILY = sorted(n for n in registry.names() if registry.get(n).family == "gluon.ssd")
VGG = [n for n in FAMILY if "vgg16" in n]
EXPANDER = [n for n in FAMILY if "vgg16" not in n]

# feature-map sides at the native input size (gluoncv: 300 -> 38 via ceil pools; stride 16 for the
# ResNet/MobileNet 512 nets, stride 8 for VGG-512)
MAPS = {"vgg16_atrous_300": (38, 19, 10, 5, 3, 1), "vgg16_atrous_512": (64, 32, 16, 8, 4, 2, 1),
        "other_512": (32, 16, 8, 4, 2, 1)}


# anchors per image: the SSD paper's 8732 (SSD300) and 24564 (SSD512)
ANCHORS = {"vgg16_atrous_300": 8732, "vgg16_atrous_512": 24564, "other_512": 6132}


def _kind(name: str) -> str:
    return f"vgg16_atrous_{registry.get(name).preprocess.size[0]}" if "vgg16" in name else "other_512"


def _maps(name: str) -> tuple[int, ...]:
    return MAPS[_kind(name)]


def _meta(name: str) -> SSD:
    """Shapes without storage: layouts, rule tables and head shapes at full size, instantly."""
    with torch.device("meta"):
        return registry.get(name).build().eval()


def test_family_is_complete():
    want = {"ssd_300_vgg16_atrous_voc", "ssd_300_vgg16_atrous_coco", "ssd_512_vgg16_atrous_voc",
            "ssd_512_vgg16_atrous_coco", "ssd_512_resnet50_v1_voc", "ssd_512_resnet50_v1_coco",
            "ssd_512_mobilenet1.0_voc", "ssd_512_mobilenet1.0_coco"}
    assert set(FAMILY) == want
    for n in FAMILY:
        spec = registry.get(n)
        assert spec.task == "detection" and spec.source_model == n
        assert spec.preprocess.size == ((300, 300) if "_300_" in n else (512, 512))
        assert spec.preprocess.resize == "exact" and spec.preprocess.interp == "mxnet-9"
        names = [m.name for m in spec.metrics]
        assert names == (["mAP"] if n.endswith("_voc") else ["AP", "AP50", "AP75"])


@pytest.mark.parametrize("name", FAMILY)
def test_feature_maps_and_head_shapes_at_native_size(name):
    """A meta-device pass through backbone, extras and heads (no arithmetic): the map sides per
    level, and heads sized anchors x (classes + 1) and anchors x 4."""
    net, spec = _meta(name), registry.get(name)
    seen = []
    hooks = [g.register_forward_hook(lambda m, i, o: seen.append(tuple(i[0].shape[2:])))
             for g in net.anchor_generators]
    cls, box, anchors = net.head(torch.empty(1, 3, *spec.preprocess.size, device="meta"))
    for h in hooks:
        h.remove()
    assert [s for s, _ in seen] == list(_maps(name)) and all(a == b for a, b in seen)
    classes = 20 if name.endswith("_voc") else 80
    n = sum(s * s * (len(r) + 1) for s, r in zip(_maps(name), net.cfg.ratios))
    assert cls.shape == (1, n, classes + 1) and box.shape == (1, n, 4) and anchors.shape == (1, n, 4)
    assert n == ANCHORS[_kind(name)]


@pytest.mark.parametrize("name", ["ssd_300_vgg16_atrous_voc", "ssd_300_vgg16_atrous_coco", "ssd_512_vgg16_atrous_voc",
                                  "ssd_512_resnet50_v1_coco"])
def test_anchor_grids_equal_the_reference_loop(name):
    cfg = registry.get(name).build.args[0]
    for i, side in enumerate(_maps(name)):
        sizes, ratios, step = tuple(cfg.sizes[i:i + 2]), cfg.ratios[i], cfg.steps[i]
        got = anchor_grid(side, side, sizes, ratios, step)
        want = np.array(list(_loop(side, sizes, ratios, step)), np.float64)
        assert np.array_equal(got, want.astype(np.float32)), (name, i)


def _loop(side, sizes, ratios, step):
    """gluoncv SSDAnchorGenerator's loop, written out: per cell (row-major), size_min square,
    sqrt(size_min*size_max) square, then size_min at each further ratio."""
    for i in range(side):
        for j in range(side):
            cx, cy = (j + 0.5) * step, (i + 0.5) * step
            m = math.sqrt(sizes[0] * sizes[1])
            yield cx, cy, sizes[0], sizes[0]
            yield cx, cy, m, m
            for r in ratios[1:]:
                yield cx, cy, sizes[0] * math.sqrt(r), sizes[0] / math.sqrt(r)


def test_presets_differ_where_gluoncv_differs():
    cfg = {n: registry.get(n).build.args[0] for n in FAMILY}
    assert cfg["ssd_300_vgg16_atrous_voc"].sizes[:2] == (30, 60)
    assert cfg["ssd_300_vgg16_atrous_coco"].sizes[:2] == (21, 45)
    assert cfg["ssd_300_vgg16_atrous_voc"].steps == (8, 16, 32, 64, 100, 300)
    assert cfg["ssd_512_resnet50_v1_coco"].sizes[1] == 133.12 and cfg["ssd_512_resnet50_v1_voc"].sizes[1] == 102.4
    assert cfg["ssd_512_vgg16_atrous_voc"].sizes == cfg["ssd_512_vgg16_atrous_coco"].sizes
    assert cfg["ssd_512_mobilenet1.0_voc"].sizes == cfg["ssd_512_resnet50_v1_voc"].sizes
    assert [len(r) + 1 for r in cfg["ssd_512_vgg16_atrous_voc"].ratios] == [4, 6, 6, 6, 6, 4, 4]


# -------------------------------------------------------------------------------- extra layers


def test_expander_extras_bias_free_with_symbol_bn():
    net = _meta("ssd_512_mobilenet1.0_voc")
    widths = [(b.trans_conv.out_channels, b.conv.out_channels) for b in net.extras]
    assert widths == [(512, 512), (512, 512), (256, 256), (256, 256)]  # min_depth 128 never binds
    for b in net.extras:
        assert b.trans_conv.bias is None and b.conv.bias is None
        assert b.conv.kernel_size == (3, 3) and b.conv.stride == (2, 2) and b.conv.padding == (1, 1)
        assert isinstance(b.bn, nn.BatchNorm2d) and b.bn.eps == 1e-3 and b.trans_bn.eps == 1e-3


@pytest.mark.parametrize("size,geometry", [
    (300, [(256, 512, 3, 2, 1), (128, 256, 3, 2, 1), (128, 256, 3, 1, 0), (128, 256, 3, 1, 0)]),
    (512, [(256, 512, 3, 2, 1), (128, 256, 3, 2, 1), (128, 256, 3, 2, 1), (128, 256, 3, 2, 1), (128, 256, 4, 1, 1)])])
def test_vgg_extras_are_biased_convs_without_bn(size, geometry):
    net = _meta(f"ssd_{size}_vgg16_atrous_voc")
    got = [(b.trans_conv.out_channels, b.conv.out_channels, b.conv.kernel_size[0], b.conv.stride[0], b.conv.padding[0])
           for b in net.extras]
    assert got == geometry
    for b in net.extras:
        assert b.trans_conv.bias is not None and b.conv.bias is not None
        assert isinstance(b.trans_bn, nn.Identity) and isinstance(b.bn, nn.Identity)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in net.modules())


def test_extra_block_order_conv_bn_relu():
    torch.manual_seed(0)
    spec = registry.get("ssd_512_resnet50_v1_voc").build.args[0].extras[2]
    block = ExtraBlock(8, spec, bn=True).eval()
    for bn in (block.trans_bn, block.bn):
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
        bn.bias.data.uniform_(-1, 1)
    x = torch.randn(1, 8, 6, 6)
    with torch.no_grad():
        y = torch.relu(block.trans_bn(block.trans_conv(x)))
        want = torch.relu(block.bn(block.conv(y)))
        assert torch.equal(block(x), want) and want.shape == (1, 256, 3, 3)


# -------------------------------------------------------------------------------------- backbones


def test_backbones_and_taps():
    r50, mb, vgg = (_meta(n).backbone for n in ("ssd_512_resnet50_v1_voc", "ssd_512_mobilenet1.0_voc",
                                                "ssd_300_vgg16_atrous_voc"))
    assert isinstance(r50, ResNetTaps) and r50.out_channels == (1024, 2048) and not hasattr(r50, "fc")
    assert isinstance(mb, MobileNetTaps) and mb.taps == (10, 12) and mb.out_channels == (512, 1024)
    assert not hasattr(mb, "fc") and len(mb.blocks) == 13
    assert isinstance(vgg, VGGAtrous) and vgg.out_channels == (512, 1024)


def test_mobilenet_taps_are_relu22_and_relu26():
    """gluoncv taps ``relu22_fwd`` and ``relu26_fwd``: ReLU k > 0 ends block (k - 1) // 2, pointwise
    when k is even: blocks 10 (stride 16, 512 wide) and 12 (stride 32, 1024 wide)."""
    net = registry.get("ssd_512_mobilenet1.0_voc").build().backbone.eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        taps = net(x)
        y = net.stem(x)
        outs = []
        for block in net.blocks:
            y = block(y)
            outs.append(y)
    assert [t.shape[1:] for t in taps] == [(512, 4, 4), (1024, 2, 2)]
    assert torch.equal(taps[0], outs[10]) and torch.equal(taps[1], outs[12])


def test_vgg_caffe_scale_and_ceil_pools():
    net = VGGAtrous(VGGAtrousConfig()).eval()
    want = (np.array([0.229, 0.224, 0.225], np.float32) * np.float32(255)).reshape(1, 3, 1, 1)
    assert np.array_equal(net.init_scale.scale.numpy(), want) and net.init_scale.scale.dtype == torch.float32
    assert "init_scale.scale" in net.state_dict()  # a checkpoint's constant is loaded, not assumed
    assert net.pool.ceil_mode and (net.pool5.kernel_size, net.pool5.stride, net.pool5.padding) == (3, 1, 1)
    with torch.no_grad():
        assert net.pool(torch.zeros(1, 1, 75, 75)).shape[-1] == 38  # floor would give 37
    fc6 = net.stages[5][0]
    assert fc6.dilation == (6, 6) and fc6.padding == (6, 6) and net.stages[5][2].kernel_size == (1, 1)


def mxnet_l2_channel(x: np.ndarray, scale: np.ndarray, eps: float) -> np.ndarray:
    """L2Normalization(mode='channel') then broadcast_mul(scale), in float64."""
    x = x.astype(np.float64)
    return x / np.sqrt((x * x).sum(axis=1, keepdims=True) + eps) * scale


def test_l2norm_is_per_position_over_channels_with_eps_inside_the_root():
    rng = np.random.default_rng(0)
    norm = L2Norm(6, 20.0, 1e-5)
    scale = rng.uniform(5, 30, (1, 6, 1, 1)).astype(np.float32)
    norm.scale.data = torch.from_numpy(scale)
    x = rng.standard_normal((2, 6, 3, 4)).astype(np.float32)
    x[0, :, 0, 0] = 1e-4  # tiny vectors: eps dominates, so its place matters
    with torch.no_grad():
        got = norm(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, mxnet_l2_channel(x, scale, 1e-5), rtol=1e-5, atol=1e-7)
    wrong = x / (np.sqrt((x.astype(np.float64) ** 2).sum(1, keepdims=True)) + 1e-5) * scale
    assert np.abs(got - wrong).max() > 1e-2


# ---------------------------------------------------------------------------------- post-processing


@pytest.mark.parametrize("name", FAMILY)
def test_ends_in_one_shared_detection_nms(name):
    net = _meta(name)
    found = [(n, m) for n, m in net.named_modules() if isinstance(m, DetectionNMS)]
    assert [n for n, _ in found] == ["nms"]
    nms = net.nms
    assert (nms.thresh, nms.valid_thresh, nms.topk, nms.post_nms, nms.force_suppress, nms.variant) == (
        0.45, 0.01, 400, 100, False, "mxnet")


def test_forward_feeds_gluoncvs_class_major_rows_to_nms():
    """The rows DetectionNMS receives: class-major blocks of (id, score, decoded box), ids -1 and
    scores 0 at or below the 0.01 threshold; the output is what the NMS module returns."""
    torch.manual_seed(0)
    net = registry.get("ssd_512_mobilenet1.0_voc").build().eval()
    seen = {}
    h = net.nms.register_forward_hook(lambda m, i, o: seen.update(rows=i[0], out=o))
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        out = net(x)
        cls, box, anchors = net.head(x)
    h.remove()
    probs = torch.softmax(cls, -1)
    boxes = net.box_decoder(box, anchors)
    rows, n = seen["rows"], anchors.shape[1]
    assert rows.shape == (1, 20 * n, 6)
    for c in (0, 7, 19):
        block = rows[0, c * n:(c + 1) * n]
        keep = probs[0, :, c + 1] > 0.01
        assert torch.equal(block[:, 0], torch.where(keep, float(c), -1.0))
        assert torch.equal(block[:, 1], torch.where(keep, probs[0, :, c + 1], 0.0))
        assert torch.equal(block[:, 2:], boxes[0])
    assert all(torch.equal(a, b) for a, b in zip(out, seen["out"]))
    set_nms(net, "torchvision")
    assert net.nms.variant == "torchvision"


# ------------------------------------------------------------- rules against gluoncv's own names


def gluoncv_names(name: str) -> dict[str, tuple[str, tuple[int, ...]]]:
    """{save_parameters key: (symbol name = export key, shape)} of gluoncv's net, built with
    pretrained=False, pretrained_base=False; shapes by MXNet's symbolic shape inference (no
    forward pass, no weights)."""
    from converters.frameworks import import_gluoncv, import_mxnet
    mx, gcv = import_mxnet(), import_gluoncv()
    net = gcv.model_zoo.get_model(name, pretrained=False, pretrained_base=False)
    sym = mx.sym.Group(list(net(mx.sym.var("data"))))
    args, _, aux = sym.infer_shape(data=(1, 3, *registry.get(name).preprocess.size))
    shapes = {**dict(zip(sym.list_arguments(), args)), **dict(zip(sym.list_auxiliary_states(), aux))}
    return {k: (p.name, tuple(shapes[p.name])) for k, p in net._collect_params_with_prefix().items()}


@pytest.mark.oracle
@pytest.mark.parametrize("name", FAMILY)
def test_rules_cover_every_gluoncv_parameter(name):
    """Both layouts: every tensor gluoncv's net has is mapped (values unchanged, a distinct constant
    per tensor, except the fix_gamma gammas read as 1) or ignored (the anchor constants only), and
    every target tensor is filled; a meta-device target, so no torch forward and no weights."""
    spec, target = registry.get(name), _meta(name)
    params = gluoncv_names(name)
    expected = target.state_dict()
    n_bn = sum(k.endswith("num_batches_tracked") for k in expected)
    for layout in ("gluon", "export"):
        keys = list(params) if layout == "gluon" else [n for n, _ in params.values()]
        src = {k: np.full(shape, i + 0.5, np.float32) for i, (k, (_, shape)) in enumerate(zip(keys, params.values()))}
        state, rows = map_tensors(name, src, target, spec.rules[layout], spec.fixups, spec.defaults)
        counts = Counter(r.status for r in rows)
        n_anchor = len(spec.build.args[0].steps)
        assert (counts["mapped"], counts["ignored"], counts["default"]) == (len(src) - n_anchor, n_anchor, n_bn), layout
        assert all("anchor" in r.source for r in rows if r.status == "ignored")
        assert len(state) == len(expected)
        fixed = {r.target for r in rows if r.fixup}
        if "vgg16" in name:
            assert not fixed
        else:  # the 8 FeatureExpander BN gammas, nothing else
            assert fixed == {f"extras.{i}.{b}.weight" for i in range(4) for b in ("bn", "trans_bn")}
        for r in rows:
            if r.status == "mapped":
                want = 1.0 if r.fixup else src[r.source].flat[0]
                assert bool((state[r.target] == want).all()), (layout, r.source)
