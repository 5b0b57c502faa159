"""gluoncv ResNeXt / SE-ResNeXt / SENet-154: the family's named conventions, its rule tables against
the source names enumerated here from gluon's structure, and the torchvision twins."""
from __future__ import annotations

import functools
import math
from collections import Counter

import numpy as np
import pytest

from parity.selection import slow
import torch
from torch import nn

import converters
from converters import registry
from converters.arch.resnext import ResNeXt, ResNeXtConfig
from converters.engine import map_tensors
from converters.gluon.resnext import MODELS, SENET_154, symbol_layers

NAMES = sorted(MODELS)
PLAIN = [n for n in NAMES if registry.get(n).torchvision is not None]
GLUON_BN = ("gamma", "beta", "running_mean", "running_var")
TORCH_BN = ("weight", "bias", "running_mean", "running_var")


def _cfg(name: str) -> ResNeXtConfig:
    return MODELS[name][0]


@functools.lru_cache(maxsize=None)
def _meta(name: str) -> nn.Module:
    """The registered target without allocating weights (for names and shapes only; shared)."""
    with torch.device("meta"):
        return registry.get(name).build()


@pytest.fixture(scope="module")
def small() -> dict[str, nn.Module]:
    torch.manual_seed(0)
    return {n: ResNeXt(_cfg(n)).eval() for n in ("resnext50_32x4d", "se_resnext50_32x4d")}


# --------------------------------------------------------------------------- named conventions

@pytest.mark.parametrize("name", NAMES)
def test_group_width_is_gluons_floor_formula(name):
    """gluon: D = floor(channels * bottleneck_width / 64), group width = cardinality * D, with
    channels = 64 * 2^stage; the block's output is channels * 4."""
    cfg, net = _cfg(name), _meta(name)
    for i, stage in enumerate(net.stages):
        d = int(math.floor(64 * 2**i * cfg.bottleneck_width / 64))
        for block in stage:
            assert block.conv2.groups == cfg.cardinality
            assert block.conv2.out_channels == cfg.cardinality * d
            assert block.conv3.out_channels == 256 * 2**i
            # SENet's first 1x1 conv is half the group width; ResNext's is the full width
            assert block.conv1.out_channels == cfg.cardinality * d // (2 if name == "senet_154" else 1)


@pytest.mark.parametrize("name", NAMES)
def test_stride_on_the_grouped_3x3_and_projection_on_every_first_block(name):
    net = _meta(name)
    for i, stage in enumerate(net.stages):
        s = (2, 2) if i > 0 else (1, 1)
        first = stage[0]
        assert (first.conv1.stride, first.conv2.stride, first.conv3.stride) == ((1, 1), s, (1, 1))
        assert first.downsample is not None and first.downsample[0].stride == s
        assert all(b.downsample is None and b.conv2.stride == (1, 1) for b in stage[1:])


def test_senet_projection_is_3x3_after_stage_1_and_1x1_in_stage_1():
    net = _meta("senet_154")
    conv = net.layer1[0].downsample[0]
    assert (conv.kernel_size, conv.padding, conv.stride, conv.in_channels) == ((1, 1), (0, 0), (1, 1), 128)
    for stage in net.stages[1:]:
        conv = stage[0].downsample[0]
        assert (conv.kernel_size, conv.padding, conv.stride) == ((3, 3), (1, 1), (2, 2))
    for name in ("resnext50_32x4d", "se_resnext101_64x4d"):
        assert all(s[0].downsample[0].kernel_size == (1, 1) for s in _meta(name).stages)


def test_deep_stem_of_senet():
    net = _meta("senet_154")
    convs = [getattr(net, f"conv{i}") for i in (1, 2, 3)]
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.stride, c.padding) for c in convs] == [
        (3, 64, (3, 3), (2, 2), (1, 1)), (64, 64, (3, 3), (1, 1), (1, 1)), (64, 128, (3, 3), (1, 1), (1, 1))]
    assert all(c.bias is None for c in convs)
    plain = _meta("resnext50_32x4d")
    assert not hasattr(plain, "conv2")
    assert (plain.conv1.kernel_size, plain.conv1.stride, plain.conv1.padding) == ((7, 7), (2, 2), (3, 3))


def _mxnet_pool_out(h: int, k: int, s: int, p: int, full: bool) -> int:
    """MXNet Pooling output size: 'valid' floors, 'full' ceils (gluon ceil_mode=True is 'full')."""
    r = (h + 2 * p - k) / s
    return (math.ceil(r) if full else math.floor(r)) + 1


def test_stem_pool_sizes_match_mxnet():
    """SENet: MaxPool2D(3, 2, ceil_mode=True), no padding; ResNext: MaxPool2D(3, 2, 1), floor."""
    senet, plain = _cfg("senet_154"), _cfg("resnext50_32x4d")
    for h in range(7, 120):
        x = torch.zeros(1, 1, h, h)
        got = nn.MaxPool2d(3, 2, senet.pool_padding, ceil_mode=senet.pool_ceil)(x).shape[-1]
        assert got == _mxnet_pool_out(h, 3, 2, 0, full=True), h
        got = nn.MaxPool2d(3, 2, plain.pool_padding, ceil_mode=plain.pool_ceil)(x).shape[-1]
        assert got == _mxnet_pool_out(h, 3, 2, 1, full=False), h


def test_ceil_mode_matters_for_senet_at_224():
    """The 112x112 stem output pools to 56 in ceil mode, 55 in floor mode: the convention is live."""
    net = _meta("senet_154")
    assert (net.maxpool.padding, net.maxpool.ceil_mode) == (0, True)
    x = torch.zeros(1, 128, 112, 112)
    assert net.maxpool(x).shape[-1] == 56 and nn.MaxPool2d(3, 2, 0)(x).shape[-1] == 55


@pytest.mark.parametrize("name", NAMES)
def test_se_gate_reduction_16_with_biases(name):
    """gluon's SE: Conv2D(channels // 4) and Conv2D(channels * 4), both with bias, on the pooled
    body output (channels * 4 wide): a reduction of 16."""
    net = _meta(name)
    has_se = name.startswith("se") or name == "senet_154"
    for stage in net.stages:
        for block in stage:
            if not has_se:
                assert block.se is None
                continue
            c = block.conv3.out_channels
            assert (block.se.fc1.in_channels, block.se.fc1.out_channels) == (c, c // 16)
            assert (block.se.fc2.in_channels, block.se.fc2.out_channels) == (c // 16, c)
            assert block.se.fc1.bias is not None and block.se.fc2.bias is not None
            assert block.se.fc1.kernel_size == (1, 1)


def test_se_gate_scales_the_residual_branch_before_the_shortcut(small):
    """out = relu(bn3(...) * sigmoid(fc2(relu(fc1(mean(bn3(...)))))) + shortcut)."""
    block = small["se_resnext50_32x4d"].layer1[1]
    x = torch.randn(2, 256, 9, 9)
    with torch.no_grad():
        y = block.bn3(block.conv3(block.relu(block.bn2(block.conv2(block.relu(block.bn1(block.conv1(x))))))))
        w = torch.sigmoid(block.se.fc2(torch.relu(block.se.fc1(y.mean((2, 3), keepdim=True)))))
        assert torch.allclose(block(x), torch.relu(y * w + x), atol=1e-6)


def test_body_convs_have_no_bias_and_bn_eps_is_gluons_default():
    for name in NAMES:
        net = _meta(name)
        for path, m in net.named_modules():
            if isinstance(m, nn.Conv2d) and ".se." not in path:
                assert m.bias is None, (name, path)
            if isinstance(m, nn.BatchNorm2d):
                assert m.eps == 1e-5, (name, path)  # mxnet.gluon.nn.BatchNorm(epsilon=1e-5)


def test_senet_dropout_before_the_classifier_only():
    assert SENET_154.dropout == 0.2 and all(MODELS[n][0].dropout == 0 for n in NAMES if n != "senet_154")
    net = _meta("senet_154")
    assert isinstance(net.dropout, nn.Dropout) and net.dropout.p == 0.2
    assert isinstance(_meta("se_resnext50_32x4d").dropout, nn.Identity)
    net.eval()  # shapes through the deep stem, the ceil-mode pool and the 3x3 projections
    assert net(torch.empty(2, 3, 224, 224, device="meta")).shape == (2, 1000)
    assert net.stem(torch.empty(1, 3, 224, 224, device="meta")).shape == (1, 128, 56, 56)


# ---------------------------------------------------------------- source names, both layouts

def _gluon_names(name: str) -> list[tuple[str, str]]:
    """save_parameters names. ResNext.features = [conv, BN, relu, pool, stage1..4, pool];
    SENet.features = [conv, BN, relu] x 3, pool, stage1..4, pool, dropout. A block is body
    (conv, BN, relu, conv, BN, relu, conv, BN), se (conv, relu, conv, sigmoid), downsample."""
    cfg = _cfg(name)
    deep = name == "senet_154"
    stem = ((0, 1), (3, 4), (6, 7)) if deep else ((0, 1),)
    pairs = []
    for k, (c, b) in enumerate(stem):
        pairs.append((f"features.{c}.weight", f"conv{k + 1}.weight"))
        pairs += [(f"features.{b}.{s}", f"bn{k + 1}.{t}") for s, t in zip(GLUON_BN, TORCH_BN)]
    first = 10 if deep else 4
    for i, n in enumerate(cfg.layers):
        for j in range(n):
            src, dst = f"features.{first + i}.{j}.", f"layer{i + 1}.{j}."
            for k, pos in enumerate((0, 3, 6)):
                pairs.append((f"{src}body.{pos}.weight", f"{dst}conv{k + 1}.weight"))
                pairs += [(f"{src}body.{pos + 1}.{s}", f"{dst}bn{k + 1}.{t}") for s, t in zip(GLUON_BN, TORCH_BN)]
            if cfg.se:
                for k, pos in enumerate((0, 2)):
                    pairs += [(f"{src}se.{pos}.{p}", f"{dst}se.fc{k + 1}.{p}") for p in ("weight", "bias")]
            if j == 0:
                pairs.append((f"{src}downsample.0.weight", f"{dst}downsample.0.weight"))
                pairs += [(f"{src}downsample.1.{s}", f"{dst}downsample.1.{t}") for s, t in zip(GLUON_BN, TORCH_BN)]
    return pairs + [("output.weight", "fc.weight"), ("output.bias", "fc.bias")]


def _export_names(name: str, scope: str | None = None) -> list[tuple[str, str]]:
    """Symbol names: stem layers numbered in the top scope; in each stage one counter per layer type
    runs across blocks in creation order (body convs, SE convs, projection)."""
    cfg = _cfg(name)
    scope = scope or ("senet0_" if name == "senet_154" else "resnext0_")
    pairs = []
    for k in range(3 if name == "senet_154" else 1):
        pairs.append((f"{scope}conv{k}_weight", f"conv{k + 1}.weight"))
        pairs += [(f"{scope}batchnorm{k}_{s}", f"bn{k + 1}.{t}") for s, t in zip(GLUON_BN, TORCH_BN)]
    per_block = 5 if cfg.se else 3  # convs per non-first block
    for i, n in enumerate(cfg.layers):
        stage = f"{scope}stage{i + 1}_"
        for j in range(n):
            c0 = j * per_block + (1 if j > 0 else 0)  # block 0 also owns the projection conv
            b0 = 3 * j + (1 if j > 0 else 0)
            dst = f"layer{i + 1}.{j}."
            for k in range(3):
                pairs.append((f"{stage}conv{c0 + k}_weight", f"{dst}conv{k + 1}.weight"))
                pairs += [(f"{stage}batchnorm{b0 + k}_{s}", f"{dst}bn{k + 1}.{t}") for s, t in zip(GLUON_BN, TORCH_BN)]
            if cfg.se:
                for k in range(2):
                    pairs += [(f"{stage}conv{c0 + 3 + k}_{p}", f"{dst}se.fc{k + 1}.{p}") for p in ("weight", "bias")]
            if j == 0:
                pairs.append((f"{stage}conv{per_block}_weight", f"{dst}downsample.0.weight"))
                pairs += [(f"{stage}batchnorm3_{s}", f"{dst}downsample.1.{t}") for s, t in zip(GLUON_BN, TORCH_BN)]
    return pairs + [(f"{scope}dense0_weight", "fc.weight"), (f"{scope}dense0_bias", "fc.bias")]


LAYOUTS = {"gluon": _gluon_names, "export": _export_names}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("name", NAMES)
def test_rules_rename_every_enumerated_name(name, layout):
    """Every source name lands on its expected target; together they fill the whole target except
    BN step counters (names only: the target is built on the meta device)."""
    spec = registry.get(name)
    pairs = LAYOUTS[layout](name)
    expected = _meta(name).state_dict()
    assert len({s for s, _ in pairs}) == len(pairs) and len({t for _, t in pairs}) == len(pairs)
    for src, dst in pairs:
        hit = next(r for r in spec.rules[layout] if r.apply(src) is not None)
        assert hit.apply(src) == dst, (src, hit.pattern)
    counters = {k for k in expected if k.endswith("num_batches_tracked")}
    assert {t for _, t in pairs} == set(expected) - counters


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("name", ["resnext50_32x4d", "se_resnext50_32x4d"])
def test_engine_maps_the_enumerated_sources(name, layout):
    spec, target = registry.get(name), ResNeXt(_cfg(name))
    pairs, expected = LAYOUTS[layout](name), target.state_dict()
    rng = np.random.default_rng(0)
    src = {s: rng.standard_normal(tuple(expected[t].shape), dtype=np.float32) for s, t in pairs}
    state, rows = map_tensors(name, src, target, spec.rules[layout], spec.fixups, spec.defaults)
    counts = Counter(r.status for r in rows)
    n_bn = sum(k.endswith("num_batches_tracked") for k in expected)
    assert (counts["mapped"], counts["default"], counts["ignored"]) == (len(pairs), n_bn, 0)
    assert all(np.array_equal(state[t].numpy(), src[s]) for s, t in pairs)


def test_export_rules_accept_any_instance_counter():
    spec = registry.get("se_resnext50_32x4d")
    src, dst = _export_names("se_resnext50_32x4d", scope="resnext7_")[30]
    assert any(r.apply(src) == dst for r in spec.rules["export"])
    spec = registry.get("senet_154")
    assert any(r.apply("senet12_stage3_conv5_weight") == "layer3.0.downsample.0.weight"
               for r in spec.rules["export"])


@pytest.mark.parametrize("name", ["se_resnext50_32x4d", "senet_154"])
def test_symbol_numbering_agrees_with_the_converter(name):
    mine = [(f"{sym}_weight", f"{tgt}.weight") for kind, sym, tgt in symbol_layers(_cfg(name)) if kind != "bn"]
    theirs = [(s[len("resnext0_" if name != "senet_154" else "senet0_"):], t)
              for s, t in _export_names(name) if s.endswith("_weight")]
    assert mine == theirs


@pytest.mark.oracle
@pytest.mark.parametrize("name", NAMES)
def test_enumerations_match_gluoncv(name):
    """The enumerated names are exactly gluoncv's own (structural keys and symbol names)."""
    from converters.frameworks import import_gluoncv
    net = import_gluoncv().model_zoo.get_model(registry.get(name).source_model, pretrained=False)
    params = net._collect_params_with_prefix()
    assert [s for s, _ in _gluon_names(name)] == list(params)
    prefix = net.prefix  # the instance counter differs per process
    exported = [s.replace("resnext0_", prefix, 1).replace("senet0_", prefix, 1) for s, _ in _export_names(name)]
    assert exported == [p.name for p in params.values()]


# ------------------------------------------------------------------------------- torchvision

def _layer_signature(net: nn.Module) -> dict[str, tuple]:
    out = {}
    for path, m in net.named_modules():
        if isinstance(m, nn.Conv2d):
            out[path] = (m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding, m.groups,
                         m.bias is None)
        elif isinstance(m, (nn.MaxPool2d, nn.BatchNorm2d, nn.Linear)):
            out[path] = repr(m)
    return out


@pytest.mark.parametrize("name", PLAIN)
def test_torchvision_twin_has_the_same_layers(name):
    """Same state-dict names and every conv/pool/BN/fc configured alike (meta device: no weights)."""
    spec = registry.get(name)
    assert spec.torchvision_key is None  # our names are torchvision's
    with torch.device("meta"):
        theirs = spec.torchvision()
    ours = _meta(name)
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in theirs.state_dict().items()}
    assert _layer_signature(ours) == _layer_signature(theirs)


def test_torchvision_twin_is_bit_identical_on_resnext50():
    """A random state dict of ours loads strictly into torchvision's ResNet and both give
    bit-identical outputs (same ops in the same order)."""
    spec = registry.get("resnext50_32x4d")
    torch.manual_seed(1)
    ours = spec.build().eval()
    with torch.no_grad():
        for m in ours.modules():  # non-trivial BN statistics
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.1, 0.1)
    theirs = spec.torchvision().eval()
    theirs.load_state_dict(ours.state_dict(), strict=True)
    x = torch.randn(1, 3, 96, 96)
    with torch.no_grad():
        assert torch.equal(ours(x), theirs(x))


def test_torchvision_twins_are_torchvisions_own_factories():
    import torchvision
    for name, factory in (("resnext50_32x4d", torchvision.models.resnext50_32x4d),
                          ("resnext101_64x4d", torchvision.models.resnext101_64x4d)):
        with torch.device("meta"):
            a, b = registry.get(name).torchvision(), factory()
        assert {k: v.shape for k, v in a.state_dict().items()} == {k: v.shape for k, v in b.state_dict().items()}
        assert _layer_signature(a) == _layer_signature(b)
    assert {n for n in NAMES if registry.get(n).torchvision is None} == {
        "se_resnext50_32x4d", "se_resnext101_32x4d", "se_resnext101_64x4d", "senet_154"}


@pytest.mark.oracle
@pytest.mark.parametrize("name", [pytest.param(n, marks=[pytest.mark.slow] if slow(n) else [])
                                  for n in PLAIN])
def test_load_as_torchvision_equals_zooport(tmp_path, name):
    weights, _ = converters.convert(name, init="random").write(tmp_path)
    ours, theirs = converters.load(name, weights), converters.load(name, weights, target="torchvision")
    assert type(theirs).__module__ == "torchvision.models.resnet"
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        assert torch.equal(ours(x), theirs(x))


@pytest.mark.oracle
def test_export_layout_converts_to_the_same_weights(tmp_path):
    """A seeded SE-ResNeXt exported by MXNet (arg:/aux: symbol names) converts through the export
    rules to exactly the weights of the save_parameters layout, and passes parity."""
    from converters.frameworks import import_gluoncv, import_mxnet
    from converters.samples import sample_photos
    from parity.verify import verify
    mx, gcv = import_mxnet(), import_gluoncv()
    ref = converters.convert("se_resnext50_32x4d", init="random")
    net = gcv.model_zoo.get_model("se_resnext50_32x4d", pretrained=False)
    net.load_parameters(str(ref.source))
    net.hybridize()
    net(mx.nd.zeros((1, 3, 224, 224)))
    net.export(str(tmp_path / "sx50"))
    exported = converters.convert("se_resnext50_32x4d", weights=tmp_path / "sx50-0000.params")
    assert exported.layout == "export"
    assert exported.state_dict.keys() == ref.state_dict.keys()
    assert all(torch.equal(exported.state_dict[k], ref.state_dict[k]) for k in ref.state_dict)
    assert verify("se_resnext50_32x4d", result=exported, images=sample_photos()[:1]).passed
