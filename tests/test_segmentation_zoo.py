"""gluoncv's semantic segmentation zoo (FCN, PSPNet, DeepLabV3 on dilated ResNet v1s): the dilated
backbone's layout, the heads' structure and output tuple, per-model facts, and (oracle) every rule
table against the names gluoncv gives its own nets, the layer geometry behind each mapped tensor,
and the resize/pool ops against MXNet's."""
from __future__ import annotations

import dataclasses
import importlib.util
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from converters import registry
from converters.arch.resnet import ResNet
from converters.arch.segmentation import (ASPP, ConvHead, PoolBranch, PyramidPooling, SegConfig,
                                          SegmentationNet, resize_bilinear)
from converters.engine import map_tensors
from converters.gluon.resnet import V1B
from converters.gluon.segmentation import SYMBOL, V1S_DILATED, config

FAMILY = sorted(n for n in registry.names() if registry.get(n).family == "gluon.segmentation")


def _meta(build, *args) -> nn.Module:
    """Shapes without storage: layouts, rule tables and output shapes of the big nets, instantly."""
    with torch.device("meta"):
        return build(*args).eval()


def _parse(name: str) -> tuple[str, int, str]:
    head, backbone, data = name.split("_")
    return head, int(backbone[len("resnet"):]), data


# ------------------------------------------------------------------------- registry facts


def test_family_is_complete():
    want = {"fcn_resnet50_ade", "fcn_resnet101_ade", "fcn_resnet101_coco", "fcn_resnet101_voc",
            "psp_resnet50_ade", "psp_resnet101_ade", "psp_resnet101_coco", "psp_resnet101_voc",
            "psp_resnet101_citys", "deeplab_resnet50_ade", "deeplab_resnet101_ade",
            "deeplab_resnet101_coco", "deeplab_resnet101_voc", "deeplab_resnet152_voc"}
    assert set(FAMILY) == want


@pytest.mark.parametrize("name", FAMILY)
def test_model_facts(name):
    spec = registry.get(name)
    head, depth, data = _parse(name)
    classes, crop = {"ade": (150, 480), "coco": (21, 480), "voc": (21, 480), "citys": (19, 768)}[data]
    assert spec.task == "segmentation" and spec.source_model == name
    assert spec.preprocess.preset == "segmentation" and spec.preprocess.size == (crop, crop)
    assert spec.preprocess.resize_short == crop
    assert spec.preprocess.mean == (0.485, 0.456, 0.406) and spec.preprocess.std == (0.229, 0.224, 0.225)
    # a crop other than gluoncv's default 480 must reach the constructor (it fixes the resize targets)
    assert spec.get_model_kwargs == ({"pretrained_base": False} if crop == 480
                                     else {"pretrained_base": False, "crop_size": crop})
    assert spec.slow == (depth > 50)  # CI runs the three ResNet-50 nets; the rest in parity-full
    metrics = {m.name: m.value for m in spec.metrics}
    assert set(metrics) == ({"mIoU"} if data == "voc" else {"pixAcc", "mIoU"})
    assert all(0 < v < 100 for v in metrics.values())
    assert set(spec.rules) == {"gluon", "export"}
    w = spec.weights()
    assert re.fullmatch(r"[0-9a-f]{40}", w.sha1) and w.filename == f"{name}-{w.sha1[:8]}.params"
    net = _meta(spec.build)
    assert net.cfg.head == head and net.cfg.num_classes == classes and net.cfg.aux
    assert net.cfg.backbone == V1S_DILATED[depth]


def test_sha1_is_gluoncvs_model_store_entry():
    """The published sha1 of each file, read from gluoncv's model_store (text, not imported)."""
    found = importlib.util.find_spec("gluoncv")
    if found is None:
        pytest.skip("gluoncv not installed")
    text = (Path(found.origin).parent / "model_zoo" / "model_store.py").read_text()
    store = dict((n, s) for s, n in re.findall(r"\('([0-9a-f]{40})', '([^']+)'\)", text))
    assert {n: registry.get(n).weights().sha1 for n in FAMILY} == {n: store[n] for n in FAMILY}


# ------------------------------------------------------------------------- dilated backbone


@pytest.mark.parametrize("depth", [50, 101, 152])
def test_dilated_v1s_layout(depth):
    net = _meta(ResNet, V1S_DILATED[depth])
    layers = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}[depth]
    assert tuple(len(s) for s in net.stages) == layers
    for s, stage in enumerate(net.stages, start=1):
        # gluoncv resnetv1b._make_layer(dilated=True): stage 3 at dilation 2 but its first block at
        # 1; stage 4 at 4 but its first block at 2; both at stride 1
        n = len(stage)
        want = {3: [1] + [2] * (n - 1), 4: [2] + [4] * (n - 1)}.get(s, [1] * n)
        assert [b.conv2.dilation[0] for b in stage] == want
        assert all(b.conv2.padding == b.conv2.dilation for b in stage)  # "same" 3x3 convs
        stride = 2 if s == 2 else 1
        assert stage[0].conv2.stride == (stride, stride) and stage[0].conv1.stride == (1, 1)
        assert all(b.conv2.stride == (1, 1) for b in stage[1:])
        conv, norm = stage[0].downsample  # plain strided-conv projection, also on stage 1 (128 -> 256)
        assert conv.stride == (stride, stride) and conv.kernel_size == (1, 1) and conv.dilation == (1, 1)
        assert all(b.conv1.dilation == b.conv3.dilation == (1, 1) for b in stage)
    stem = [m for m in net.conv1 if isinstance(m, nn.Conv2d)]
    assert [tuple(c.weight.shape) for c in stem] == [(64, 3, 3, 3), (64, 64, 3, 3), (128, 64, 3, 3)]
    assert net.bn1.num_features == 128


def test_dilated_backbone_has_output_stride_8():
    net = _meta(SegmentationNet, config("deeplab", 50, "ade"))
    x = torch.empty(1, 3, 480, 480, device="meta")
    c3, c4 = net.features(x)
    assert c3.shape == (1, 1024, 60, 60) and c4.shape == (1, 2048, 60, 60)


def test_dilated_basic_blocks_follow_gluoncv():
    """BasicBlockV1b(dilated): conv1 at the block's dilation (1/2 for a stage's first block), conv2
    at the stage's ("previous_dilation")."""
    cfg = dataclasses.replace(V1B[18], strides=(1, 2, 1, 1), dilations=(1, 1, 2, 4), first_dilations=(1, 1, 1, 2))
    net = _meta(ResNet, cfg)
    assert [(b.conv1.dilation[0], b.conv2.dilation[0]) for b in net.layer3] == [(1, 2), (2, 2)]
    assert [(b.conv1.dilation[0], b.conv2.dilation[0]) for b in net.layer4] == [(2, 4), (4, 4)]
    assert all(b.conv1.padding == b.conv1.dilation and b.conv2.padding == b.conv2.dilation
               for b in (*net.layer3, *net.layer4))


def test_undilated_configs_are_unchanged():
    """The default config keeps the classic layout: stride 2 from stage 2 on, dilation 1."""
    for cfg in (V1B[50], V1B[18]):
        assert cfg.dilations == () and cfg.strides == ()
        net = _meta(ResNet, cfg)
        for s, stage in enumerate(net.stages):
            convs = [m for m in stage.modules() if isinstance(m, nn.Conv2d)]
            assert all(c.dilation == (1, 1) for c in convs)
            assert max(c.stride[0] for c in convs) == (1 if s == 0 else 2)


# ------------------------------------------------------------------------------------ heads


def test_fcn_head_and_aux_head():
    net = _meta(SegmentationNet, config("fcn", 50, "ade"))
    for head, cin, mid in ((net.head, 2048, 512), (net.aux_head, 1024, 256)):
        assert isinstance(head, ConvHead)
        conv, bn, relu, drop, cls = head
        assert (conv.in_channels, conv.out_channels, conv.kernel_size, conv.padding) == (cin, mid, (3, 3), (1, 1))
        assert conv.bias is None and bn.eps == 1e-5 and isinstance(relu, nn.ReLU) and drop.p == 0.1
        assert (cls.in_channels, cls.out_channels, cls.kernel_size) == (mid, 150, (1, 1)) and cls.bias is not None


def test_psp_head():
    net = _meta(SegmentationNet, config("psp", 101, "citys"))
    pyramid, cls = net.head.pyramid, net.head.classifier
    assert isinstance(pyramid, PyramidPooling)
    assert [b[0].output_size for b in pyramid.branches] == [1, 2, 3, 6]
    assert all((b[1].in_channels, b[1].out_channels, b[1].bias) == (2048, 512, None) for b in pyramid.branches)
    assert (cls[0].in_channels, cls[0].out_channels, cls[4].out_channels) == (4096, 512, 19)


def test_deeplab_head():
    net = _meta(SegmentationNet, config("deeplab", 152, "voc"))
    aspp = net.head.aspp
    assert isinstance(aspp, ASPP) and isinstance(aspp.branches[4], PoolBranch)
    convs = [aspp.branches[i][0] for i in range(4)]
    assert [(c.kernel_size[0], c.dilation[0], c.padding[0]) for c in convs] == [(1, 1, 0), (3, 12, 12),
                                                                                (3, 24, 24), (3, 36, 36)]
    assert aspp.branches[4][0].output_size == 1 and aspp.branches[4][1].kernel_size == (1, 1)
    assert (aspp.project[0].in_channels, aspp.project[0].out_channels, aspp.project[3].p) == (1280, 256, 0.5)
    cls = net.head.classifier
    assert (cls[0].in_channels, cls[0].out_channels, cls[4].out_channels) == (256, 256, 21)


@pytest.mark.parametrize("name", FAMILY)
def test_output_tuple_at_the_native_size(name):
    """(main, aux), both (B, classes, H, W): shapes through the whole net on the meta device."""
    spec = registry.get(name)
    net = _meta(spec.build)
    x = torch.empty(2, 3, *spec.preprocess.size, device="meta")
    out = net(x)
    assert isinstance(out, tuple) and len(out) == 2
    assert [tuple(o.shape) for o in out] == [(2, net.cfg.num_classes, *spec.preprocess.size)] * 2


TINY = SegConfig(dataclasses.replace(V1B[18], channels=(8, 8, 16, 32, 64), strides=(1, 2, 1, 1),
                                     dilations=(1, 1, 2, 4), first_dilations=(1, 1, 1, 2)),
                 "psp", 5, psp_width=16, aspp_width=8)


@pytest.mark.parametrize("head", ["fcn", "psp", "deeplab"])
def test_outputs_are_the_head_logits_resized_to_the_input(head):
    """Real forward of a tiny net at an odd size: each output is its head's logits resized with
    align_corners=True to the input; eval-mode dropout is the identity."""
    torch.manual_seed(0)
    net = SegmentationNet(dataclasses.replace(TINY, head=head)).eval()
    x = torch.randn(1, 3, 75, 61)
    with torch.no_grad():
        main, aux = net(x)
        c3, c4 = net.features(x)
        assert c4.shape[-2:] == (10, 8)  # output stride 8 (ceil at each stride-2 step)
        torch.testing.assert_close(main, resize_bilinear(net.head(c4), (75, 61)), rtol=0, atol=0)
        torch.testing.assert_close(aux, resize_bilinear(net.aux_head(c3), (75, 61)), rtol=0, atol=0)
        again = net(x)
    assert torch.equal(again[0], main)
    assert main.shape == aux.shape == (1, 5, 75, 61)


def test_pool_branch_resizes_back_to_its_input():
    torch.manual_seed(0)
    branch = PoolBranch(4, 3, 2, 1e-5).eval()
    x = torch.randn(1, 4, 9, 7)
    with torch.no_grad():
        y = branch(x)
        small = branch[3](branch[2](branch[1](branch[0](x))))
    assert y.shape == (1, 3, 9, 7) and small.shape == (1, 3, 2, 2)
    # corner-aligned: the four corners of the resized map are the 2x2 values themselves
    for (i, j), (a, b) in {(0, 0): (0, 0), (0, -1): (0, 1), (-1, 0): (1, 0), (-1, -1): (1, 1)}.items():
        torch.testing.assert_close(y[0, :, i, j], small[0, :, a, b], rtol=0, atol=1e-6)


def test_resize_is_corner_aligned():
    """Output pixel i samples input position i * (in - 1) / (out - 1): a linear ramp stays a ramp
    with the same end points (align_corners=False would clamp the ends and shift the inside)."""
    x = torch.arange(5, dtype=torch.float64).view(1, 1, 1, 5).expand(1, 1, 3, 5)
    y = resize_bilinear(x, (3, 9))
    torch.testing.assert_close(y[0, 0, 0], torch.linspace(0, 4, 9, dtype=torch.float64))


# ------------------------------------------------------------------------------ rule tables


def test_export_rules_accept_any_instance_counter():
    spec = registry.get("psp_resnet50_ade")
    net = _meta(spec.build)
    names = {"pspnet7__psphead0_conv1_weight": "head.classifier.4.weight",
             "pspnet12__pyramidpooling0_hybridsequential3_batchnorm0_running_var": "head.pyramid.branches.3.2.running_var",
             "pspnet0_resnetv1s_layers4_conv8_weight": "backbone.layer4.2.conv3.weight",
             "pspnet3__fcnhead0_hybridsequential0_conv0_weight": "aux_head.0.weight"}
    expected = net.state_dict()
    for src, dst in names.items():
        hit = next(r for r in spec.rules["export"] if r.apply(src))
        assert hit.apply(src) == dst and dst in expected


def _gluoncv_net(name: str, crop: int = 64, forward: bool = True):
    """gluoncv's own net (pretrained=False, pretrained_base=False); ``forward`` resolves the deferred
    shapes with one pass at a small crop (the crop only moves gluoncv's resize targets; parameter
    shapes do not depend on it)."""
    import warnings
    from converters.frameworks import import_gluoncv, import_mxnet
    mx, gcv = import_mxnet(), import_gluoncv()
    spec = registry.get(name)
    net = gcv.model_zoo.get_model(name, pretrained=False, **{**spec.get_model_kwargs, "crop_size": crop})
    with warnings.catch_warnings():  # gluoncv initializes its heads in their constructors already
        warnings.simplefilter("ignore", UserWarning)
        net.initialize()
    return net, (net(mx.nd.zeros((1, 3, crop, crop))) if forward else None)


def _gluon_layers(net) -> dict[str, object]:
    """Structural path -> Gluon block, for every block in the net."""
    out, todo = {}, [("", net)]
    while todo:
        path, block = todo.pop()
        out[path] = block
        todo += [(f"{path}.{k}" if path else k, c) for k, c in block._children.items()]
    return out


def _same_geometry(gluon_block, torch_module) -> bool:
    """A mapped layer's geometry: conv kernel/stride/padding/dilation/groups/bias, BN epsilon."""
    kw = gluon_block._kwargs
    if isinstance(torch_module, nn.Conv2d):
        return (tuple(kw["kernel"]), tuple(kw["stride"]), tuple(kw["pad"]), tuple(kw["dilate"]), kw["num_group"],
                not kw["no_bias"]) == (torch_module.kernel_size, torch_module.stride, torch_module.padding,
                                       torch_module.dilation, torch_module.groups, torch_module.bias is not None)
    return isinstance(torch_module, nn.BatchNorm2d) and kw["eps"] == torch_module.eps and not kw["fix_gamma"]


@pytest.mark.oracle
@pytest.mark.parametrize("name", FAMILY)
def test_rule_tables_cover_gluoncvs_own_names(name):
    """Both layouts, on the names gluoncv gives this very net (save_parameters keys; export's
    parameter names from a second instance, so the counter is not 0): every tensor mapped once, with
    its value, onto a layer of the same geometry (conv dilation/padding/stride, BN epsilon)."""
    net, out = _gluoncv_net(name)
    second, _ = _gluoncv_net(name, forward=False)  # a later instance: its export names' counter is not 0
    spec = registry.get(name)
    assert isinstance(out, tuple) and len(out) == 2  # gluoncv's eval output: (main, aux)
    target = _meta(spec.build)
    expected = target.state_dict()
    blocks = _gluon_layers(net)
    n_default = sum(k.endswith("num_batches_tracked") for k in expected)
    shapes = {k: p.shape for k, p in net._collect_params_with_prefix().items()}
    names = {k: p.name for k, p in second._collect_params_with_prefix().items()}
    for layout, params in (("gluon", shapes), ("export", {names[k]: shape for k, shape in shapes.items()})):
        if layout == "export":  # e.g. pspnet2_resnetv1s_conv0_weight: a counter other than 0
            sym = SYMBOL[_parse(name)[0]]
            assert all(re.match(rf"^{sym}[1-9]\d*_", n) for n in params)
        src = {k: np.full(shape, i + 0.5, np.float32) for i, (k, shape) in enumerate(params.items())}
        state, rows = map_tensors(name, src, target, spec.rules[layout], spec.fixups, spec.defaults)
        counts = Counter(r.status for r in rows)
        assert (counts["mapped"], counts["ignored"], counts["default"]) == (len(src), 0, n_default)
        for r in rows:
            if r.status != "mapped":
                continue
            assert r.fixup is None and np.array_equal(state[r.target].numpy(), src[r.source]), r.source
            if layout == "gluon":
                layer, torch_layer = r.source.rpartition(".")[0], r.target.rpartition(".")[0]
                assert _same_geometry(blocks[layer], target.get_submodule(torch_layer)), (r.source, r.target)


# ------------------------------------------------------------------------- ops against MXNet


SIZES = [((60, 60), (480, 480)), ((1, 1), (60, 60)), ((2, 2), (60, 60)), ((3, 3), (60, 60)),
         ((6, 6), (96, 96)), ((7, 5), (33, 18)), ((63, 61), (500, 487)), ((9, 9), (4, 4))]


@pytest.mark.oracle
@pytest.mark.parametrize("src,dst", SIZES)
def test_resize_equals_mxnet_bilinear_resize_2d(src, dst):
    """gluoncv's F.contrib.BilinearResize2D(x, height, width) == torch's align_corners=True to
    fp32 rounding (a few ulp of the values); align_corners=False is off by O(1) on the same maps."""
    from converters.frameworks import import_mxnet
    mx = import_mxnet()
    x = np.random.default_rng(sum(src + dst)).standard_normal((2, 3, *src)).astype(np.float32)
    ref = mx.nd.contrib.BilinearResize2D(mx.nd.array(x), height=dst[0], width=dst[1]).asnumpy()
    got = resize_bilinear(torch.from_numpy(x), dst).numpy()
    assert got.shape == ref.shape
    assert np.abs(got - ref).max() <= 4 * np.finfo(np.float32).eps * np.abs(x).max()
    if src not in ((1, 1),) and dst[0] > 1:  # a 1x1 source broadcasts either way
        off = torch.nn.functional.interpolate(torch.from_numpy(x), size=dst, mode="bilinear", align_corners=False)
        assert np.abs(off.numpy() - ref).max() > 0.05


@pytest.mark.oracle
@pytest.mark.parametrize("hw", [(60, 60), (96, 96), (63, 61), (20, 20), (7, 5)])
def test_pyramid_pools_equal_mxnet_adaptive_and_global_pools(hw):
    """PSP's contrib.AdaptiveAvgPooling2D (uneven bins included) and DeepLab's GlobalAvgPool2D."""
    from converters.frameworks import import_mxnet
    mx = import_mxnet()
    x = np.random.default_rng(hw[0]).standard_normal((1, 4, *hw)).astype(np.float32)
    for bins in (1, 2, 3, 6):
        ref = mx.nd.contrib.AdaptiveAvgPooling2D(mx.nd.array(x), output_size=bins).asnumpy()
        got = nn.AdaptiveAvgPool2d(bins)(torch.from_numpy(x)).numpy()
        assert np.abs(got - ref).max() <= 1e-6
    ref = mx.nd.Pooling(mx.nd.array(x), global_pool=True, pool_type="avg", kernel=(1, 1)).asnumpy()
    assert np.abs(nn.AdaptiveAvgPool2d(1)(torch.from_numpy(x)).numpy() - ref).max() <= 1e-6

