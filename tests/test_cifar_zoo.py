"""gluoncv's CIFAR-10 family (ResNet v1/v2, wide ResNet, ResNeXt-29): the numeric conventions of the
target module, the rule tables against independently enumerated gluon names, and the registry
records. Only the tests marked ``oracle`` touch mxnet/gluoncv."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from converters import registry
from converters.arch.cifar import CifarResNet, CifarResNetConfig, PreActBlock
from converters.engine import map_tensors
from converters.gluon.cifar import MODELS, resnet_v1, resnet_v2, resnext29, wide_resnet
from converters.registry import cifar_eval

NAMES = [m[0] for m in MODELS]
GLUON_BN = ("gamma", "beta", "running_mean", "running_var")
TORCH_BN = ("weight", "bias", "running_mean", "running_var")

# Facts read once from gluoncv 0.10.5 (get_model(name).collect_params() after a 32x32 forward):
# number of parameter tensors, and their total number of elements.
GLUON_PARAMS = {
    "cifar_resnet20_v1": (107, 274042),
    "cifar_resnet56_v1": (287, 860026),
    "cifar_resnet110_v1": (557, 1739002),
    "cifar_resnet20_v2": (103, 273670),
    "cifar_resnet56_v2": (283, 859654),
    "cifar_resnet110_v2": (553, 1738630),
    "cifar_wideresnet16_10": (78, 17125702),
    "cifar_wideresnet28_10": (138, 36497222),
    "cifar_wideresnet40_8": (198, 35769926),
    "cifar_resnext29_16x64d": (157, 68255690),
}

_BUILT: dict[str, CifarResNet] = {}


def _net(name: str) -> CifarResNet:
    if name not in _BUILT:
        torch.manual_seed(0)
        _BUILT[name] = registry.get(name).build().eval()
    return _BUILT[name]


def _randomise_bn(net: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5, generator=g)
                m.bias.normal_(0.0, 0.2, generator=g)
                m.running_mean.normal_(0.0, 0.2, generator=g)
                m.running_var.uniform_(0.5, 1.5, generator=g)
    return net.eval()


# --------------------------------------------------------------------------------- configuration


@pytest.mark.parametrize("name", NAMES)
def test_target_has_exactly_gluons_parameters(name):
    """Same tensor count and element count as gluoncv's network (torch adds only BN step counters)."""
    sd = _net(name).state_dict()
    real = {k: v for k, v in sd.items() if not k.endswith("num_batches_tracked")}
    assert (len(real), sum(v.numel() for v in real.values())) == GLUON_PARAMS[name]


@pytest.mark.parametrize("depth,n", [(20, 3), (56, 9), (110, 18)])
def test_resnet_depth_is_6n_plus_2(depth, n):
    for cfg in (resnet_v1(depth), resnet_v2(depth)):
        assert cfg.layers == (n, n, n) and cfg.channels == (16, 16, 32, 64)


@pytest.mark.parametrize("depth,k,n", [(16, 10, 2), (28, 10, 4), (40, 8, 6)])
def test_wide_resnet_depth_is_6n_plus_4_and_width_k(depth, k, n):
    cfg = wide_resnet(depth, k)
    assert cfg.layers == (n, n, n) and cfg.channels == (16, 16 * k, 32 * k, 64 * k)
    net = CifarResNet(cfg)
    assert net.layer1[0].downsample is not None  # 16 -> 16k at stride 1 still needs a projection
    assert net.layer1[0].downsample[0].stride == (1, 1)


def test_resnext29_grouped_widths_and_strides():
    """Inner width = cardinality x floor(base x width / 64) with base 64/128/256; output 4 x base;
    the stride sits on the grouped 3x3; every stage's first block is projected."""
    net = _net("cifar_resnext29_16x64d")
    assert net.cfg.layers == (3, 3, 3)
    for i, (mid, out) in enumerate(((1024, 256), (2048, 512), (4096, 1024))):
        stage = net.stages[i]
        s = (1, 1) if i == 0 else (2, 2)
        first = stage[0]
        assert first.conv1.out_channels == mid and first.conv2.groups == 16 and first.conv3.out_channels == out
        assert first.conv1.stride == (1, 1) and first.conv2.stride == s and first.downsample[0].stride == s
        assert isinstance(first.downsample[1], torch.nn.BatchNorm2d)
        assert all(b.downsample is None for b in stage[1:])
    assert net.conv1.out_channels == 64 and net.fc.in_features == 1024
    # the smaller published sibling: 32 groups of 4 channels at base 64
    assert resnext29(32, 4).group_width(256) == 128


@pytest.mark.parametrize("name", NAMES)
def test_all_bn_eps_1e5_and_ten_classes(name):
    net = _net(name)
    assert all(m.eps == 1e-5 for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert net.fc.out_features == 10


@pytest.mark.parametrize("name", ["cifar_resnet20_v1", "cifar_wideresnet16_10"])
def test_three_stages_end_on_an_8x8_map_before_global_pooling(name):
    net, seen = _net(name), {}
    h = net.layer3.register_forward_hook(lambda m, i, o: seen.__setitem__("x", o))
    with torch.inference_mode():
        y = net(torch.randn(2, 3, 32, 32))
    h.remove()
    assert seen["x"].shape[-2:] == (8, 8) and y.shape == (2, 10)


# ----------------------------------------------------------------------------- named conventions


def test_resnet_v1_stem_has_no_relu():
    """CIFARResNetV1: conv, BN, then straight into stage 1 (ResNeXt's stem has the ReLU)."""
    net = _randomise_bn(CifarResNet(resnet_v1(20)))
    x = torch.randn(2, 3, 32, 32)
    with torch.inference_mode():
        stem = net.stem(x)
        assert torch.equal(stem, net.bn1(net.conv1(x)))
        assert (stem < 0).any()
    relu_cfg = dataclasses.replace(resnet_v1(20), stem_relu=True)
    net2 = CifarResNet(relu_cfg).eval()
    net2.load_state_dict(net.state_dict())
    with torch.inference_mode():
        assert torch.equal(net2.stem(x), torch.relu(stem))
    assert resnext29(16, 64).stem_relu and not resnet_v1(20).stem_relu and not wide_resnet(16, 10).stem_relu


def _projection_input(net: CifarResNet, block: PreActBlock, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    seen = {}
    def keep(key):  # a forward hook returning a value would replace the output: return None
        return lambda m, i, o: seen.__setitem__(key, i[0])
    hooks = [block.register_forward_hook(keep("block_in")), block.downsample[0].register_forward_hook(keep("proj_in"))]
    with torch.inference_mode():
        net(x)
    for h in hooks:
        h.remove()
    return seen["block_in"], seen["proj_in"]


def test_resnet_v2_projection_reads_the_raw_block_input():
    net = _randomise_bn(CifarResNet(resnet_v2(20)))
    block = net.layer2[0]
    block_in, proj_in = _projection_input(net, block, torch.randn(2, 3, 32, 32))
    assert torch.equal(proj_in, block_in)


def test_wide_resnet_projection_reads_the_activated_block_input():
    net = _randomise_bn(CifarResNet(wide_resnet(16, 2)))
    block = net.layer1[0]
    block_in, proj_in = _projection_input(net, block, torch.randn(2, 3, 32, 32))
    with torch.inference_mode():
        assert torch.equal(proj_in, torch.relu(block.bn1(block_in)))
    assert not torch.equal(proj_in, block_in)


def test_projection_has_bn_only_in_post_activation_nets():
    assert len(CifarResNet(resnet_v2(20)).layer2[0].downsample) == 1
    assert len(CifarResNet(wide_resnet(16, 2)).layer2[0].downsample) == 1
    assert isinstance(CifarResNet(resnet_v1(20)).layer2[0].downsample[1], torch.nn.BatchNorm2d)


def test_preact_blocks_have_no_relu_after_the_sum_and_the_head_normalises():
    """Pre-activation blocks end on conv + shortcut (outputs go negative); the net ends with
    BN + ReLU before pooling. Post-activation blocks end with a ReLU."""
    x = torch.randn(2, 3, 32, 32)
    for cfg in (resnet_v2(20), wide_resnet(16, 2)):
        net, seen = _randomise_bn(CifarResNet(cfg)), {}
        h = net.layer3.register_forward_hook(lambda m, i, o: seen.__setitem__("x", o))
        with torch.inference_mode():
            y = net(x)
            feats = seen["x"]
            assert (feats < 0).any()
            want = net.fc(torch.relu(net.final_bn(feats)).mean(dim=(2, 3)))
        h.remove()
        torch.testing.assert_close(y, want, rtol=1e-5, atol=1e-6)
    for cfg in (resnet_v1(20), resnext29(2, 4)):
        net, seen = _randomise_bn(CifarResNet(cfg)), {}
        assert net.final_bn is None and net.data_bn is None
        h = net.layer1[0].register_forward_hook(lambda m, i, o: seen.__setitem__("x", o))
        with torch.inference_mode():
            net(x)
        h.remove()
        assert (seen["x"] >= 0).all()


def test_input_bn_gamma_is_read_as_one_and_beta_is_kept():
    """gluon BatchNorm(scale=False, center=False) on the data: fix_gamma=True makes the op read
    gamma as 1, whatever is stored; the stored beta is still added by the op, so it is mapped."""
    spec = registry.get("cifar_resnet20_v2")
    target = CifarResNet(resnet_v2(20))
    src = _sources(spec.name, "gluon", target)
    src["features.0.gamma"] = np.array([0.6, 1.3, 0.8], np.float32)
    src["features.0.beta"] = np.array([0.1, -0.2, 0.05], np.float32)
    state, rows = map_tensors(spec.name, src, target, spec.rules["gluon"], spec.fixups, spec.defaults)
    assert [(r.target, r.fixup) for r in rows if r.fixup] == [("data_bn.weight", "mxnet_fix_gamma")]
    assert torch.equal(state["data_bn.weight"], torch.ones(3))
    assert torch.equal(state["data_bn.bias"], torch.tensor([0.1, -0.2, 0.05]))


@pytest.mark.parametrize("name", NAMES)
def test_input_bn_only_where_gluon_has_it(name):
    has = name.endswith("_v2") or "wideresnet" in name
    net = _net(name)
    assert (net.data_bn is not None) == has == net.cfg.preact
    assert (len(registry.get(name).fixups) == 1) == has


# ------------------------------------------------------------------ rule tables vs gluon's names


def _bn(src: str, dst: str) -> list[tuple[str, str]]:
    return [(src + s, dst + t) for s, t in zip(GLUON_BN, TORCH_BN)]


def gluon_names(cfg: CifarResNetConfig) -> list[tuple[str, str]]:
    """save_parameters names, from gluoncv's layouts:
    v1      features = [conv, BN, stage1..3, pool]; block body = conv, BN, relu, conv, BN
    v2      features = [BN(data), conv, stage1..3, BN, relu, pool, flatten]; block = bn1 conv1 bn2 conv2
    wide    features = [BN(data), conv, BN, stage1..3, BN, relu, pool, flatten]
    resnext features = [conv, BN, relu, stage1..3, pool]; body = (conv, BN, relu) x 2, conv, BN
    projection: downsample = Sequential(conv, BN), or a bare conv in v2/wide; ``output`` = Dense."""
    pairs: list[tuple[str, str]] = []
    kind = {"basic": "v1", "grouped_bottleneck": "resnext"}.get(cfg.block, "wide" if cfg.stem_norm else "v2")
    if kind in ("v2", "wide"):
        pairs += _bn("features.0.", "data_bn.")
        pairs.append(("features.1.weight", "conv1.weight"))
    else:
        pairs.append(("features.0.weight", "conv1.weight"))
    if kind != "v2":
        pairs += _bn(f"features.{2 if kind == 'wide' else 1}.", "bn1.")
    first = {"v1": 2, "v2": 2, "wide": 3, "resnext": 3}[kind]
    for s, n in enumerate(cfg.layers):
        for j in range(n):
            src, dst = f"features.{first + s}.{j}.", f"layer{s + 1}.{j}."
            projected = j == 0 and (s > 0 or kind in ("wide", "resnext"))
            if kind in ("v1", "resnext"):
                for k in range(2 if kind == "v1" else 3):
                    pairs.append((f"{src}body.{3 * k}.weight", f"{dst}conv{k + 1}.weight"))
                    pairs += _bn(f"{src}body.{3 * k + 1}.", f"{dst}bn{k + 1}.")
                if projected:
                    pairs.append((f"{src}downsample.0.weight", f"{dst}downsample.0.weight"))
                    pairs += _bn(f"{src}downsample.1.", f"{dst}downsample.1.")
            else:
                for k in (1, 2):
                    pairs += _bn(f"{src}bn{k}.", f"{dst}bn{k}.")
                    pairs.append((f"{src}conv{k}.weight", f"{dst}conv{k}.weight"))
                if projected:
                    pairs.append((f"{src}downsample.weight", f"{dst}downsample.0.weight"))
    if kind in ("v2", "wide"):
        pairs += _bn(f"features.{first + 3}.", "final_bn.")
    return pairs + [("output.weight", "fc.weight"), ("output.bias", "fc.bias")]


def export_names(cfg: CifarResNetConfig, scope: str) -> list[tuple[str, str]]:
    """HybridBlock.export names: ``<scope><layer><n>_<param>``, numbered per layer type in creation
    order, separately in the root scope and in each ``stageN_`` scope (blocks use prefix='')."""
    pairs: list[tuple[str, str]] = []
    count: dict[tuple[str, str], int] = {}

    def name(where: str, layer: str) -> str:
        n = count.get((where, layer), 0)
        count[(where, layer)] = n + 1
        return f"{scope}{where}{layer}{n}_"

    def conv(where: str, dst: str) -> None:
        pairs.append((name(where, "conv") + "weight", dst + ".weight"))

    def bn(where: str, dst: str) -> None:
        pairs.extend(_bn(name(where, "batchnorm"), dst + "."))

    if cfg.input_norm:
        bn("", "data_bn")
    conv("", "conv1")
    if cfg.stem_norm:
        bn("", "bn1")
    for s, n in enumerate(cfg.layers):
        st = f"stage{s + 1}_"
        for j in range(n):
            dst = f"layer{s + 1}.{j}."
            projected = j == 0 and (s > 0 or cfg.channels[0] != cfg.channels[1])
            if cfg.block == "preact":
                bn(st, dst + "bn1"), conv(st, dst + "conv1"), bn(st, dst + "bn2"), conv(st, dst + "conv2")
                if projected:
                    conv(st, dst + "downsample.0")
            else:
                for k in range(2 if cfg.block == "basic" else 3):
                    conv(st, f"{dst}conv{k + 1}"), bn(st, f"{dst}bn{k + 1}")
                if projected:
                    conv(st, dst + "downsample.0"), bn(st, dst + "downsample.1")
    if cfg.preact:
        bn("", "final_bn")
    return pairs + [(f"{scope}dense0_weight", "fc.weight"), (f"{scope}dense0_bias", "fc.bias")]


SCOPES = {"basic": "cifarresnetv10_", "grouped_bottleneck": "cifarresnext0_"}


def _enumerated(name: str, layout: str) -> list[tuple[str, str]]:
    cfg = _net(name).cfg
    if layout == "gluon":
        return gluon_names(cfg)
    scope = SCOPES.get(cfg.block) or ("cifarwideresnet0_" if "wideresnet" in name else "cifarresnetv20_")
    return export_names(cfg, scope)


def _sources(name: str, layout: str, target: torch.nn.Module) -> dict[str, np.ndarray]:
    """Each source tensor filled with its own index (broadcast: no memory per element)."""
    expected = target.state_dict()
    return {s: np.broadcast_to(np.float32(i + 2), tuple(expected[t].shape))
            for i, (s, t) in enumerate(_enumerated(name, layout))}


@pytest.mark.parametrize("layout", ["gluon", "export"])
@pytest.mark.parametrize("name", NAMES)
def test_rule_table_maps_every_enumerated_name_to_its_target(name, layout):
    spec, target = registry.get(name), _net(name)
    pairs = _enumerated(name, layout)
    assert len(pairs) == GLUON_PARAMS[name][0] and len(dict(pairs)) == len(pairs)
    src = _sources(name, layout, target)
    state, rows = map_tensors(name, src, target, spec.rules[layout], spec.fixups, spec.defaults)
    want = dict(pairs)
    mapped = [r for r in rows if r.status == "mapped"]
    assert len(mapped) == len(pairs) and not [r for r in rows if r.status == "ignored"]
    assert {r.source: r.target for r in mapped} == want
    for r in mapped:
        value = 1.0 if r.fixup else float(src[r.source].flat[0])
        assert bool((state[r.target] == value).all()), r.source


# --------------------------------------------------------------------------------- the records


@pytest.mark.parametrize("name", NAMES)
def test_registry_record(name):
    spec = registry.get(name)
    assert (spec.family, spec.framework, spec.task, spec.source_format) == (
        "gluon.cifar", "gluon", "classification", "mxnet-params")
    assert spec.source_model == name and spec.preprocess == cifar_eval()
    assert spec.preprocess.size == (32, 32) and spec.preprocess.resize == "none"
    w = spec.weights()
    assert w.filename == f"{name}-{w.sha1[:8]}.params"
    [metric] = spec.metrics
    assert (metric.name, metric.dataset, metric.source) == ("top1", "CIFAR-10 test", "gluon-cv model zoo")
    assert 92.0 <= metric.value <= 96.3
    assert spec.seed_output_std == {"output": 3.0} and spec.parity_images == 6
    assert spec.torchvision is None  # torchvision has no CIFAR-style ResNets


def test_block_pairs_name_every_residual_block():
    spec = registry.get("cifar_wideresnet16_10")
    assert spec.extra_pairs == (("features.3.0", "layer1.0"), ("features.3.1", "layer1.1"),
                                ("features.4.0", "layer2.0"), ("features.4.1", "layer2.1"),
                                ("features.5.0", "layer3.0"), ("features.5.1", "layer3.1"))
    assert registry.get("cifar_resnet20_v1").extra_pairs[0] == ("features.2.0", "layer1.0")


# ---------------------------------------------------------------- with the source framework


@pytest.mark.oracle
@pytest.mark.parametrize("name", ["cifar_resnet20_v1", "cifar_resnet20_v2", "cifar_wideresnet16_10"])
def test_export_layout_converts_to_the_same_state(name, tmp_path):
    """The seeded net, exported by MXNet (arg:/aux: symbol names), converts through the export
    rules to exactly the state the structural layout gives."""
    from converters import convert
    from converters.frameworks import import_gluoncv, import_mxnet
    mx, gcv = import_mxnet(), import_gluoncv()
    ref = convert(name, init="random", seed=0)
    net = gcv.model_zoo.get_model(name, pretrained=False)
    net.load_parameters(str(ref.source))
    net.hybridize()
    net(mx.nd.zeros((1, 3, 32, 32)))
    net.export(str(tmp_path / name))
    exported = convert(name, weights=tmp_path / f"{name}-0000.params")
    assert exported.layout == "export"
    assert exported.state_dict.keys() == ref.state_dict.keys()
    assert all(torch.equal(exported.state_dict[k], ref.state_dict[k]) for k in ref.state_dict)


@pytest.mark.oracle
def test_copying_the_input_bn_gamma_is_caught(tmp_path):
    """A checkpoint whose fix_gamma input BN stores gamma != 1: MXNet reads it as 1. The fix-up
    passes parity; copying the stored gamma diverges exactly at data_bn."""
    from converters import convert
    from converters.frameworks import import_mxnet
    from converters.samples import sample_photos
    from parity.verify import verify
    mx = import_mxnet()
    seeded = convert("cifar_resnet20_v2", init="random", seed=0).source
    params = mx.nd.load(str(seeded))
    params["features.0.gamma"] = mx.nd.array([0.6, 1.3, 0.8])
    path = tmp_path / "cifar_resnet20_v2-scrambled.params"
    mx.nd.save(str(path), params)
    result = convert("cifar_resnet20_v2", weights=path)
    images = sample_photos()[:1]
    assert verify("cifar_resnet20_v2", result=result, images=images).passed
    bad = result.module
    with torch.no_grad():
        bad.data_bn.weight.copy_(torch.tensor([0.6, 1.3, 0.8]))
    report = verify("cifar_resnet20_v2", result=dataclasses.replace(result, module=bad), images=images)
    assert not report.passed and report.layers.first_divergent.name == "data_bn"
