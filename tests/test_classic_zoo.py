"""gluoncv's torchvision-shaped classifiers (VGG, AlexNet, SqueezeNet, DenseNet, Inception v3):
the numeric conventions each port relies on, and the torchvision targets."""
from __future__ import annotations

import pytest

from parity.selection import slow
import torch
import torch.nn.functional as F
from torch import nn
from torchvision import models

import converters
from converters import registry
from converters.arch.classic import AlexNet, alexnet_torchvision_key
from converters.gluon import alexnet as gl_alexnet
from converters.gluon import densenet as gl_densenet
from converters.gluon import inception as gl_inception
from converters.gluon import squeezenet as gl_squeezenet
from converters.gluon import vgg as gl_vgg

CLASSIC = ("vgg11", "vgg13", "vgg16", "vgg19", "vgg11_bn", "vgg13_bn", "vgg16_bn", "vgg19_bn", "alexnet",
           "squeezenet1.0", "squeezenet1.1", "densenet121", "densenet161", "densenet169", "densenet201",
           "inceptionv3")


def meta(factory, *args, **kwargs) -> nn.Module:
    """Build a module on the meta device: structure and shapes only, none of the (slow) init."""
    with torch.device("meta"):
        return factory(*args, **kwargs).eval()


def _shapes(module: nn.Module, size: tuple[int, int], types: tuple[type, ...]) -> list[tuple[str, tuple]]:
    """(name, output shape) of every submodule of ``types``, in call order, for a meta input."""
    seen, handles = [], []
    for name, m in module.named_modules():
        if isinstance(m, types):
            handles.append(m.register_forward_hook(lambda _m, _i, o, name=name: seen.append((name, tuple(o.shape)))))
    with torch.no_grad():
        out = module(torch.empty(1, 3, *size, device="meta"))
    for h in handles:
        h.remove()
    return seen + [("", tuple(out.shape))]


# ------------------------------------------------------------------------------- the registrations


def test_every_classic_model_is_registered_with_its_input_size():
    for name in CLASSIC:
        spec = registry.get(name)
        assert spec.source_model == name and spec.task == "classification"
        assert spec.preprocess.size == ((299, 299) if name == "inceptionv3" else (224, 224))
        assert spec.preprocess.resize_short == (342 if name == "inceptionv3" else 256)
        assert spec.torchvision is not None
        assert {m.name for m in spec.metrics} == {"top1", "top5"}


@pytest.mark.parametrize("name", ["vgg16_bn", "squeezenet1.0", "densenet161", "inceptionv3"])
def test_torchvision_target_is_the_build_itself_where_identical(name):
    spec = registry.get(name)
    assert spec.torchvision_key is None
    a, b = meta(spec.build), meta(spec.torchvision)
    assert type(a) is type(b) and a.state_dict().keys() == b.state_dict().keys()


# --------------------------------------------------------------------------------------------- VGG


@pytest.mark.parametrize("depth,bn", [(11, False), (16, False), (19, True)])
def test_vgg_conv_positions_are_torchvision_features_indices(depth, bn):
    net = meta(getattr(models, f"vgg{depth}{'_bn' if bn else ''}"), weights=None)
    convs, fc6 = gl_vgg.conv_positions(depth, bn)
    assert convs == [i for i, m in enumerate(net.features) if isinstance(m, nn.Conv2d)]
    if bn:
        assert all(isinstance(net.features[i + 1], nn.BatchNorm2d) and net.features[i + 1].eps == 1e-5 for i in convs)
    assert fc6 == len(net.features)  # gluon appends fc6 to ``features`` right after the last pool
    pools = [m for m in net.features if isinstance(m, nn.MaxPool2d)]
    assert len(pools) == 5 and not any(p.ceil_mode for p in pools)  # MXNet 'valid' == floor mode
    assert [type(m) for m in net.classifier] == [nn.Linear, nn.ReLU, nn.Dropout] * 2 + [nn.Linear]
    assert [net.classifier[i].in_features for i in gl_vgg.CLASSIFIER] == [512 * 7 * 7, 4096, 4096]


def test_vgg_adaptive_pool_is_the_identity_at_224_only():
    """gluon's fc6 reads the 7x7 map directly; torchvision's AdaptiveAvgPool2d((7, 7)) in between
    changes nothing at 224x224, and would silently resample at any other size."""
    net = meta(models.vgg11, weights=None)
    assert _shapes(net.features, (224, 224), ())[-1][1] == (1, 512, 7, 7)
    assert _shapes(net.features, (256, 256), ())[-1][1] == (1, 512, 8, 8)
    assert net.avgpool.output_size == (7, 7)
    fmap = torch.randn(2, 512, 7, 7)
    assert torch.equal(nn.AdaptiveAvgPool2d((7, 7))(fmap), fmap)


def test_dense_flatten_is_nchw_c_major():
    """MXNet's Dense flattens (N, C, H, W) in C order, channel slowest: torch.flatten's order."""
    x = torch.arange(2 * 3 * 2 * 2, dtype=torch.float32).reshape(2, 3, 2, 2)
    flat = torch.flatten(x, 1)
    assert torch.equal(flat[:, 4 * 1 + 2 * 1 + 0], x[:, 1, 1, 0])
    assert torch.equal(flat, torch.from_numpy(x.numpy().reshape(2, -1)))


def test_vgg_fused_relu_pairs_point_at_the_dense_activations():
    assert gl_vgg.fused_relu_pairs(16, False) == (("features.31.act#in", "classifier.0"),
                                                  ("features.33.act#in", "classifier.3"))
    assert gl_vgg.fused_relu_pairs(11, True)[0] == ("features.29.act#in", "classifier.0")


# ----------------------------------------------------------------------------------------- AlexNet


def test_alexnet_dropout_sits_after_fc6_and_fc7_unlike_torchvision():
    ours, tv = meta(AlexNet), meta(models.alexnet, weights=None)
    assert [type(m) for m in ours.classifier] == [nn.Linear, nn.ReLU, nn.Dropout] * 2 + [nn.Linear]
    assert [type(m) for m in tv.classifier] == [nn.Dropout, nn.Linear, nn.ReLU] * 2 + [nn.Linear]
    assert not hasattr(ours, "avgpool")  # gluon flattens the 6x6 map directly
    assert [type(m) for m in ours.features] == [type(m) for m in tv.features]  # same keys
    assert [i for i, m in enumerate(ours.features) if isinstance(m, nn.Conv2d)] == [t for _, t in gl_alexnet.CONVS]
    assert not any(getattr(m, "inplace", False) for m in ours.modules())
    assert not any(m.ceil_mode for m in ours.features if isinstance(m, nn.MaxPool2d))


def test_alexnet_equals_torchvision_in_eval_at_224_after_the_key_rename():
    torch.manual_seed(0)
    ours, tv = meta(AlexNet).to_empty(device="cpu"), meta(models.alexnet, weights=None).to_empty(device="cpu")
    with torch.no_grad():
        for p in ours.parameters():
            p.normal_(0, 0.02)
    tv.load_state_dict({alexnet_torchvision_key(k): v for k, v in ours.state_dict().items()}, strict=True)
    x = torch.randn(2, 3, 224, 224)
    with torch.inference_mode():
        assert ours.features(x).shape == (2, 256, 6, 6)
        assert torch.equal(ours(x), tv(x))
    assert alexnet_torchvision_key("classifier.0.weight") == "classifier.1.weight"
    assert alexnet_torchvision_key("classifier.6.bias") == "classifier.6.bias"
    assert alexnet_torchvision_key("features.3.weight") == "features.3.weight"


# -------------------------------------------------------------------------------------- SqueezeNet


@pytest.mark.parametrize("version,sizes", [("1.0", [54, 27, 13]), ("1.1", [55, 27, 13])])
def test_squeezenet_pools_are_ceil_mode_and_end_at_13(version, sizes):
    """MXNet's 'full' convention == ceil_mode=True; it matters here (floor would give 26, not 27)."""
    net = meta(getattr(models, f"squeezenet{version.replace('.', '_')}"), weights=None)
    pools = [m for m in net.features if isinstance(m, nn.MaxPool2d)]
    assert all(p.ceil_mode for p in pools)
    assert [s[-1] for _, s in _shapes(net.features, (224, 224), (nn.MaxPool2d,))[:-1]] == sizes
    assert F.max_pool2d(torch.zeros(1, 1, 54, 54), 3, 2).shape[-1] == 26  # floor mode: one short
    assert [i for i, m in enumerate(net.features) if type(m).__name__ == "Fire"] == list(gl_squeezenet.FIRES[version])


def test_squeezenet_adaptive_pool_equals_avgpool13_on_the_native_map():
    x = torch.randn(2, 1000, 13, 13)
    assert torch.allclose(F.adaptive_avg_pool2d(x, 1), F.avg_pool2d(x, 13), rtol=0, atol=1e-6)


# ---------------------------------------------------------------------------------------- DenseNet


@pytest.mark.parametrize("depth", sorted(gl_densenet.DENSENET))
def test_densenet_config_matches_torchvision(depth):
    width, growth, blocks = gl_densenet.DENSENET[depth]
    net = meta(getattr(models, f"densenet{depth}"), weights=None)
    assert net.features.conv0.out_channels == width
    for s, n in enumerate(blocks, 1):
        block = getattr(net.features, f"denseblock{s}")
        assert len(block) == n and block.denselayer1.conv2.out_channels == growth
        assert block.denselayer1.conv1.out_channels == 4 * growth  # bn_size 4
        assert block.denselayer1.drop_rate == 0
    assert all(m.eps == 1e-5 for m in net.modules() if isinstance(m, nn.BatchNorm2d))
    pool0 = net.features.pool0
    assert (pool0.kernel_size, pool0.stride, pool0.padding, pool0.ceil_mode) == (3, 2, 1, False)
    t = net.features.transition1.pool
    assert (t.kernel_size, t.stride, t.padding) == (2, 2, 0)  # unpadded: count_include_pad is moot


def test_densenet_final_map_is_7x7_at_224():
    assert _shapes(meta(models.densenet121, weights=None).features, (224, 224), ())[-1][1] == (1, 1024, 7, 7)


def test_max_pool_padding_never_wins():
    """MXNet and torch both pad max pooling with -inf: an all-negative map keeps its values."""
    x = -1 - torch.rand(1, 1, 6, 6)
    assert F.max_pool2d(x, 3, 2, 1).max() < 0


# ------------------------------------------------------------------------------------ Inception v3


@pytest.fixture(scope="module")
def inception() -> nn.Module:
    return meta(registry.get("inceptionv3").build)


def test_inception_bn_eps_is_1e3_and_convs_have_no_bias(inception):
    bns = [m for m in inception.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(bns) == 94 and all(m.eps == 1e-3 for m in bns)
    assert all(m.bias is None for m in inception.modules() if isinstance(m, nn.Conv2d))
    assert inception.AuxLogits is None and not inception.transform_input


def test_inception_block_tables_cover_torchvision(inception):
    for _, _, kind, block in gl_inception.BLOCKS:
        ours = {b for _, b in gl_inception.BRANCHES[kind]}
        assert ours == {n for n, _ in getattr(inception, block).named_children()}
    stem = {n for n, _ in inception.named_children() if n.startswith("Conv2d_")}
    assert stem == {n for _, n in gl_inception.STEM}


def test_inception_final_map_is_8x8_at_299(inception):
    shapes = dict(_shapes(inception, (299, 299), (type(inception.Mixed_7c),)))
    assert shapes["Mixed_7c"] == (1, 2048, 8, 8)


def test_avg_pool_counts_padding_like_mxnet():
    """Inception's pool branches: MXNet AvgPool2D(3, 1, 1) counts padded zeros (count_include_pad
    default True), as F.avg_pool2d's default does: a corner of a ones map averages to 4/9."""
    out = F.avg_pool2d(torch.ones(1, 1, 5, 5), 3, 1, 1)
    assert out[0, 0, 0, 0].item() == pytest.approx(4 / 9) and out[0, 0, 2, 2].item() == 1.0
    assert F.avg_pool2d(torch.ones(1, 1, 5, 5), 3, 1, 1, count_include_pad=False)[0, 0, 0, 0].item() == 1.0


# ----------------------------------------------------------------- rule tables vs gluoncv's names


@pytest.mark.oracle
@pytest.mark.parametrize("name", ["vgg16_bn", "alexnet", "squeezenet1.0", "squeezenet1.1", "densenet121",
                                  "inceptionv3"])  # densenet161: same definition as 121, in parity-full via the sweep
def test_both_layouts_map_gluoncv_names_onto_the_same_targets(name):
    """Every parameter of gluoncv's own net: its structural key (save_parameters) and its symbol
    name (export) land on the same target tensor, and together they fill the target."""
    from converters.frameworks import import_gluoncv, import_mxnet
    mx, gcv = import_mxnet(), import_gluoncv()
    spec = registry.get(name)
    net = gcv.model_zoo.get_model(name, pretrained=False)
    net.initialize()
    net(mx.nd.zeros((1, 3, *spec.preprocess.size)))

    def apply(rules, source):
        return next((hit for r in rules if (hit := r.apply(source))), None)

    targets = {k for k in meta(spec.build).state_dict() if not k.endswith("num_batches_tracked")}
    hit = {}
    for key, param in net._collect_params_with_prefix().items():
        got = apply(spec.rules["gluon"], key)
        assert got == apply(spec.rules["export"], param.name), (key, param.name)
        hit[key] = got
    assert sorted(hit.values()) == sorted(targets)


# ------------------------------------------------------------------------- the torchvision targets


@pytest.mark.oracle
@pytest.mark.parametrize("name", [pytest.param(n, marks=[pytest.mark.slow] if slow(n) else [])
                                  for n in CLASSIC])
def test_torchvision_target_equals_the_conversion(tmp_path, name):
    spec = registry.get(name)
    weights, _ = converters.convert(name, init="random").write(tmp_path)
    ours = converters.load(name, weights)
    tv = converters.load(name, weights, target="torchvision")
    assert type(tv).__module__.startswith("torchvision.models.") and not tv.training
    x = torch.randn(2, 3, *spec.preprocess.size)
    with torch.inference_mode():
        assert torch.equal(ours(x), tv(x))
