"""Each registered rule table against the exact list of source names gluon produces.

The source names are enumerated here from gluon's known structure (no mxnet/gluoncv import), each
paired with the target tensor it must land on; the arrays are random with the target's shapes.
``converters.gluon.resnet._symbol_layers`` is used only as a cross-check of the numbering."""
from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from converters import registry
from converters.engine import map_tensors
from converters.errors import MappingError
from converters.gluon.resnet import _symbol_layers
from converters.gluon.ssd import SSD512_R50

GLUON_BN = ("gamma", "beta", "running_mean", "running_var")
RAW_SYMBOL_BN = ("gamma", "beta", "moving_mean", "moving_var")  # mx.sym.BatchNorm aux names
TORCH_BN = ("weight", "bias", "running_mean", "running_var")
# (position in BottleneckV1.body, target conv, has bias): conv, BN, relu, conv, BN, relu, conv, BN
BODY = ((0, "conv1", True), (3, "conv2", False), (6, "conv3", True))
LAYERS = (3, 4, 6, 3)  # resnet50


def _bn(src: str, dst: str, names=GLUON_BN) -> list[tuple[str, str]]:
    return [(src + s, dst + t) for s, t in zip(names, TORCH_BN)]


def resnet_gluon_names() -> list[tuple[str, str]]:
    """save_parameters names of gluoncv resnet50_v1: features = [conv, BN, relu, pool, stage1..4,
    pool]; each block is body (+ downsample on the first block of every stage); output = Dense."""
    pairs = [("features.0.weight", "conv1.weight"), *_bn("features.1.", "bn1.")]
    for s, n in enumerate(LAYERS):
        for b in range(n):
            src, dst = f"features.{s + 4}.{b}.", f"layer{s + 1}.{b}."
            for k, (pos, conv, bias) in enumerate(BODY):
                pairs.append((f"{src}body.{pos}.weight", f"{dst}{conv}.weight"))
                if bias:
                    pairs.append((f"{src}body.{pos}.bias", f"{dst}{conv}.bias"))
                pairs += _bn(f"{src}body.{pos + 1}.", f"{dst}bn{k + 1}.")
            if b == 0:
                pairs.append((f"{src}downsample.0.weight", f"{dst}downsample.0.weight"))
                pairs += _bn(f"{src}downsample.1.", f"{dst}downsample.1.")
    return pairs + [("output.weight", "fc.weight"), ("output.bias", "fc.bias")]


def resnet_symbol_layers() -> list[tuple[str, str, str, str]]:
    """(symbol conv, symbol BN, target conv, target BN), numbered per name scope in creation order:
    in each stage block0 body conv0..2, then its downsample conv3, block1 conv4..6, ..."""
    out = [("conv0", "batchnorm0", "conv1", "bn1")]
    for s, n in enumerate(LAYERS):
        k = 0
        for b in range(n):
            dst = f"layer{s + 1}.{b}."
            for p in range(3):
                out.append((f"stage{s + 1}_conv{k}", f"stage{s + 1}_batchnorm{k}", f"{dst}conv{p + 1}",
                            f"{dst}bn{p + 1}"))
                k += 1
            if b == 0:
                out.append((f"stage{s + 1}_conv{k}", f"stage{s + 1}_batchnorm{k}", f"{dst}downsample.0",
                            f"{dst}downsample.1"))
                k += 1
    return out


def resnet_symbol_names(src: str, dst: str, classifier: bool) -> list[tuple[str, str]]:
    pairs = []
    for conv, bn, conv_t, bn_t in resnet_symbol_layers():
        pairs.append((f"{src}{conv}_weight", f"{dst}{conv_t}.weight"))
        if conv_t.startswith("layer") and conv_t.endswith(("conv1", "conv3")):  # 1x1 body convs
            pairs.append((f"{src}{conv}_bias", f"{dst}{conv_t}.bias"))
        pairs += _bn(f"{src}{bn}_", f"{dst}{bn_t}.")
    if classifier:
        pairs += [(f"{src}dense0_weight", f"{dst}fc.weight"), (f"{src}dense0_bias", f"{dst}fc.bias")]
    return pairs


def ssd_extra_names(src: str) -> list[tuple[str, str]]:
    pairs = []
    for i in range(len(SSD512_R50.extra_filters)):
        for conv, bn, t in (("expand_trans_conv", "expand_trans_bn", "trans_"), ("expand_conv", "expand_bn", "")):
            pairs.append((f"{src}{conv}{i}_weight", f"extras.{i}.{t}conv.weight"))
            pairs += _bn(f"{src}{bn}{i}_", f"extras.{i}.{t}bn.", RAW_SYMBOL_BN)
    return pairs


def ssd_gluon_names() -> tuple[list[tuple[str, str]], list[str]]:
    """The backbone and extras sit in one SymbolBlock ``features`` (symbol names); heads are
    structural. Anchors are saved constants, ignored."""
    pairs = resnet_symbol_names("features.resnetv10_", "backbone.", classifier=False)
    pairs += ssd_extra_names("features.")
    for i in range(len(SSD512_R50.steps)):
        for head in ("class_predictors", "box_predictors"):
            pairs += [(f"{head}.{i}.predictor.{p}", f"{head}.{i}.{p}") for p in ("weight", "bias")]
    return pairs, [f"anchor_generators.{i}.anchors" for i in range(len(SSD512_R50.steps))]


def ssd_export_names() -> tuple[list[tuple[str, str]], list[str]]:
    """Export layout as the rule table documents it: everything under the ``ssd0_`` scope,
    predictors numbered in creation order (class i, then box i)."""
    pairs = resnet_symbol_names("ssd0_resnetv10_", "backbone.", classifier=False)
    pairs += ssd_extra_names("ssd0_")
    for i in range(len(SSD512_R50.steps)):
        for j, head in ((2 * i, "class_predictors"), (2 * i + 1, "box_predictors")):
            pairs += [(f"ssd0_convpredictor{j}_conv0_{p}", f"{head}.{i}.{p}") for p in ("weight", "bias")]
    return pairs, [f"ssd0_ssdanchorgenerator{i}_anchor_{i}" for i in range(len(SSD512_R50.steps))]


ENUMERATIONS = {
    ("resnet50_v1", "gluon"): lambda: (resnet_gluon_names(), []),
    ("resnet50_v1", "export"): lambda: (resnet_symbol_names("resnetv10_", "", classifier=True), []),
    ("ssd_512_resnet50_v1_voc", "gluon"): ssd_gluon_names,
    ("ssd_512_resnet50_v1_voc", "export"): ssd_export_names,
}


def test_every_layout_of_the_foundation_models_is_enumerated():
    # other families enumerate their own names; parity/tests/test_export.py covers every model's
    # export layout with names MXNet itself writes
    foundation = {"resnet50_v1", "ssd_512_resnet50_v1_voc"}
    registered = {(s.name, layout) for s in registry.specs() if s.name in foundation for layout in s.rules}
    assert registered == set(ENUMERATIONS)


def test_symbol_numbering_agrees_with_the_converter():
    assert list(_symbol_layers(registry.get("resnet50_v1").build().cfg)) == resnet_symbol_layers()


_TARGETS: dict = {}


def _target(name: str):
    if name not in _TARGETS:
        _TARGETS[name] = registry.get(name).build()
    return _TARGETS[name]


def _sources(pairs, ignored, expected, seed=0):
    rng = np.random.default_rng(seed)
    src = {s: rng.standard_normal(tuple(expected[t].shape), dtype=np.float32) for s, t in pairs}
    for name in ignored:
        src[name] = rng.standard_normal((1, 8, 4), dtype=np.float32)
    return src


@pytest.mark.parametrize("name,layout", sorted(ENUMERATIONS))
def test_rule_table_maps_the_enumerated_names(name, layout):
    spec, target = registry.get(name), _target(name)
    pairs, ignored = ENUMERATIONS[(name, layout)]()
    expected = target.state_dict()
    assert len({s for s, _ in pairs}) == len(pairs) and len({t for _, t in pairs}) == len(pairs)
    src = _sources(pairs, ignored, expected)
    state, rows = map_tensors(name, src, target, spec.rules[layout], spec.fixups, spec.defaults)
    counts = Counter(r.status for r in rows)
    n_bn = sum(k.endswith("num_batches_tracked") for k in expected)
    assert [counts[k] for k in ("mapped", "default", "ignored")] == [len(pairs), n_bn, len(ignored)]
    assert len(rows) == len(src) + n_bn
    assert len(pairs) + n_bn == len(expected)
    if name == "resnet50_v1":
        assert (counts["mapped"], counts["default"]) == (299, 53)
    want = dict(pairs)
    fixed = []
    for r in rows:
        if r.status != "mapped":
            continue
        assert r.target == want[r.source], r.source
        if r.fixup is None:
            assert np.array_equal(state[r.target].numpy(), src[r.source]), r.source
        else:
            fixed.append(r.target)
    assert {r.source for r in rows if r.status == "ignored"} == set(ignored)
    if name == "ssd_512_resnet50_v1_voc":
        # fix_gamma: the 8 extra-block BN gammas read as one; nothing else is touched
        assert sorted(fixed) == sorted(f"extras.{i}.{b}.weight" for i in range(4) for b in ("bn", "trans_bn"))
        assert all(bool((state[t] == 1).all()) for t in fixed)
    else:
        assert fixed == []


@pytest.mark.parametrize("layout", ["gluon", "export"])
def test_missing_source_is_reported_as_unfilled_target(layout):
    spec, target = registry.get("resnet50_v1"), _target("resnet50_v1")
    pairs, _ = ENUMERATIONS[("resnet50_v1", layout)]()
    src = _sources(pairs, [], target.state_dict())
    dropped, tgt = pairs[100]
    del src[dropped]
    with pytest.raises(MappingError) as exc:
        map_tensors(spec.name, src, target, spec.rules[layout], spec.fixups, spec.defaults)
    shape = tuple(target.state_dict()[tgt].shape)
    assert exc.value.problems == [f"target {tgt} {shape} is not filled by any source tensor"]


@pytest.mark.parametrize("layout", ["gluon", "export"])
def test_renamed_source_is_matched_by_no_rule(layout):
    spec, target = registry.get("resnet50_v1"), _target("resnet50_v1")
    pairs, _ = ENUMERATIONS[("resnet50_v1", layout)]()
    src = _sources(pairs, [], target.state_dict())
    old, tgt = pairs[-3]  # a BN statistic of the last block
    src[old.replace("running_", "moving_")] = src.pop(old)
    with pytest.raises(MappingError) as exc:
        map_tensors(spec.name, src, target, spec.rules[layout], spec.fixups, spec.defaults)
    problems = exc.value.problems
    assert len(problems) == 2
    assert any(old.replace("running_", "moving_") in p and "matched by no rule" in p for p in problems)
    assert any(tgt in p and "not filled" in p for p in problems)
