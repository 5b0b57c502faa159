"""gluoncv's ImageNet ResNet family (v1, v2, v1b/c/d, GroupNorm, pruned): the target's named
conventions, each rule table against gluon's own names, and (oracle) torchvision equality, pruned
widths read back from a file, and odd input sizes against MXNet."""
from __future__ import annotations

import dataclasses
from collections import Counter

import numpy as np
import pytest
import torch
from torch import nn

import converters
from converters import registry
from converters.arch.resnet import ResNet, ResNetConfig, config_from_shapes
from converters.engine import map_tensors
from converters.errors import ZooportError
from converters.gluon.resnet import DEPTHS, V1, V1B, V1B_50_GN, V1C, V1D, V2
from converters.pipeline import build_target

FAMILY = sorted(n for n in registry.names() if registry.get(n).family == "gluon.resnet")


def _meta(build, *args) -> nn.Module:
    """A module with shapes but no storage: enough for layouts and rule tables, and instant."""
    with torch.device("meta"):
        return build(*args)


def _run(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return module.eval()(x)


# ------------------------------------------------------------------ v1d: average-pool shortcut


def mxnet_avg_pool_full_exclude_pad(x: np.ndarray, k: int) -> np.ndarray:
    """MXNet Pooling(avg, kernel=stride=k, pooling_convention='full' (= ceil_mode=True),
    count_include_pad=False): ceil(H/k) windows; a window running past the edge averages only the
    elements it covers."""
    n, c, h, w = x.shape
    oh, ow = -(-h // k), -(-w // k)
    out = np.zeros((n, c, oh, ow), x.dtype)
    for i in range(oh):
        for j in range(ow):
            out[:, :, i, j] = x[:, :, i * k:(i + 1) * k, j * k:(j + 1) * k].mean(axis=(2, 3))
    return out


def test_v1d_projection_pool_is_ceil_mode_and_excludes_padding():
    net = ResNet(V1D[50])
    pool = net.layer2[0].downsample[0]
    assert isinstance(pool, nn.AvgPool2d)
    assert (pool.kernel_size, pool.stride, pool.ceil_mode, pool.count_include_pad) == (2, 2, True, False)
    x = torch.randn(2, 3, 7, 9)
    got = _run(pool, x)
    assert got.shape == (2, 3, 4, 5)  # ceil: floor mode would give 3x4
    np.testing.assert_allclose(got.numpy(), mxnet_avg_pool_full_exclude_pad(x.numpy(), 2), rtol=1e-6, atol=1e-6)
    # the corner window covers one element: its own value, not a quarter of it
    assert torch.equal(got[:, :, -1, -1], x[:, :, -1, -1])


def test_v1d_projection_conv_is_stride_1_after_the_pool():
    net = ResNet(V1D[50])
    for i, stage in enumerate(net.stages):
        pool, conv, norm = stage[0].downsample
        s = 1 if i == 0 else 2
        assert pool.kernel_size == pool.stride == s  # stage 1: a 1x1/1 pool, the identity
        assert conv.stride == (1, 1) and conv.kernel_size == (1, 1) and conv.bias is None
        assert isinstance(norm, nn.BatchNorm2d)
    x = torch.randn(1, 5, 6, 6)
    assert torch.equal(_run(net.layer1[0].downsample[0], x), x)


def test_v1b_projection_is_a_strided_conv():
    net = ResNet(V1B[50])
    conv, norm = net.layer3[0].downsample
    assert conv.stride == (2, 2) and isinstance(norm, nn.BatchNorm2d)


# ------------------------------------------------------------------------- stride placement


@pytest.mark.parametrize("cfg,strided", [(V1[50], "conv1"), (V1B[50], "conv2"), (V1D[101], "conv2"),
                                         (V2[50], "conv2"), (V1[18], "conv1"), (V2[34], "conv1")])
def test_stride_placement(cfg, strided):
    net = _meta(ResNet, cfg)
    for i, stage in enumerate(net.stages):
        s = (2, 2) if i > 0 else (1, 1)
        first = stage[0]
        convs = [n for n in ("conv1", "conv2", "conv3") if hasattr(first, n)]
        assert {n: getattr(first, n).stride for n in convs} == {n: s if n == strided else (1, 1) for n in convs}


def test_conv_biases_only_on_v1_bottleneck_1x1_convs():
    def biased(cfg):
        return sum(k.endswith(".bias") and ".conv" in k for k in _meta(ResNet, cfg).state_dict())
    assert biased(V1[50]) == 2 * sum(V1[50].layers) and biased(V1[152]) == 2 * sum(V1[152].layers)
    assert all(biased(c) == 0 for c in (V1[18], V1[34], V1B[50], V1C[50], V1D[50], V2[50], V2[18], V1B_50_GN))


# ------------------------------------------------------------------------------ deep stem


def test_deep_stem_is_three_3x3_convs():
    net = ResNet(V1C[50])
    convs = [m for m in net.conv1 if isinstance(m, nn.Conv2d)]
    assert [tuple(c.weight.shape) for c in convs] == [(32, 3, 3, 3), (32, 32, 3, 3), (64, 32, 3, 3)]
    assert [c.stride for c in convs] == [(2, 2), (1, 1), (1, 1)] and all(c.padding == (1, 1) for c in convs)
    assert [type(m).__name__ for m in net.conv1] == ["Conv2d", "BatchNorm2d", "ReLU"] * 2 + ["Conv2d"]
    with torch.no_grad():
        assert net.eval().stem(torch.randn(1, 3, 224, 224)).shape == (1, 64, 56, 56)
    assert not any(k.startswith("conv1.") for k in ResNet(V1B[50]).state_dict() if k != "conv1.weight")


# ---------------------------------------------------------------------- v2: pre-activation


def test_v2_layout():
    net = ResNet(V2[18])
    assert isinstance(net.data_bn, nn.BatchNorm2d) and net.data_bn.num_features == 3
    assert net.layer1[0].downsample is None  # 64 -> 64 at stride 1: identity shortcut
    ds = net.layer2[0].downsample
    assert isinstance(ds, nn.Conv2d) and ds.stride == (2, 2) and ds.bias is None  # a bare conv
    assert net.layer1[0].bn1.num_features == 64 and net.layer2[0].bn1.num_features == 64  # BN on the input
    assert net.final_bn.num_features == 512
    assert not hasattr(ResNet(V1B[18]), "final_bn") and not hasattr(ResNet(V1B[18]), "data_bn")


def _randomise_bn(net: nn.Module, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    for m in net.modules():
        if isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            m.weight.data = torch.rand(m.weight.shape, generator=g) + 0.5
            m.bias.data = torch.randn(m.bias.shape, generator=g) * 0.5
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.data = torch.randn(m.running_mean.shape, generator=g) * 0.1
            m.running_var.data = torch.rand(m.running_var.shape, generator=g) + 0.5


def test_v2_block_shortcut_and_no_relu_after_the_sum():
    """Projected blocks feed the shortcut conv the PRE-ACTIVATED input; identity blocks add the raw
    input; the sum is not rectified."""
    net = ResNet(V2[50]).eval()
    _randomise_bn(net)
    relu = torch.relu
    for block, cin in ((net.layer2[0], 256), (net.layer2[1], 512)):
        x = torch.randn(1, cin, 8, 8)
        a = relu(block.bn1(x))
        y = block.conv3(relu(block.bn3(block.conv2(relu(block.bn2(block.conv1(a)))))))
        want = y + (block.downsample(a) if block.downsample is not None else x)
        got = _run(block, x)
        assert torch.allclose(got, want, atol=1e-6) and (got < 0).any()


def test_v2_input_bn_reads_gamma_as_one():
    spec = registry.get("resnet18_v2")
    (fix,) = spec.fixups
    net = spec.build()
    assert fix.applies(net.data_bn, "data_bn", "weight")
    assert not fix.applies(net.data_bn, "data_bn", "bias")  # center=False still adds the stored beta
    assert not fix.applies(net.bn1, "bn1", "weight") and not fix.applies(net.final_bn, "final_bn", "weight")
    assert np.array_equal(fix.fn(np.full(3, 0.3, np.float32)), np.ones(3, np.float32))


# -------------------------------------------------------------------------------- GroupNorm


def mxnet_group_norm(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, groups: int, eps: float) -> np.ndarray:
    """gluoncv.nn.GroupNorm: reshape to (1, N*G, -1), BatchNorm in training mode (biased variance,
    eps inside the sqrt), reshape back, then a per-channel gamma/beta."""
    n, c, h, w = x.shape
    y = x.reshape(n * groups, -1).astype(np.float64)
    y = (y - y.mean(1, keepdims=True)) / np.sqrt(y.var(1, keepdims=True) + eps)
    return y.reshape(n, c, h, w) * gamma[None, :, None, None] + beta[None, :, None, None]


def test_group_norm_layers_and_numerics():
    net = ResNet(V1B_50_GN)
    norms = [m for m in net.modules() if isinstance(m, (nn.BatchNorm2d, nn.GroupNorm))]
    assert norms and all(isinstance(m, nn.GroupNorm) and m.num_groups == 32 and m.eps == 1e-5 for m in norms)
    assert not any("running" in k or "num_batches" in k for k in net.state_dict())
    gn = net.layer2[0].bn3
    _randomise_bn(gn)
    x = torch.randn(2, 512, 5, 5) * 3 + 1
    want = mxnet_group_norm(x.numpy(), gn.weight.detach().numpy(), gn.bias.detach().numpy(), 32, 1e-5)
    np.testing.assert_allclose(_run(gn, x).numpy(), want, rtol=1e-4, atol=1e-5)


def test_bn_epsilon_is_gluons_default_everywhere():
    for name in FAMILY:
        spec = registry.get(name)
        if spec.build_from_shapes is None:
            eps = {m.eps for m in _meta(spec.build).modules() if isinstance(m, (nn.BatchNorm2d, nn.GroupNorm))}
            assert eps == {1e-5}, name


# -------------------------------------------------------------------- pruned: widths from shapes


PRUNED_LIKE = dataclasses.replace(
    V1D[50], deep_stem=(16, 24), channels=(40, 8, 16, 80, 784),
    mids=(((8, 8), (8, 8), (8, 8)), ((8, 24), (8, 8), (8, 8), (8, 8)),
          ((16, 8), (24, 48), (56, 208), (120, 88), (8, 8), (8, 16)), ((64, 32), (16, 16), (512, 8))),
    projections=(True, True, True, True))


def test_config_from_shapes_round_trips_a_pruned_layout():
    shapes = {k: tuple(v.shape) for k, v in ResNet(PRUNED_LIKE).state_dict().items()}
    assert config_from_shapes(V1D[50], shapes) == PRUNED_LIKE
    net = ResNet(config_from_shapes(V1D[50], shapes))
    assert {k: tuple(v.shape) for k, v in net.state_dict().items()} == shapes
    assert _run(net, torch.randn(1, 3, 64, 64)).shape == (1, 1000)


def test_pruned_projection_kept_where_widths_agree():
    """gluoncv places projections by the unpruned net: a pruned stage 1 of 8 -> 8 channels at
    stride 1 still has one (resnet50_v1d_0.11); the builder keeps what the checkpoint holds."""
    cfg = dataclasses.replace(PRUNED_LIKE, channels=(8, 8, 16, 80, 784), projections=())
    assert not cfg.has_projection(0)  # by shape alone there would be none ...
    shapes = {k: tuple(v.shape) for k, v in ResNet(dataclasses.replace(cfg, projections=(True,) * 4)).state_dict().items()}
    assert config_from_shapes(V1D[50], shapes).projections == (True,) * 4  # ... the file decides
    shapes = {k: v for k, v in shapes.items() if not k.startswith("layer1.0.downsample.")}
    assert config_from_shapes(V1D[50], shapes).projections == (False, True, True, True)


def test_pruned_specs_build_only_from_shapes():
    spec = registry.get("resnet50_v1d_0.11")
    with pytest.raises(ZooportError, match="build_from_shapes"):
        spec.build()
    shapes = {k: tuple(v.shape) for k, v in ResNet(PRUNED_LIKE).state_dict().items()}
    assert build_target(spec, shapes).cfg == PRUNED_LIKE


# ------------------------------------------------------------- rules against gluon's own names
# Source names enumerated here from gluoncv's known structure, independently of the converter.

GLUON_BN, GN = ("gamma", "beta", "running_mean", "running_var"), ("gamma", "beta")
TORCH = {"gamma": "weight", "beta": "bias", "running_mean": "running_mean", "running_var": "running_var"}


def _norm(src: str, dst: str, names=GLUON_BN) -> list[tuple[str, str]]:
    return [(src + n, dst + TORCH[n]) for n in names]


def _projected(stage: int, block: str) -> bool:
    return stage > 0 or block == "bottleneck"  # stage 1 of basic nets stays at 64 channels


def v1_names(depth: int, export: bool, p: str = "resnetv10_") -> list[tuple[str, str]]:
    """resnet.py ResNetV1: features = [conv, BN, relu, pool, stage1..4, pool]; block.body =
    conv, BN, relu, conv, BN[, relu, conv, BN] (bottleneck 1x1 convs with bias), then downsample."""
    block, layers = DEPTHS[depth]
    n_conv = 3 if block == "bottleneck" else 2
    if export:
        pairs = [(f"{p}conv0_weight", "conv1.weight"), *_norm(f"{p}batchnorm0_", "bn1.")]
    else:
        pairs = [("features.0.weight", "conv1.weight"), *_norm("features.1.", "bn1.")]
    for s, n in enumerate(layers):
        k = 0
        for b in range(n):
            dst = f"layer{s + 1}.{b}."
            for c in range(n_conv):
                src = f"{p}stage{s + 1}_conv{k}_" if export else f"features.{s + 4}.{b}.body.{3 * c}."
                pairs.append((src + "weight", f"{dst}conv{c + 1}.weight"))
                if block == "bottleneck" and c != 1:
                    pairs.append((src + "bias", f"{dst}conv{c + 1}.bias"))
                src = f"{p}stage{s + 1}_batchnorm{k}_" if export else f"features.{s + 4}.{b}.body.{3 * c + 1}."
                pairs += _norm(src, f"{dst}bn{c + 1}.")
                k += 1
            if b == 0 and _projected(s, block):
                src = f"{p}stage{s + 1}_conv{k}_weight" if export else f"features.{s + 4}.0.downsample.0.weight"
                pairs.append((src, f"{dst}downsample.0.weight"))
                src = f"{p}stage{s + 1}_batchnorm{k}_" if export else f"features.{s + 4}.0.downsample.1."
                pairs += _norm(src, f"{dst}downsample.1.")
                k += 1
    head = f"{p}dense0_" if export else "output."
    return pairs + [(head + "weight", "fc.weight"), (head + "bias", "fc.bias")]


def v2_names(depth: int, export: bool, p: str = "resnetv20_") -> list[tuple[str, str]]:
    """resnet.py ResNetV2: features = [BN, conv, BN, relu, pool, stage1..4, BN, relu, pool,
    flatten]; blocks create bn1, conv1, bn2, conv2[, bn3, conv3], then a bare downsample conv."""
    block, layers = DEPTHS[depth]
    n_conv = 3 if block == "bottleneck" else 2
    if export:
        pairs = [*_norm(f"{p}batchnorm0_", "data_bn."), (f"{p}conv0_weight", "conv1.weight"),
                 *_norm(f"{p}batchnorm1_", "bn1.")]
    else:
        pairs = [*_norm("features.0.", "data_bn."), ("features.1.weight", "conv1.weight"),
                 *_norm("features.2.", "bn1.")]
    for s, n in enumerate(layers):
        k = c_id = 0
        for b in range(n):
            dst = f"layer{s + 1}.{b}."
            for c in range(1, n_conv + 1):
                src = f"{p}stage{s + 1}_batchnorm{k}_" if export else f"features.{s + 5}.{b}.bn{c}."
                pairs += _norm(src, f"{dst}bn{c}.")
                src = f"{p}stage{s + 1}_conv{c_id}_weight" if export else f"features.{s + 5}.{b}.conv{c}.weight"
                pairs.append((src, f"{dst}conv{c}.weight"))
                k, c_id = k + 1, c_id + 1
            if b == 0 and _projected(s, block):
                src = f"{p}stage{s + 1}_conv{c_id}_weight" if export else f"features.{s + 5}.0.downsample.weight"
                pairs.append((src, f"{dst}downsample.weight"))
                c_id += 1
    pairs += _norm(f"{p}batchnorm2_" if export else "features.9.", "final_bn.")
    head = f"{p}dense0_" if export else "output."
    return pairs + [(head + "weight", "fc.weight"), (head + "bias", "fc.bias")]


def v1b_names(depth: int, export: bool, prefix: str, deep: bool, avg: bool, gn: bool) -> list[tuple[str, str]]:
    """resnetv1b.py: structural names are torchvision's (deep stem: conv1 = [conv, norm, relu] x 2 +
    [conv]; v1d's downsample = [pool, conv, norm]); symbols: root scope for the stem, ``layers{i}_``
    for the blocks (counters over the stage), ``down{i}_`` for the projection."""
    block, layers = DEPTHS[depth]
    n_conv = 3 if block == "bottleneck" else 2
    norm_names, norm = (GN, "groupnorm") if gn else (GLUON_BN, "batchnorm")
    pairs = []
    stem = [("conv1.0", "conv1.1"), ("conv1.3", "conv1.4"), ("conv1.6", "bn1")] if deep else [("conv1", "bn1")]
    for k, (conv, nrm) in enumerate(stem):
        pairs.append((f"{prefix}conv{k}_weight" if export else f"{conv}.weight", f"{conv}.weight"))
        pairs += _norm(f"{prefix}{norm}{k}_" if export else f"{nrm}.", f"{nrm}.", norm_names)
    pc, pn = ("1", "2") if avg else ("0", "1")
    for s, n in enumerate(layers, start=1):
        k = 0
        for b in range(n):
            for c in range(1, n_conv + 1):
                dst = f"layer{s}.{b}."
                pairs.append((f"{prefix}layers{s}_conv{k}_weight" if export else f"{dst}conv{c}.weight",
                              f"{dst}conv{c}.weight"))
                pairs += _norm(f"{prefix}layers{s}_{norm}{k}_" if export else f"{dst}bn{c}.", f"{dst}bn{c}.", norm_names)
                k += 1
        if _projected(s - 1, block):
            dst = f"layer{s}.0.downsample."
            pairs.append((f"{prefix}down{s}_conv0_weight" if export else f"{dst}{pc}.weight", f"{dst}{pc}.weight"))
            pairs += _norm(f"{prefix}down{s}_{norm}0_" if export else f"{dst}{pn}.", f"{dst}{pn}.", norm_names)
    head = f"{prefix}dense0_" if export else "fc."
    return pairs + [(head + "weight", "fc.weight"), (head + "bias", "fc.bias")]


def enumerate_names(name: str, layout: str, instance: int = 0) -> list[tuple[str, str]]:
    """``instance``: gluon's per-class counter in the v1/v2 symbol prefix (resnetv1<instance>_)."""
    depth = int(name[len("resnet"):].split("_")[0])
    export = layout == "export"
    variant = name.split("_")[1]
    if variant == "v1":
        return v1_names(depth, export, f"resnetv1{instance}_")
    if variant == "v2":
        return v2_names(depth, export, f"resnetv2{instance}_")
    prefix = {"v1b": "resnetv1b_", "v1c": "resnetv1c_", "v1d": "resnetv1d_"}[variant]
    return v1b_names(depth, export, prefix, deep=variant in ("v1c", "v1d"), avg=variant == "v1d",
                     gn=name.endswith("_gn"))


NOMINAL = {"v1": V1, "v2": V2, "v1b": V1B, "v1c": V1C, "v1d": V1D}


def _target(name: str) -> nn.Module:
    spec = registry.get(name)
    if spec.build_from_shapes is None:
        return _meta(spec.build)
    depth, variant = int(name[len("resnet"):].split("_")[0]), name.split("_")[1]
    nominal = _meta(ResNet, NOMINAL[variant][depth])  # a pruned net's names are its base net's names
    return _meta(spec.build_from_shapes, {k: tuple(v.shape) for k, v in nominal.state_dict().items()})


LAYOUTS = [(n, layout) for n in FAMILY for layout in registry.get(n).rules]


def test_every_model_has_both_layouts_but_the_group_norm_one():
    assert {n for n, layout in LAYOUTS if layout == "export"} == set(FAMILY) - {"resnet50_v1b_gn"}
    assert {n for n, layout in LAYOUTS if layout == "gluon"} == set(FAMILY)
    assert len(LAYOUTS) == 2 * len(FAMILY) - 1


@pytest.mark.parametrize("name,layout", LAYOUTS)
def test_rule_table_maps_gluons_names(name, layout):
    spec, target = registry.get(name), _target(name)
    pairs = enumerate_names(name, layout)
    expected = target.state_dict()
    assert len({s for s, _ in pairs}) == len(pairs) and len({t for _, t in pairs}) == len(pairs)
    # a distinct constant per tensor (cheap at 60M parameters): a swap or a transform shows
    src = {s: np.full(tuple(expected[t].shape), i + 0.5, np.float32) for i, (s, t) in enumerate(pairs)}
    state, rows = map_tensors(name, src, target, spec.rules[layout], spec.fixups, spec.defaults)
    assert all(v.device.type == "cpu" for k, v in state.items() if not k.endswith("num_batches_tracked"))
    counts = Counter(r.status for r in rows)
    n_default = sum(k.endswith("num_batches_tracked") for k in expected)
    assert (counts["mapped"], counts["default"], counts["ignored"]) == (len(pairs), n_default, 0)
    assert len(pairs) + n_default == len(expected)
    want = dict(pairs)
    for r in rows:
        if r.status == "mapped":
            assert r.target == want[r.source], r.source
            if r.fixup is None:
                assert np.array_equal(state[r.target].numpy(), src[r.source]), r.source
            else:  # only the v2 input BN's gamma, read as 1
                assert (r.target, r.fixup) == ("data_bn.weight", "mxnet_fix_gamma")
                assert bool((state[r.target] == 1).all())


def test_family_is_complete():
    want = {f"resnet{d}_{v}" for d in DEPTHS for v in ("v1", "v1b", "v2")}
    want |= {f"resnet{d}_{v}" for d in (50, 101, 152) for v in ("v1c", "v1d")}
    want |= {"resnet50_v1b_gn", "resnet18_v1b_0.89", "resnet50_v1d_0.86", "resnet50_v1d_0.48",
             "resnet50_v1d_0.37", "resnet50_v1d_0.11", "resnet101_v1d_0.76", "resnet101_v1d_0.73"}
    assert set(FAMILY) == want


def test_pruned_weights_use_the_model_store_name():
    """gluoncv stores the pruned files under their pre-rename names (model_store._renames)."""
    w = registry.get("resnet50_v1d_0.11").weights()
    assert w.filename == "resnet50_v1d_8.8x-6a25eece.params" and w.url.endswith("/resnet50_v1d_8.8x-6a25eece.zip")
    assert registry.get("resnet50_v1d_0.11").source_model == "resnet50_v1d_0.11"


# ---------------------------------------------------------------------- oracle (seeded weights)


@pytest.mark.oracle
@pytest.mark.parametrize("name", ["resnet50_v1b", "resnet18_v1"])
def test_torchvision_target_equals_ours(tmp_path, name):
    result = converters.convert(name, init="random")
    weights, _ = result.write(tmp_path)
    ours, theirs = converters.load(name, weights), converters.load(name, weights, target="torchvision")
    assert type(theirs).__module__ == "torchvision.models.resnet"
    x = torch.randn(2, 3, 224, 224)
    with torch.inference_mode():
        assert torch.equal(ours(x), theirs(x))


@pytest.mark.oracle
def test_pruned_net_is_rebuilt_from_the_file(tmp_path):
    result = converters.convert("resnet50_v1d_0.11", init="random")
    assert result.module.fc.in_features == 784 and result.module.layer1[0].downsample is not None
    weights, _ = result.write(tmp_path)
    module = converters.load("resnet50_v1d_0.11", weights)
    assert module.cfg == result.module.cfg
    x = torch.randn(1, 3, 224, 224)
    with torch.inference_mode():
        assert torch.equal(module(x), result.module(x))


@pytest.mark.oracle
@pytest.mark.parametrize("name", ["resnet50_v1d", "resnet18_v2"])
def test_odd_input_size_matches_mxnet(name):
    """200x200 input: stage maps 50 -> 25 -> 13 -> 7, so the v1d shortcut pools run past the edge
    (ceil mode, padding excluded) and the max-pool/conv rounding matters; outputs must still agree."""
    from parity.oracles.mxnet import GluonOracle
    result = converters.convert(name, init="random")
    oracle = GluonOracle(result.spec.source_model, result.source, kwargs={})
    x = np.random.default_rng(0).standard_normal((1, 3, 200, 200)).astype(np.float32)
    ref, _ = oracle.run(x, [])
    got = _run(result.module, torch.from_numpy(x)).numpy()
    assert np.abs(got - ref).max() <= 1e-4 * np.abs(ref).max()


@pytest.mark.oracle
@pytest.mark.parametrize("name", ["resnet18_v1", "resnet50_v2", "resnet50_v1b_gn", "resnet50_v1d", "resnet18_v1b_0.89",
                                  "resnet50_v1d_0.11"])
def test_enumerated_names_are_gluons(name):
    """The enumerations above are what gluoncv really names its parameters (both layouts)."""
    from converters.frameworks import import_gluoncv
    net = import_gluoncv().model_zoo.get_model(name, pretrained=False)
    params = net._collect_params_with_prefix()
    instance = int(net.prefix[len("resnetv2"):-1]) if name.split("_")[1] in ("v1", "v2") else 0
    assert {s for s, _ in enumerate_names(name, "gluon")} == set(params)
    # symbol names are each parameter's .name (also for the GroupNorm net, which cannot be exported)
    assert {s for s, _ in enumerate_names(name, "export", instance)} == {p.name for p in params.values()}
    assert len(params) == len(enumerate_names(name, "gluon"))


@pytest.mark.oracle
def test_v2_input_bn_gamma_is_read_as_one_like_mxnet(tmp_path):
    """MXNet's BatchNorm(fix_gamma=True) rewrites gamma to 1 on every forward, so seeded files
    store ones; plant another gamma: MXNet still ignores it, and so must the conversion."""
    from converters.frameworks import import_mxnet
    from parity.oracles.mxnet import GluonOracle
    mx = import_mxnet()
    arrays = mx.nd.load(str(converters.convert("resnet18_v2", init="random").source))
    planted = np.array([0.5, 2.0, 1.5], np.float32)
    arrays["features.0.gamma"] = mx.nd.array(planted)
    path = tmp_path / "resnet18_v2-planted.params"
    mx.nd.save(str(path), arrays)
    result = converters.convert("resnet18_v2", weights=path)
    row = next(r for r in result.mapping if r.source == "features.0.gamma")
    assert (row.target, row.fixup) == ("data_bn.weight", "mxnet_fix_gamma")
    x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
    ref, _ = GluonOracle("resnet18_v2", path, kwargs={}).run(x, [])
    got = _run(result.module, torch.from_numpy(x)).numpy()
    assert np.abs(got - ref).max() <= 1e-4 * np.abs(ref).max()
    naive = result.module
    with torch.no_grad():
        naive.data_bn.weight.copy_(torch.from_numpy(planted))  # what copying the stored gamma gives
    assert np.abs(_run(naive, torch.from_numpy(x)).numpy() - ref).max() > 1e-2 * np.abs(ref).max()
