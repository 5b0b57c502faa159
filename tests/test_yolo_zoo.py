"""gluoncv's YOLOv3 zoo (DarkNet-53 / MobileNet 1.0, VOC / COCO) on one YOLOv3 module: decoding
against an independent numpy implementation written from the definition, the grid-offset
allocation (any input up to alloc_size x stride, a clear error above), the head's wiring, and every
gluoncv parameter name of all four models through both rule tables (names enumerated here by hand
from gluoncv's structure; an oracle-marked test checks the enumeration against gluoncv itself)."""
from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
from torch import nn

from converters import registry
from converters.arch.nms import DetectionNMS, set_nms
from converters.arch.yolo import YOLOOutput, per_class_rows
from converters.engine import map_tensors

FAMILY = ("yolo3_darknet53_voc", "yolo3_darknet53_coco", "yolo3_mobilenet1.0_voc", "yolo3_mobilenet1.0_coco")
CLASSES = {"voc": 20, "coco": 80}
# gluoncv's anchors per output, deepest (stride 32) first: (w, h) pairs in pixels
ANCHORS = {32: ((116, 90), (156, 198), (373, 326)), 16: ((30, 61), (62, 45), (59, 119)),
           8: ((10, 13), (16, 30), (33, 23))}


def _meta(name: str) -> nn.Module:
    """Shapes without storage: layouts, rule tables and head shapes at any size, instantly."""
    with torch.device("meta"):
        return registry.get(name).build().eval()


def _classes(name: str) -> int:
    return CLASSES[name.rsplit("_", 1)[1]]


# ------------------------------------------------------------------- decoding, from the definition


def _sigmoid(v):
    return 1.0 / (1.0 + np.exp(-v))


def numpy_rows(pred: np.ndarray, anchors, stride: int, classes: int) -> np.ndarray:
    """YOLOv3 decoding written from the definition, one (cell, anchor) at a time. ``pred`` is the
    predictor's (B, A*(5+C), H, W) output; anchor a owns channels [a*(5+C), (a+1)*(5+C)) =
    (tx, ty, tw, th, objectness, class logits). Cell (y, x) has centre ((sigmoid(tx) + x) * stride,
    (sigmoid(ty) + y) * stride), size (exp(tw) * anchor_w, exp(th) * anchor_h); class c scores
    sigmoid(class_c) * sigmoid(objectness). Row (c, y, x, a) sits at c*H*W*A + (y*W + x)*A + a."""
    b, _, h, w = pred.shape
    a_n, p = len(anchors), 5 + classes
    out = np.zeros((b, classes, h, w, a_n, 6))
    for n in range(b):
        for y in range(h):
            for x in range(w):
                for a in range(a_n):
                    t = pred[n, a * p:(a + 1) * p, y, x]
                    cx, cy = (_sigmoid(t[0]) + x) * stride, (_sigmoid(t[1]) + y) * stride
                    bw, bh = np.exp(t[2]) * anchors[a][0], np.exp(t[3]) * anchors[a][1]
                    box = (cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2)
                    for c in range(classes):
                        out[n, c, y, x, a] = (c, _sigmoid(t[5 + c]) * _sigmoid(t[4]), *box)
    return out.reshape(b, -1, 6)


def _output(stride=16, classes=4, alloc=(4, 6), cin=7, seed=0) -> YOLOOutput:
    torch.manual_seed(seed)
    out = YOLOOutput(cin, classes, sum(ANCHORS[stride], ()), stride, alloc).double().eval()
    with torch.no_grad():
        out.prediction.weight.mul_(3.0)  # raw values of a few units: sigmoids and exps away from 0
    return out


def test_decoding_matches_the_definition_on_a_non_square_grid():
    """3x5 cells out of a 4x6 allocation: a swapped x/y offset, wrong channel split, wrong anchor
    or class order, or a different row layout all fail."""
    out = _output()
    x = torch.randn(2, 7, 3, 5, dtype=torch.float64)
    with torch.no_grad():
        rows = out(x).numpy()
        pred = out.prediction(x).numpy()
    want = numpy_rows(pred, ANCHORS[16], 16, 4)
    assert rows.shape == want.shape == (2, 4 * 3 * 5 * 3, 6)
    np.testing.assert_allclose(rows, want, rtol=1e-12, atol=1e-9)
    assert np.ptp(pred) > 10  # the check exercised a real range of raw values


def test_decoding_fp32_within_rounding_of_the_definition():
    out = _output(stride=8, classes=3, alloc=(5, 5)).float()
    x = torch.randn(1, 7, 5, 4)
    with torch.no_grad():
        rows, pred = out(x).numpy(), out.prediction(x).numpy()
    want = numpy_rows(pred.astype(np.float64), ANCHORS[8], 8, 3)
    np.testing.assert_allclose(rows[..., 1], want[..., 1], atol=1e-6)  # scores in [0, 1]
    np.testing.assert_allclose(rows[..., 2:], want[..., 2:], rtol=1e-5, atol=1e-4)
    assert np.array_equal(rows[..., 0], want[..., 0])  # class ids are exact


def test_per_class_rows_layout():
    """Class-major, then cell, then anchor; every class carries a copy of every box."""
    b, n, a, c = 2, 3, 2, 4
    scores = torch.arange(b * n * a * c, dtype=torch.float32).reshape(b, n, a, c)
    boxes = torch.arange(b * n * a * 4, dtype=torch.float32).reshape(b, n, a, 4) + 1000
    rows = per_class_rows(scores, boxes)
    assert rows.shape == (b, c * n * a, 6)
    for bi in range(b):
        for ci in range(c):
            for ni in range(n):
                for ai in range(a):
                    r = rows[bi, (ci * n + ni) * a + ai]
                    assert r[0] == ci and r[1] == scores[bi, ni, ai, ci]
                    assert torch.equal(r[2:], boxes[bi, ni, ai])


# ---------------------------------------------------------------------------- allocation and sizes


def test_offsets_are_allocated_once_and_sliced():
    out = _output(alloc=(4, 6))
    assert out.offsets.shape == (4, 6, 2)
    assert out.offsets[2, 5].tolist() == [5.0, 2.0]  # (x = column, y = row)
    with torch.no_grad():
        assert out(torch.randn(1, 7, 4, 6, dtype=torch.float64)).shape == (1, 4 * 24 * 3, 6)  # the full allocation
    for h, w in ((5, 6), (4, 7)):
        with pytest.raises(ValueError, match=r"allocated for 4x6 \(alloc_size\)"):
            out(torch.randn(1, 7, h, w, dtype=torch.float64))


@pytest.mark.parametrize("name", FAMILY)
@pytest.mark.parametrize("size", [320, 416, 608, 1024])
def test_one_module_serves_every_size_up_to_the_allocation(name, size):
    net, c = _meta(name), _classes(name)
    rows = net.head(torch.empty(1, 3, size, size, device="meta"))
    cells = sum((size // s) ** 2 for s in (32, 16, 8))
    assert rows.shape == (1, c * 3 * cells, 6)


@pytest.mark.parametrize("name", ["yolo3_darknet53_voc", "yolo3_mobilenet1.0_coco"])
def test_inputs_above_the_allocation_raise_a_clear_error(name):
    net = _meta(name)
    assert net.cfg.max_input == (1024, 1024)  # 128 cells at stride 8
    for h, w in ((1025, 320), (320, 1056)):
        with pytest.raises(ValueError, match=r"exceeds this YOLOv3's maximum 1024x1024.*alloc_size"):
            net(torch.empty(1, 3, h, w, device="meta"))


def test_odd_grids_crop_the_upsampled_route():
    """400 px: 13, 25, 50 cells; the 2x upsampled 13-cell route (26) is cropped to 25."""
    net = _meta("yolo3_darknet53_coco")
    seen = []
    hooks = [b.register_forward_pre_hook(lambda m, i: seen.append(tuple(i[0].shape))) for b in net.yolo_blocks]
    net.head(torch.empty(1, 3, 400, 400, device="meta"))
    for h in hooks:
        h.remove()
    assert seen == [(1, 1024, 13, 13), (1, 256 + 512, 25, 25), (1, 128 + 256, 50, 50)]


# ------------------------------------------------------------------------------------ head wiring


@pytest.fixture(scope="module")
def small_mobilenet_yolo():
    torch.manual_seed(0)
    return registry.get("yolo3_mobilenet1.0_voc").build().eval()


def test_route_is_upsampled_by_repetition_cropped_then_concatenated_before_the_finer_map(small_mobilenet_yolo):
    """80 px: maps 10, 5, 3; the transition of the 3-cell route is repeated 2x2 (nearest) to 6,
    cropped to 5 from the top-left, and concatenated in front of the stride-16 map."""
    net, seen = small_mobilenet_yolo, {}
    taps = {"t0": net.transitions[0], "c4": net.backbone.blocks[10], "t1": net.transitions[1],
            "c3": net.backbone.blocks[4]}
    hooks = [m.register_forward_hook(lambda mod, i, o, k=k: seen.__setitem__(k, o.numpy())) for k, m in taps.items()]
    hooks += [b.register_forward_pre_hook(lambda mod, i, k=k: seen.__setitem__(k, i[0].numpy()))
              for k, b in (("in1", net.yolo_blocks[1]), ("in2", net.yolo_blocks[2]))]
    with torch.no_grad():
        net.head(torch.randn(1, 3, 80, 80))
    for h in hooks:
        h.remove()
    assert seen["t0"].shape[-2:] == (3, 3) and seen["c4"].shape[-2:] == (5, 5)
    for t, c, x in (("t0", "c4", "in1"), ("t1", "c3", "in2")):
        up = np.repeat(np.repeat(seen[t], 2, axis=2), 2, axis=3)[:, :, : seen[c].shape[2], : seen[c].shape[3]]
        assert np.array_equal(seen[x], np.concatenate([up, seen[c]], axis=1))


def test_rows_are_the_outputs_concatenated_deepest_first(small_mobilenet_yolo):
    net, per = small_mobilenet_yolo, []
    hooks = [o.register_forward_hook(lambda m, i, out: per.append(out)) for o in net.yolo_outputs]
    with torch.no_grad():
        rows = net.head(torch.randn(1, 3, 96, 64))
    for h in hooks:
        h.remove()
    assert [p.shape[1] for p in per] == [20 * 3 * n for n in (3 * 2, 6 * 4, 12 * 8)]
    assert torch.equal(rows, torch.cat(per, 1))
    assert [o.stride for o in net.yolo_outputs] == [32, 16, 8]


@pytest.mark.parametrize("name", FAMILY)
def test_head_structure(name):
    net = _meta(name)
    assert [tuple(o.anchors.shape) for o in net.yolo_outputs] == [(3, 2)] * 3
    for block, cin, ch in zip(net.yolo_blocks, (1024, 256 + 512, 128 + 256), (512, 256, 128)):
        convs = [c.conv for c in block.body] + [block.tip.conv]
        assert [c.kernel_size[0] for c in convs] == [1, 3, 1, 3, 1, 3]
        assert [c.out_channels for c in convs] == [ch, 2 * ch, ch, 2 * ch, ch, 2 * ch]
        assert convs[0].in_channels == cin and all(c.bias is None and c.stride == (1, 1) for c in convs)
    assert [(t.conv.in_channels, t.conv.out_channels, t.conv.kernel_size) for t in net.transitions] == \
        [(512, 256, (1, 1)), (256, 128, (1, 1))]
    for out, cin in zip(net.yolo_outputs, (1024, 512, 256)):
        p = out.prediction
        assert (p.in_channels, p.out_channels, p.kernel_size) == (cin, 3 * (5 + _classes(name)), (1, 1))
        assert p.bias is not None
    heads = [*net.yolo_blocks, *net.transitions]
    bns = [m for h in heads for m in h.modules() if isinstance(m, nn.BatchNorm2d)]
    acts = [m for h in heads for m in h.modules() if isinstance(m, nn.LeakyReLU)]
    assert len(bns) == len(acts) == 3 * 6 + 2
    assert all(b.eps == 1e-5 for b in bns) and all(a.negative_slope == 0.1 for a in acts)


@pytest.mark.parametrize("name", FAMILY)
def test_backbone_maps_at_strides_8_16_32(name):
    net = _meta(name)
    feats = net.features(torch.empty(1, 3, 416, 416, device="meta"))
    assert [tuple(f.shape[1:]) for f in feats] == [(256, 52, 52), (512, 26, 26), (1024, 13, 13)]
    assert not hasattr(net.backbone, "fc") and not hasattr(net.backbone, "pool")
    bns = [m for m in net.backbone.modules() if isinstance(m, nn.BatchNorm2d)]
    assert all(b.eps == 1e-5 for b in bns)
    acts = {type(m) for m in net.backbone.modules() if isinstance(m, (nn.ReLU, nn.LeakyReLU))}
    assert acts == ({nn.LeakyReLU} if "darknet" in name else {nn.ReLU})


@pytest.mark.parametrize("name", FAMILY)
def test_default_constants_are_gluoncvs(name):
    """The buffers a freshly built module holds (the checkpoint's constants overwrite them)."""
    net = registry.get(name).build()
    for out in net.yolo_outputs:
        assert out.anchors.tolist() == [list(map(float, a)) for a in ANCHORS[out.stride]]
        rows, cols = torch.meshgrid(torch.arange(128.0), torch.arange(128.0), indexing="ij")
        assert torch.equal(out.offsets, torch.stack([cols, rows], -1))


@pytest.mark.parametrize("name", FAMILY)
def test_post_processing_is_the_shared_nms_with_gluoncvs_settings(name):
    net = _meta(name)
    assert isinstance(net.nms, DetectionNMS)
    assert [m for m in net.modules() if isinstance(m, DetectionNMS)] == [net.nms]
    assert (net.nms.thresh, net.nms.valid_thresh, net.nms.topk, net.nms.post_nms, net.nms.force_suppress) == \
        (0.45, 0.01, 400, 100, False)
    assert set_nms(net, "torchvision").nms.variant == "torchvision"


# --------------------------------------------------------------- gluoncv's names, enumerated by hand


def _cell(conv: str, bn: str, dst: str) -> list[tuple[str, str]]:
    """One gluoncv conv-BN cell: (source name, target name) pairs."""
    return [(conv + "weight", f"{dst}.conv.weight"), (bn + "gamma", f"{dst}.bn.weight"),
            (bn + "beta", f"{dst}.bn.bias"), (bn + "running_mean", f"{dst}.bn.running_mean"),
            (bn + "running_var", f"{dst}.bn.running_var")]


def _restaged(pos: int, starts: tuple[int, int, int]) -> str:
    """gluoncv slices ``features`` into three HybridSequentials: positions restart per stage."""
    s = max(i for i in range(3) if starts[i] <= pos)
    return f"stages.{s}.{pos - starts[s]}"


def darknet_cells(export: bool, n: int) -> list[tuple[str, str]]:
    """features = [stem cell, then per stage a stride-2 cell and residual blocks of two cells];
    stages cut at features positions 15 and 24; the symbol numbers all 52 cells in one sequence."""
    cells, pos = [("0", "stem")], 1
    for i, blocks in enumerate((1, 2, 8, 8, 4)):
        cells.append((f"{pos}", f"backbone.stages.{i}.down"))
        pos += 1
        for j in range(blocks):
            cells += [(f"{pos}.body.{k}", f"backbone.stages.{i}.blocks.{j}.conv{k + 1}") for k in range(2)]
            pos += 1
    assert pos == 29 and len(cells) == 52
    cells[0] = ("0", "backbone.stem")
    out = []
    for k, (where, dst) in enumerate(cells):
        if export:
            out += _cell(f"darknetv3{n}_conv{k}_", f"darknetv3{n}_batchnorm{k}_", dst)
        else:
            p, _, rest = where.partition(".")
            cell = _restaged(int(p), (0, 15, 24)) + (f".{rest}" if rest else "")
            out += _cell(f"{cell}.0.", f"{cell}.1.", dst)
    return out


def mobilenet_cells(export: bool, n: int) -> list[tuple[str, str]]:
    """27 conv-BN-ReLU layers, three ``features`` slots each (stem, then dw/pw of 13 blocks);
    stages cut at positions 33 and 69 (the pool and flatten after 81 are not used)."""
    targets = ["backbone.stem"] + [f"backbone.blocks.{i}.{p}" for i in range(13) for p in ("dw", "pw")]
    out = []
    for k, dst in enumerate(targets):
        if export:
            out += _cell(f"mobilenet{n}_conv{k}_", f"mobilenet{n}_batchnorm{k}_", dst)
        else:
            out += _cell(_restaged(3 * k, (0, 33, 69)) + ".", _restaged(3 * k + 1, (0, 33, 69)) + ".", dst)
    return out


def head_names(export: bool, n: int) -> list[tuple[str, str]]:
    out = []
    for i in range(3):
        for k in range(6):  # five body cells, then the tip (the symbol numbers it conv5)
            dst = f"yolo_blocks.{i}." + (f"body.{k}" if k < 5 else "tip")
            if export:
                s = f"yolov3{n}_yolodetectionblockv3{i}_"
                out += _cell(f"{s}conv{k}_", f"{s}batchnorm{k}_", dst)
            else:
                out += _cell(f"{dst}.0.", f"{dst}.1.", dst)
        pred = f"yolov3{n}_yolooutputv3{i}_conv0_" if export else f"yolo_outputs.{i}.prediction."
        out += [(pred + "weight", f"yolo_outputs.{i}.prediction.weight"),
                (pred + "bias", f"yolo_outputs.{i}.prediction.bias")]
        consts = (f"yolov3{n}_yolooutputv3{i}_anchor_{i}", f"yolov3{n}_yolooutputv3{i}_offset_{i}") if export \
            else (f"yolo_outputs.{i}.anchors", f"yolo_outputs.{i}.offsets")
        out += [(consts[0], f"yolo_outputs.{i}.anchors"), (consts[1], f"yolo_outputs.{i}.offsets")]
    for i in range(2):
        src = (f"yolov3{n}_conv{i}_", f"yolov3{n}_batchnorm{i}_") if export else \
            (f"transitions.{i}.0.", f"transitions.{i}.1.")
        out += _cell(*src, f"transitions.{i}")
    return out


def enumerate_names(name: str, layout: str, n: int = 0) -> list[tuple[str, str]]:
    export = layout == "export"
    backbone = darknet_cells(export, n) if "darknet" in name else mobilenet_cells(export, n)
    return backbone + head_names(export, n)


GLUON_SHAPES = {"anchors": (1, 1, 3, 2), "offsets": (1, 1, 128, 128, 2)}  # constants as gluoncv keeps them
CASES = [(n, layout) for n in FAMILY for layout in ("gluon", "export")]


def test_every_model_and_layout_is_enumerated():
    assert set(registry.names()) >= set(FAMILY)
    assert sorted(n for n in registry.names() if registry.get(n).family == "gluon.yolo") == sorted(FAMILY)
    assert {(n, layout) for n in FAMILY for layout in registry.get(n).rules} == set(CASES)


@pytest.mark.parametrize("name,layout", CASES)
def test_rule_table_maps_every_gluoncv_name(name, layout):
    """Every name maps to its target (values unchanged, constants reshaped by the named fix-ups),
    every target is filled, nothing is ignored; export names with any instance counter."""
    spec, target = registry.get(name), _meta(name)
    pairs = enumerate_names(name, layout, n=7 if layout == "export" else 0)
    expected = target.state_dict()
    rng = np.random.default_rng(0)
    src = {s: rng.standard_normal(GLUON_SHAPES.get(t.rpartition(".")[2], tuple(expected[t].shape)),
                                  dtype=np.float32) for s, t in pairs}
    assert len(src) == len(pairs) == len({t for _, t in pairs})
    state, rows = map_tensors(name, src, target, spec.rules[layout], spec.fixups, spec.defaults)
    counts = Counter(r.status for r in rows)
    n_bn = sum(k.endswith("num_batches_tracked") for k in expected)
    assert (counts["mapped"], counts["default"], counts["ignored"]) == (len(pairs), n_bn, 0)
    assert len(pairs) + n_bn == len(expected)
    want = dict(pairs)
    for r in rows:
        if r.status != "mapped":
            continue
        assert r.target == want[r.source], r.source
        const = r.target.rpartition(".")[2] in GLUON_SHAPES
        assert r.fixup == ({"anchors": "yolo_anchor_shape", "offsets": "yolo_offset_shape"}[r.target.rpartition(".")[2]]
                           if const else None), r.source
        assert np.array_equal(state[r.target].numpy(), src[r.source].reshape(tuple(expected[r.target].shape)))


def test_constant_fixups_refuse_other_shapes():
    spec = registry.get("yolo3_mobilenet1.0_voc")
    fix = {f.name: f for f in spec.fixups}
    assert fix["yolo_anchor_shape"].fn(np.zeros((1, 1, 3, 2), np.float32)).shape == (3, 2)
    with pytest.raises(ValueError, match="leading unit axes"):
        fix["yolo_offset_shape"].fn(np.zeros((2, 1, 4, 4, 2), np.float32))


def test_export_scopes_do_not_cross_backbones():
    dn, mb = registry.get("yolo3_darknet53_voc").rules["export"], registry.get("yolo3_mobilenet1.0_voc").rules["export"]
    assert not any(r.apply("mobilenet0_conv0_weight") for r in dn)
    assert not any(r.apply("darknetv30_conv0_weight") for r in mb)


# ----------------------------------------------------------------------------------- spec records


@pytest.mark.parametrize("name", FAMILY)
def test_spec_records(name):
    spec = registry.get(name)
    assert spec.source_model == name and spec.task == "detection" and spec.family == "gluon.yolo"
    p = spec.preprocess
    assert (p.preset, p.size, p.resize, p.interp, p.crop) == ("yolo", (416, 416), "exact", "mxnet-9", "none")
    assert tuple(spec.parity_sizes) == ((320, 320), (608, 608))
    metrics = {m.name: m for m in spec.metrics}
    main = ["mAP"] if name.endswith("_voc") else ["AP", "AP50", "AP75"]
    assert all("416x416" in metrics[n].dataset for n in main)
    assert spec.weights().name == name
    # every parity pair and floor point names a real module of the target
    net = _meta(name)
    for _, t in spec.extra_pairs:
        net.get_submodule(t.partition("#")[0])
    for names in spec.floor_points.values():
        for n in (names,) if isinstance(names, str) else names:
            net.get_submodule(n.partition("#")[0])


def test_published_metrics():
    m = {n: {x.name: x.value for x in registry.get(n).metrics} for n in FAMILY}
    assert m["yolo3_darknet53_voc"]["mAP"] == 81.5 and m["yolo3_mobilenet1.0_voc"]["mAP"] == 75.8
    assert (m["yolo3_darknet53_coco"]["AP"], m["yolo3_mobilenet1.0_coco"]["AP"]) == (36.0, 28.6)
    assert m["yolo3_darknet53_coco"]["AP@608"] == 37.0


def test_a_yolo_stays_in_ci():
    assert not registry.get("yolo3_mobilenet1.0_voc").slow
    assert registry.get("yolo3_darknet53_voc").slow and registry.get("yolo3_darknet53_coco").slow


# ----------------------------------------------------------------- against gluoncv itself (oracle)


@pytest.mark.oracle
@pytest.mark.parametrize("name", FAMILY)
def test_enumeration_and_constants_match_gluoncv(name):
    """gluoncv's own names (structural and symbol) are exactly the enumeration; its anchor and
    offset constants equal the module's defaults after the fix-ups' reshape."""
    from converters.frameworks import import_gluoncv, import_mxnet
    mx, gcv = import_mxnet(), import_gluoncv()
    with mx.name.NameManager():  # fresh instance counters: scope prefixes end in 0_
        net = gcv.model_zoo.get_model(name, pretrained=False, pretrained_base=False)
    params = net._collect_params_with_prefix()
    assert {s for s, _ in enumerate_names(name, "gluon")} == set(params)
    assert {s for s, _ in enumerate_names(name, "export")} == {p.name for p in params.values()}
    ours = registry.get(name).build()
    for i, out in enumerate(ours.yolo_outputs):
        for const in ("anchors", "offsets"):
            value = params[f"yolo_outputs.{i}.{const}"]
            value.initialize()
            arr = value.data().asnumpy()
            assert arr.shape == GLUON_SHAPES[const]
            assert np.array_equal(arr.reshape(arr.shape[2:]), getattr(out, const).numpy()), (i, const)
