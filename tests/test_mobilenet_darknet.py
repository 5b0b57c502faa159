"""gluoncv MobileNet v1/v2 and DarkNet-53: every numeric convention of the target modules, and the
rule tables against the source names gluon writes (enumerated here by hand from gluon's structure;
an oracle-marked test checks the enumeration against gluoncv itself)."""
from __future__ import annotations

import dataclasses
from collections import Counter

import numpy as np
import pytest
import torch
from torch import nn

from converters import registry
from converters.arch.darknet import DarkNet, Residual
from converters.arch.mobilenet import InvertedResidual, MobileNet, MobileNetConfig
from converters.engine import map_tensors
from converters.gluon.darknet import DARKNET53

MOBILENETS = ("mobilenet1.0", "mobilenet0.75", "mobilenet0.5", "mobilenet0.25")
MOBILENETS_V2 = ("mobilenetv2_1.0", "mobilenetv2_0.75", "mobilenetv2_0.5", "mobilenetv2_0.25")
ALL = (*MOBILENETS, *MOBILENETS_V2, "darknet53")

_BUILT: dict[str, nn.Module] = {}


def _net(name: str) -> nn.Module:
    if name not in _BUILT:
        torch.manual_seed(0)
        _BUILT[name] = registry.get(name).build().eval()
    return _BUILT[name]


def _convs(net: nn.Module) -> list[tuple[str, nn.Conv2d]]:
    return [(n, m) for n, m in net.named_modules() if isinstance(m, nn.Conv2d)]


# ------------------------------------------------------------------------------- MobileNet widths

def test_v1_widths_are_truncated_products():
    """gluon: int(c * multiplier) for the stem and every pointwise conv."""
    want = {
        "mobilenet1.0": (32, [64, 128, 128, 256, 256] + [512] * 6 + [1024, 1024]),
        "mobilenet0.75": (24, [48, 96, 96, 192, 192] + [384] * 6 + [768, 768]),
        "mobilenet0.5": (16, [32, 64, 64, 128, 128] + [256] * 6 + [512, 512]),
        "mobilenet0.25": (8, [16, 32, 32, 64, 64] + [128] * 6 + [256, 256]),
    }
    for name, (stem, outs) in want.items():
        net = _net(name)
        assert net.stem.conv.out_channels == stem
        assert [b.pw.conv.out_channels for b in net.blocks] == outs
        assert net.fc.in_features == outs[-1]


def test_v2_widths_are_truncated_not_rounded_to_multiples_of_8():
    want = {
        "mobilenetv2_1.0": (32, [16, 24, 24, 32, 32, 32] + [64] * 4 + [96] * 3 + [160] * 3 + [320]),
        "mobilenetv2_0.75": (24, [12, 18, 18, 24, 24, 24] + [48] * 4 + [72] * 3 + [120] * 3 + [240]),
        "mobilenetv2_0.5": (16, [8, 12, 12, 16, 16, 16] + [32] * 4 + [48] * 3 + [80] * 3 + [160]),
        "mobilenetv2_0.25": (8, [4, 6, 6, 8, 8, 8] + [16] * 4 + [24] * 3 + [40] * 3 + [80]),
    }
    for name, (stem, outs) in want.items():
        net = _net(name)
        assert net.stem.conv.out_channels == stem
        assert [b.project.conv.out_channels for b in net.blocks] == outs
        cins = [stem] + outs[:-1]
        assert [b.dw.conv.in_channels for b in net.blocks] == [c * (1 if i == 0 else 6) for i, c in enumerate(cins)]


def test_torchvision_mobilenet_v2_rounds_widths_differently():
    """Why the target is our own module: torchvision rounds 0.25 x 16 = 4 up to 8."""
    import torchvision
    tv = torchvision.models.mobilenet_v2(width_mult=0.25)
    assert tv.features[1].conv[-1].num_features == 8
    assert _net("mobilenetv2_0.25").blocks[0].project.bn.num_features == 4


@pytest.mark.parametrize("multiplier,last", [(0.25, 1280), (0.5, 1280), (1.0, 1280), (1.4, 1792)])
def test_v2_last_conv_is_1280_unless_multiplier_exceeds_1(multiplier, last):
    cfg = MobileNetConfig(2, multiplier, "relu6")
    assert cfg.v2_last == last
    net = MobileNet(cfg)
    assert net.head.conv.out_channels == last and net.classifier.in_channels == last


# ---------------------------------------------------------------------------- MobileNet layers

@pytest.mark.parametrize("name", MOBILENETS + MOBILENETS_V2)
def test_depthwise_convs_have_one_group_per_channel(name):
    net = _net(name)
    dws = [b.dw.conv for b in net.blocks]
    assert len(dws) == (13 if name in MOBILENETS else 17)
    for conv in dws:
        assert conv.groups == conv.in_channels == conv.out_channels
        assert conv.kernel_size == (3, 3) and conv.padding == (1, 1)
        assert conv.weight.shape[1] == 1
    # every other conv is dense; no conv has a bias (each is followed by BN)
    for n, conv in _convs(net):
        assert conv.bias is None, n
        if conv not in dws:
            assert conv.groups == 1, n


@pytest.mark.parametrize("name", MOBILENETS + MOBILENETS_V2)
def test_strides_and_overall_stride_32(name):
    net = _net(name)
    strides = [b.dw.conv.stride[0] for b in net.blocks]
    if name in MOBILENETS:
        assert strides == [1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1]
    else:
        assert strides == [1, 2, 1, 2, 1, 1, 2, 1, 1, 1, 1, 1, 1, 2, 1, 1, 1]
    assert net.stem.conv.stride == (2, 2) and net.stem.conv.padding == (1, 1)
    with torch.no_grad():
        feats = net.blocks(net.stem(torch.zeros(1, 3, 64, 64)))
        out = net(torch.zeros(2, 3, 64, 64))
    assert feats.shape[-2:] == (2, 2)  # 224 -> 7
    assert out.shape == (2, 1000)


@pytest.mark.parametrize("name", MOBILENETS + MOBILENETS_V2 + ("darknet53",))
def test_bn_eps_is_gluon_default(name):
    bns = [m for m in _net(name).modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and all(m.eps == 1e-5 for m in bns)


def test_v1_uses_plain_relu_v2_relu6():
    x = torch.tensor([-3.0, 0.5, 7.0, 100.0])
    v1, v2 = _net("mobilenet0.25"), _net("mobilenetv2_0.25")
    assert isinstance(v1.stem.act, nn.ReLU) and isinstance(v2.stem.act, nn.ReLU6)
    assert v1.stem.act(x).tolist() == [0.0, 0.5, 7.0, 100.0]  # not clipped at 6
    assert v2.stem.act(x).tolist() == [0.0, 0.5, 6.0, 6.0]  # gluoncv ReLU6 = clip(x, 0, 6)
    for b in v1.blocks:
        assert isinstance(b.dw.act, nn.ReLU) and isinstance(b.pw.act, nn.ReLU)
    for b in v2.blocks:
        assert isinstance(b.dw.act, nn.ReLU6)
        assert isinstance(b.project.act, nn.Identity)  # linear bottleneck: no activation
        assert b.expand is None or isinstance(b.expand.act, nn.ReLU6)
    assert isinstance(v2.head.act, nn.ReLU6)


def test_v2_expansion_only_when_t_is_not_1():
    net = _net("mobilenetv2_1.0")
    assert net.blocks[0].expand is None
    assert all(b.expand is not None and b.expand.conv.out_channels == 6 * b.expand.conv.in_channels
               for b in net.blocks[1:])


def test_v2_shortcut_iff_stride_1_and_equal_widths():
    net = _net("mobilenetv2_0.5")
    flags = [b.use_shortcut for b in net.blocks]
    assert flags == [False, False, True, False, True, True, False, True, True, True, False, True, True,
                     False, True, True, False]
    for b in net.blocks:
        assert b.use_shortcut == (b.dw.conv.stride == (1, 1)
                                  and b.dw.conv.in_channels // (1 if b.expand is None else 6)
                                  == b.project.conv.out_channels)


def test_v2_shortcut_adds_the_input_with_no_activation_after():
    torch.manual_seed(0)
    cfg = MobileNetConfig(2, 1.0, "relu6")
    block = InvertedResidual(8, 8, 6, 1, cfg).eval()
    with torch.no_grad():
        block.project.bn.weight.zero_()
        block.project.bn.bias.zero_()
        x = torch.randn(2, 8, 5, 5) * 10  # negatives and values above 6 must pass through
        assert torch.equal(block(x), x)
        strided = InvertedResidual(8, 8, 6, 2, cfg).eval()
        assert not strided.use_shortcut and strided(x).shape == (2, 8, 3, 3)


def test_v2_classifier_is_bias_free_1x1_conv_on_pooled_features():
    net = _net("mobilenetv2_0.25")
    assert isinstance(net.classifier, nn.Conv2d) and net.classifier.kernel_size == (1, 1)
    assert net.classifier.bias is None
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        feats = net.head(net.blocks(net.stem(x)))
        want = feats.mean(dim=(2, 3)) @ net.classifier.weight[:, :, 0, 0].T
        assert torch.allclose(net(x), want, atol=1e-5, rtol=1e-5)


def test_v1_classifier_is_linear_on_flattened_pool():
    net = _net("mobilenet0.25")
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        feats = net.blocks(net.stem(x))
        want = net.fc(feats.mean(dim=(2, 3)))
        assert torch.allclose(net(x), want, atol=1e-5, rtol=1e-5)


def test_no_torchvision_equivalent_is_claimed():
    assert all(registry.get(n).torchvision is None for n in ALL)


# -------------------------------------------------------------------------------------- DarkNet

def test_darknet_strides_widths_and_layer_count():
    net = _net("darknet53")
    assert net.stem.conv.stride == (1, 1) and net.stem.conv.out_channels == 32  # stem keeps 224
    assert [s.down.conv.stride for s in net.stages] == [(2, 2)] * 5
    assert [len(s.blocks) for s in net.stages] == [1, 2, 8, 8, 4]
    for stage, c in zip(net.stages, (64, 128, 256, 512, 1024)):
        assert stage.down.conv.out_channels == c and stage.down.conv.padding == (1, 1)
        for b in stage.blocks:
            assert (b.conv1.conv.kernel_size, b.conv1.conv.out_channels) == ((1, 1), c // 2)
            assert (b.conv2.conv.kernel_size, b.conv2.conv.out_channels) == ((3, 3), c)
            assert b.conv1.conv.padding == (0, 0) and b.conv2.conv.padding == (1, 1)
    convs = _convs(net)
    assert len(convs) == 52 and all(c.bias is None for _, c in convs)  # 52 convs + fc = 53
    with torch.no_grad():
        assert net.stages(net.stem(torch.zeros(1, 3, 64, 64))).shape == (1, 1024, 2, 2)  # 224 -> 7


def test_darknet_leaky_relu_slope():
    acts = [m for m in _net("darknet53").modules() if isinstance(m, nn.LeakyReLU)]
    assert len(acts) == 52 and all(a.negative_slope == 0.1 for a in acts)
    assert acts[0](torch.tensor([-2.0, 3.0])).tolist() == pytest.approx([-0.2, 3.0])


def test_darknet_residual_has_no_activation_after_the_add():
    torch.manual_seed(0)
    block = Residual(8, DARKNET53).eval()
    with torch.no_grad():
        block.conv2.bn.weight.zero_()
        block.conv2.bn.bias.zero_()
        x = torch.randn(1, 8, 4, 4)
        assert torch.equal(block(x), x)  # negatives survive: no leaky after the sum


def test_darknet_pool_is_global_average_at_any_size():
    """gluon: Pooling(kernel=(7, 7), global_pool=True): the kernel is ignored, the whole map averaged."""
    net = DarkNet(dataclasses.replace(DARKNET53, layers=(1, 1), channels=(4, 8, 16))).eval()
    x = torch.randn(1, 3, 36, 36)  # 9x9 final map
    with torch.no_grad():
        feats = net.stages(net.stem(x))
        assert feats.shape[-1] == 9
        assert torch.allclose(net(x), net.fc(feats.mean(dim=(2, 3))), atol=1e-5, rtol=1e-5)


# ----------------------------------------------------------------------------------- rule tables

GLUON_BN = ("gamma", "beta", "running_mean", "running_var")
TORCH_BN = ("weight", "bias", "running_mean", "running_var")


def _layer(conv_src: str, bn_src: str, dst: str) -> list[tuple[str, str]]:
    return [(conv_src + "weight", f"{dst}.conv.weight")] + [(bn_src + s, f"{dst}.bn.{t}")
                                                           for s, t in zip(GLUON_BN, TORCH_BN)]


def v1_names(export: bool) -> list[tuple[str, str]]:
    """27 conv layers (stem, then dw/pw per block); structurally each takes 3 slots of
    ``features`` (conv, BN, ReLU), in the symbol they are conv<k>/batchnorm<k>."""
    targets = ["stem"] + [f"blocks.{i}.{p}" for i in range(13) for p in ("dw", "pw")]
    pairs = []
    for k, dst in enumerate(targets):
        if export:
            pairs += _layer(f"mobilenet0_conv{k}_", f"mobilenet0_batchnorm{k}_", dst)
        else:
            pairs += _layer(f"features.{3 * k}.", f"features.{3 * k + 1}.", dst)
    head = ("mobilenet0_dense0_", "output.")[not export]
    return pairs + [(head + "weight", "fc.weight"), (head + "bias", "fc.bias")]


def v2_names(export: bool) -> list[tuple[str, str]]:
    ts = [1] + [6] * 16
    s = "mobilenetv20_features_"
    pairs = _layer(f"{s}conv0_", f"{s}batchnorm0_", "stem") if export else \
        _layer("features.0.", "features.1.", "stem")
    for i, t in enumerate(ts):
        parts = ["dw", "project"] if t == 1 else ["expand", "dw", "project"]
        for k, p in enumerate(parts):
            if export:
                pairs += _layer(f"{s}linearbottleneck{i}_conv{k}_", f"{s}linearbottleneck{i}_batchnorm{k}_",
                                f"blocks.{i}.{p}")
            else:
                pairs += _layer(f"features.{i + 3}.out.{3 * k}.", f"features.{i + 3}.out.{3 * k + 1}.",
                                f"blocks.{i}.{p}")
    if export:
        pairs += _layer(f"{s}conv1_", f"{s}batchnorm1_", "head")
        return pairs + [("mobilenetv20_output_pred_weight", "classifier.weight")]
    pairs += _layer("features.20.", "features.21.", "head")  # 3 stem slots + 17 blocks
    return pairs + [("output.0.weight", "classifier.weight")]


def darknet_names(export: bool) -> list[tuple[str, str]]:
    """Structural: features = [stem cell, then per stage a down cell and n residual blocks whose
    body holds two cells]; each cell is (conv, BN, leaky). Symbol: one flat conv/BN numbering."""
    cells = [("features.0.", "stem")]
    pos = 1
    for i, n in enumerate((1, 2, 8, 8, 4)):
        cells.append((f"features.{pos}.", f"stages.{i}.down"))
        pos += 1
        for j in range(n):
            cells += [(f"features.{pos}.body.{k}.", f"stages.{i}.blocks.{j}.conv{k + 1}") for k in range(2)]
            pos += 1
    assert pos == 29 and len(cells) == 52
    pairs = []
    for k, (cell, dst) in enumerate(cells):
        if export:
            pairs += _layer(f"darknetv30_conv{k}_", f"darknetv30_batchnorm{k}_", dst)
        else:
            pairs += _layer(cell + "0.", cell + "1.", dst)
    head = "darknetv30_dense0_" if export else "output."
    return pairs + [(head + "weight", "fc.weight"), (head + "bias", "fc.bias")]


def enumerate_names(name: str, layout: str) -> list[tuple[str, str]]:
    export = layout == "export"
    if name in MOBILENETS:
        return v1_names(export)
    if name in MOBILENETS_V2:
        return v2_names(export)
    return darknet_names(export)


CASES = [(n, layout) for n in ALL for layout in ("gluon", "export")]


def test_every_layout_of_the_family_is_enumerated():
    assert {(n, layout) for n in ALL for layout in registry.get(n).rules} == set(CASES)


@pytest.mark.parametrize("name,layout", CASES)
def test_rule_table_maps_the_enumerated_names(name, layout):
    spec, target = registry.get(name), _net(name)
    pairs = enumerate_names(name, layout)
    if layout == "export":  # any instance counter in the scope prefix
        pairs = [(s.replace("0_", "7_", 1), t) for s, t in pairs]
    expected = target.state_dict()
    rng = np.random.default_rng(0)
    src = {s: rng.standard_normal(tuple(expected[t].shape), dtype=np.float32) for s, t in pairs}
    assert len(src) == len(pairs) == len({t for _, t in pairs})
    state, rows = map_tensors(name, src, target, spec.rules[layout], spec.fixups, spec.defaults)
    counts = Counter(r.status for r in rows)
    n_bn = sum(k.endswith("num_batches_tracked") for k in expected)
    assert (counts["mapped"], counts["default"], counts["ignored"]) == (len(pairs), n_bn, 0)
    assert len(pairs) + n_bn == len(expected)
    want = dict(pairs)
    for r in rows:
        if r.status == "mapped":
            assert r.target == want[r.source] and r.fixup is None, r.source
            assert np.array_equal(state[r.target].numpy(), src[r.source]), r.source


def test_rules_are_anchored_per_model():
    """v1's export scope must not swallow v2's (``mobilenet\\d+_`` vs ``mobilenetv2\\d+_``)."""
    v1, v2 = registry.get("mobilenet1.0").rules["export"], registry.get("mobilenetv2_1.0").rules["export"]
    assert not any(r.apply("mobilenetv20_features_conv0_weight") for r in v1)
    assert not any(r.apply("mobilenet0_conv0_weight") for r in v2)


@pytest.mark.parametrize("name", ALL)
def test_spec_records(name):
    spec = registry.get(name)
    assert spec.source_model == name and spec.preprocess.size == (224, 224)
    assert spec.preprocess.resize_short == 256
    assert spec.weights().filename == f"{name}-{spec.weights().sha1[:8]}.params"
    assert {m.name for m in spec.metrics} == {"top1", "top5"}


# ------------------------------------------------------------------ against gluoncv itself (oracle)

@pytest.mark.oracle
@pytest.mark.parametrize("name", ["mobilenet0.25", "mobilenetv2_0.25", "darknet53"])
def test_enumeration_matches_gluoncv(name):
    from converters.frameworks import import_gluoncv, import_mxnet
    mx, gcv = import_mxnet(), import_gluoncv()
    with mx.name.NameManager():  # fresh instance counters: the scope prefix ends in 0_
        net = gcv.model_zoo.get_model(name, pretrained=False)
    net.initialize()
    net(mx.nd.zeros((1, 3, 64, 64)))
    params = net._collect_params_with_prefix()
    assert {s for s, _ in enumerate_names(name, "gluon")} == set(params)
    assert {s for s, _ in enumerate_names(name, "export")} == {p.name for p in params.values()}


@pytest.mark.oracle
@pytest.mark.parametrize("name", ["mobilenet0.25", "mobilenetv2_0.25"])
def test_export_layout_converts_to_the_same_weights(name, tmp_path):
    from converters import convert
    from converters.frameworks import import_gluoncv, import_mxnet
    mx, gcv = import_mxnet(), import_gluoncv()
    ref = convert(name, init="random", seed=0)
    net = gcv.model_zoo.get_model(name, pretrained=False)
    net.load_parameters(str(ref.source))
    net.hybridize()
    net(mx.nd.zeros((1, 3, 64, 64)))
    net.export(str(tmp_path / "net"))
    exported = convert(name, weights=tmp_path / "net-0000.params")
    assert exported.layout == "export"
    assert exported.state_dict.keys() == ref.state_dict.keys()
    assert all(torch.equal(exported.state_dict[k], ref.state_dict[k]) for k in ref.state_dict)
