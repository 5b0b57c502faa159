"""gluoncv Simple Pose family: the target's head, each rule table against gluon's own names (both
layouts, all 7 models), and the keypoint decoding against gluoncv's get_max_pred / heatmap_to_coord."""
from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
from torch import nn

from converters import registry
from converters.arch.simple_pose import SimplePose, SimplePoseConfig, deconv_layers, heatmap_to_coord, max_pred
from converters.engine import map_tensors
from converters.errors import MappingError
from converters.gluon.resnet import V1B, V1D

FAMILY = sorted(n for n in registry.names() if registry.get(n).family == "gluon.simple_pose")
LAYOUTS = [(n, layout) for n in FAMILY for layout in ("gluon", "export")]


def _meta(build, *args) -> nn.Module:
    with torch.device("meta"):
        return build(*args)


def test_family_is_complete_and_registered_as_pose():
    assert FAMILY == sorted(f"simple_pose_resnet{d}_{v}" for d, v in (
        (18, "v1b"), (50, "v1b"), (50, "v1d"), (101, "v1b"), (101, "v1d"), (152, "v1b"), (152, "v1d")))
    for n in FAMILY:
        spec = registry.get(n)
        assert spec.task == "pose" and spec.preprocess.preset == "pose" and spec.preprocess.size == (256, 192)
        assert tuple(spec.parity_sizes) == ((128, 96), (384, 288))
        assert spec.slow == ("101" in n or "152" in n)  # the 101/152 backbones: parity-full only
        assert spec.weights().name == n and {m.name for m in spec.metrics} >= {"AP"}


# ------------------------------------------------------------------------------------ target


def test_heatmaps_are_a_quarter_of_the_input():
    net = SimplePose(SimplePoseConfig(V1B[18])).eval()
    with torch.no_grad():
        for h, w in ((256, 192), (128, 96), (384, 288)):
            assert net(torch.randn(1, 3, h, w)).shape == (1, 17, h // 4, w // 4)
    assert not hasattr(net, "fc") and not hasattr(net, "avgpool")


def test_head_layout():
    """Three [ConvTranspose2d 4x4/2 pad 1 no bias, BN, ReLU], then a 1x1 conv with a bias."""
    net = SimplePose(SimplePoseConfig(V1D[50]))
    kinds = [type(m).__name__ for m in net.deconv_layers]
    assert kinds == ["ConvTranspose2d", "BatchNorm2d", "ReLU"] * 3
    ins = [m.in_channels for m in net.deconv_layers if isinstance(m, nn.ConvTranspose2d)]
    assert ins == [2048, 256, 256]
    for m in net.deconv_layers[::3]:
        assert (m.kernel_size, m.stride, m.padding, m.output_padding) == ((4, 4), (2, 2), (1, 1), (0, 0))
        assert m.bias is None and tuple(m.weight.shape[:2]) == (m.in_channels, 256)  # (in, out, kh, kw)
    assert all(m.eps == 1e-5 for m in net.deconv_layers if isinstance(m, nn.BatchNorm2d))
    f = net.final_layer
    assert (f.kernel_size, f.padding, f.out_channels, f.bias is not None) == ((1, 1), (0, 0), 17, True)


@pytest.mark.parametrize("kernel", [2, 3, 4])
def test_every_deconv_kernel_doubles_the_map(kernel):
    cfg = SimplePoseConfig(V1B[18], deconv_filters=(8, 8), deconv_kernels=(kernel, kernel))
    with torch.no_grad():
        assert deconv_layers(4, cfg).eval()(torch.randn(1, 4, 5, 7)).shape == (1, 8, 20, 28)


def test_conv_transpose_is_the_scatter_definition():
    """torch's ConvTranspose2d (weight (in, out, kh, kw)): each input pixel adds w[c_in] x value at
    (stride*i - pad + ki, stride*j - pad + kj); the formula MXNet's Deconvolution documents."""
    g = torch.Generator().manual_seed(0)
    x, w = torch.randn(1, 3, 4, 5, generator=g), torch.randn(3, 2, 4, 4, generator=g)
    got = torch.nn.functional.conv_transpose2d(x, w, stride=2, padding=1).numpy()
    full = np.zeros((1, 2, 2 * 3 + 4, 2 * 4 + 4))
    for i in range(4):
        for j in range(5):
            full[0, :, 2 * i:2 * i + 4, 2 * j:2 * j + 4] += np.einsum("c,cokl->okl", x[0, :, i, j].numpy(), w.numpy())
    np.testing.assert_allclose(got, full[:, :, 1:-1, 1:-1], rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------- rule tables


def _stage_convs(block):
    return [n for n in ("conv1", "conv2", "conv3") if hasattr(block, n)]


def enumerate_names(net: SimplePose, layout: str) -> list[tuple[str, str]]:
    """(gluon source name, target key) for every tensor, derived from the target module's layers and
    gluon's construction facts (independently of the rule tables): structural names are torchvision's
    under ``resnet.{0: conv1, 1: bn1, 4..7: layer1..4}`` with BN gamma/beta; export names number
    convs and BatchNormCudnnOffs per name scope in creation order (root for the stem, ``layers{i}_``
    per stage, ``down{i}_`` for the projection), and the head at the root (fresh counters)."""
    v1d = net.cfg.avg_down
    prefix = "resnetv1d_" if v1d else "resnetv1b_"
    layers: list[tuple[str, str, str]] = []  # (structural module path, symbol layer name, target path)
    if v1d:  # deep stem conv1 = [conv, BN, ReLU, conv, BN, ReLU, conv], then bn1
        stem = [("conv1.0", "conv0"), ("conv1.1", "batchnormcudnnoff0"), ("conv1.3", "conv1"),
                ("conv1.4", "batchnormcudnnoff1"), ("conv1.6", "conv2"), ("bn1", "batchnormcudnnoff2")]
    else:
        stem = [("conv1", "conv0"), ("bn1", "batchnormcudnnoff0")]
    for path, sym in stem:
        layers.append(("resnet.1" if path == "bn1" else "resnet.0" + path[len("conv1"):], prefix + sym, path))
    for i, stage in enumerate(net.stages, start=1):
        k = 0
        for j, block in enumerate(stage):
            for c, conv in enumerate(_stage_convs(block), start=1):
                layers.append((f"resnet.{i + 3}.{j}.{conv}", f"{prefix}layers{i}_conv{k}", f"layer{i}.{j}.{conv}"))
                layers.append((f"resnet.{i + 3}.{j}.bn{c}", f"{prefix}layers{i}_batchnormcudnnoff{k}",
                               f"layer{i}.{j}.bn{c}"))
                k += 1
        if stage[0].downsample is None:  # ResNet-18's first stage: 64 -> 64, an identity shortcut
            continue
        pc, pn = ("1", "2") if v1d else ("0", "1")
        ds = f"layer{i}.0.downsample."
        layers.append((f"resnet.{i + 3}.0.downsample.{pc}", f"{prefix}down{i}_conv0", ds + pc))
        layers.append((f"resnet.{i + 3}.0.downsample.{pn}", f"{prefix}down{i}_batchnormcudnnoff0", ds + pn))
    for d in range(3):
        layers.append((f"deconv_layers.{3 * d}", f"conv{d}", f"deconv_layers.{3 * d}"))
        layers.append((f"deconv_layers.{3 * d + 1}", f"batchnormcudnnoff{d}", f"deconv_layers.{3 * d + 1}"))
    layers.append(("final_layer", "conv3", "final_layer"))
    pairs = []
    for struct, sym, target in layers:
        module = net.get_submodule(target)
        params = [n for n, _ in module.named_parameters(recurse=False)] + \
                 [n for n, _ in module.named_buffers(recurse=False) if n != "num_batches_tracked"]
        for p in params:
            src = {"weight": "gamma", "bias": "beta"}.get(p, p) if isinstance(module, nn.BatchNorm2d) else p
            pairs.append((f"{struct}.{src}" if layout == "gluon" else f"{sym}_{src}", f"{target}.{p}"))
    return pairs


@pytest.mark.parametrize("name,layout", LAYOUTS)
def test_rule_table_maps_gluons_names(name, layout):
    spec = registry.get(name)
    target = _meta(spec.build)
    pairs = enumerate_names(target, layout)
    expected = target.state_dict()
    assert len({s for s, _ in pairs}) == len(pairs) and len({t for _, t in pairs}) == len(pairs)
    # a distinct constant per tensor: a swap between two same-shaped layers shows
    src = {s: np.full(tuple(expected[t].shape), i + 0.5, np.float32) for i, (s, t) in enumerate(pairs)}
    state, rows = map_tensors(name, src, target, spec.rules[layout], spec.fixups, spec.defaults)
    counts = Counter(r.status for r in rows)
    n_default = sum(k.endswith("num_batches_tracked") for k in expected)
    # every source tensor is consumed (none ignored: the pose net has no classifier or constants)
    assert (counts["mapped"], counts["default"], counts["ignored"]) == (len(pairs), n_default, 0)
    assert len(pairs) + n_default == len(expected)
    want = dict(pairs)
    for r in rows:
        if r.status == "mapped":
            assert r.target == want[r.source] and r.fixup is None, r.source
            assert np.array_equal(state[r.target].numpy(), src[r.source]), r.source


def test_shifted_export_counters_fail_loudly():
    """An export built after other nets in one MXNet process numbers the head conv4.. (not conv0..):
    the rules must refuse it, never map conv4 onto a deconv by accident."""
    name = "simple_pose_resnet18_v1b"
    spec = registry.get(name)
    target = _meta(spec.build)
    shift = {f"conv{i}_": f"conv{i + 4}_" for i in range(4)} | {f"batchnormcudnnoff{i}_": f"batchnormcudnnoff{i + 3}_"
                                                               for i in range(3)}
    src = {}
    for s, t in enumerate_names(target, "export"):
        head = next((k for k in shift if s.startswith(k)), None)
        src[shift[head] + s[len(head):] if head else s] = np.zeros(tuple(target.state_dict()[t].shape), np.float32)
    with pytest.raises(MappingError) as exc:
        map_tensors(name, src, target, spec.rules["export"], spec.fixups, spec.defaults)
    head = [(s, t) for s, t in enumerate_names(target, "export") if not s.startswith("resnetv1b_")]
    unmatched = {p.split()[1] for p in exc.value.problems if p.endswith("is matched by no rule")}
    unfilled = {p.split()[1] for p in exc.value.problems if "is not filled" in p}
    assert len(head) == 17 and len(exc.value.problems) == 2 * len(head)  # nothing else went wrong
    assert unmatched == {src_name for src_name in src if not src_name.startswith("resnetv1b_")}
    assert unfilled == {t for _, t in head}  # every head tensor reported, none silently misplaced


# ------------------------------------------------------------------------------- keypoints


def test_max_pred_on_planted_peaks():
    hm = torch.full((2, 3, 6, 5), -1.0)
    hm[0, 0, 4, 1] = 2.0  # x=1, y=4
    hm[0, 1, 0, 4] = 0.5
    hm[0, 2, 2, 2], hm[0, 2, 3, 0] = 3.0, 3.0  # a tie: the first in row-major order wins
    hm[1, 0, 5, 4] = -0.5  # peak not above 0: masked to (0, 0)
    coords, maxvals = max_pred(hm)
    assert coords.dtype == torch.float32 and coords.shape == (2, 3, 2) and maxvals.shape == (2, 3, 1)
    assert coords[0].tolist() == [[1, 4], [4, 0], [2, 2]]
    assert coords[1, 0].tolist() == [0, 0] and maxvals[1, 0, 0] == -0.5
    assert maxvals[0, :, 0].tolist() == [2.0, 0.5, 3.0]


def test_heatmap_to_coord_maps_cells_onto_the_box():
    hm = torch.zeros(1, 1, 64, 48)
    hm[0, 0, 32, 12] = 1.0
    coords, _ = heatmap_to_coord(hm, [[100.0, 50.0, 196.0, 178.0]])
    assert coords[0, 0].tolist() == pytest.approx([100 + 96 * 12 / 48, 50 + 128 * 32 / 64])
    with pytest.raises(ValueError, match="2 boxes"):
        heatmap_to_coord(hm, [[0, 0, 1, 1], [0, 0, 1, 1]])


def _random_heatmaps(seed: int, shape=(3, 17, 64, 48)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    hm = rng.standard_normal(shape).astype(np.float32) * 0.1
    hm[0, :4] -= 1.0  # some joints with no positive response (gluoncv masks them)
    h, w = shape[2:]
    hm[1, 5, h // 5, w // 5] = hm[1, 5, h - 2, 1] = 5.0  # a planted exact tie
    hm[2, 7] = np.round(hm[2, 7], 1)  # many ties
    return hm


@pytest.mark.oracle
@pytest.mark.parametrize("seed", range(4))
def test_max_pred_equals_gluoncvs_get_max_pred(seed):
    from converters.frameworks import import_gluoncv, import_mxnet
    mx, gcv = import_mxnet(), import_gluoncv()
    hm = _random_heatmaps(seed, shape=[(3, 17, 64, 48), (3, 17, 32, 24), (3, 17, 96, 72), (3, 17, 7, 5)][seed])
    ref_c, ref_v = gcv.data.transforms.pose.get_max_pred(mx.nd.array(hm))
    got_c, got_v = max_pred(torch.from_numpy(hm))
    assert np.array_equal(got_c.numpy(), ref_c.asnumpy()) and np.array_equal(got_v.numpy(), ref_v.asnumpy())
    assert (got_c.numpy()[0, :4] == 0).all()  # the masked joints really are masked


@pytest.mark.oracle
def test_heatmap_to_coord_equals_gluoncvs():
    from converters.frameworks import import_gluoncv, import_mxnet
    mx, gcv = import_mxnet(), import_gluoncv()
    hm = _random_heatmaps(7)
    boxes = [[12.5, 30.0, 200.25, 420.0], [0.0, 0.0, 640.0, 480.0], [301.0, 17.0, 355.5, 90.0]]
    ref_c, ref_v = gcv.data.transforms.pose.heatmap_to_coord(mx.nd.array(hm), boxes)
    got_c, got_v = heatmap_to_coord(torch.from_numpy(hm), boxes)
    # gluoncv computes in float32 in another operation order: a few ulps of ~640 px
    np.testing.assert_allclose(got_c.numpy(), ref_c.asnumpy(), rtol=0, atol=1e-3)
    assert np.array_equal(got_v.numpy(), ref_v.asnumpy())


@pytest.mark.oracle
@pytest.mark.parametrize("name", FAMILY)
def test_enumerated_names_are_gluons(name):
    """The enumeration above is what gluoncv names the parameters, both layouts (symbol names of a
    net built in a fresh MXNet name scope, as an export from a fresh process has them)."""
    from converters.frameworks import import_gluoncv, import_mxnet
    mx, gcv = import_mxnet(), import_gluoncv()
    with mx.name.NameManager():
        net = gcv.model_zoo.get_model(name, pretrained=False)
    params = net._collect_params_with_prefix()
    target = _meta(registry.get(name).build)
    assert {s for s, _ in enumerate_names(target, "gluon")} == set(params)
    assert {s for s, _ in enumerate_names(target, "export")} == {p.name for p in params.values()}
