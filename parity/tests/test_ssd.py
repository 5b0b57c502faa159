"""SSD zoo against MXNet: every layer of each CI model within tolerance with exact anchors, anchors
equal to gluoncv's own generators at 300 and 512, the VGG L2Norm scale converted per channel, and
planted errors caught at the layer they were planted in."""
from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest
import torch

from converters import convert, registry
from converters.samples import sample_photos
from parity.capture import run_torch
from parity.compare import DEFAULT_TOL, FLOOR_FACTOR
from parity.preprocess import preprocess
from parity.selection import slow
from parity.verify import verify

pytestmark = pytest.mark.oracle

FAMILY = sorted(n for n in registry.names() if registry.get(n).family == "gluon.ssd")


def _params(names):
    return [pytest.param(n, marks=[pytest.mark.slow] if slow(n) else []) for n in names]


@pytest.mark.parametrize("name", _params(FAMILY))
def test_every_layer_within_tolerance_and_detections_identical(parity_report, name):
    r = parity_report(name)
    spec, cfg = registry.get(name), registry.get(name).build.args[0]
    names = {d.name for d in r.layers.diffs}
    assert r.layers.passed, r.layers.first_divergent
    for d in r.layers.diffs:
        assert d.needed <= max(DEFAULT_TOL, FLOOR_FACTOR * d.floor), d.name
    # every level's anchors, every extra block and both decoders are paired explicitly
    levels = len(cfg.steps)
    assert {f"anchor_generators.{i}" for i in range(levels)} <= names
    assert {f"extras.{i}" for i in range(len(cfg.extras))} <= names
    assert {f"class_predictors.{i}" for i in range(levels)} <= names and {"box_decoder", "cls_decoder#in"} <= names
    anchors = [d for d in r.layers.diffs if d.name.startswith("anchor_generators")]
    assert len(anchors) == levels and all(d.max_abs == 0 for d in anchors)
    if "vgg16" in name:  # input scaling, the L2-normalised conv4_3 and fc7 are compared directly
        assert {"backbone.init_scale", "backbone.norm4", "backbone.stages.5", "backbone.stages.3.4"} <= names
    d = r.detections
    assert d.reference >= 50 * len(r.images)  # the seeded detector really detects things
    assert d.unexplained == 0 and d.identical + d.tie_explained == d.reference == d.converted, d
    assert r.passed and len(r.images) == spec.parity_images


# --------------------------------------------------------------------------------------- anchors


@pytest.mark.parametrize("name,sides", [
    ("ssd_300_vgg16_atrous_voc", [(38, 38), (19, 19), (10, 10), (5, 5), (3, 3), (1, 1)]),
    ("ssd_300_vgg16_atrous_coco", [(30, 50), (15, 25), (8, 13), (4, 7), (2, 5), (1, 3)]),
    ("ssd_512_vgg16_atrous_coco", [(64, 64), (32, 32), (16, 16), (8, 8), (4, 4), (2, 2), (1, 1)]),
    ("ssd_512_mobilenet1.0_coco", [(24, 40), (12, 20), (6, 10), (3, 5), (2, 3), (1, 2)]),
])
def test_anchors_equal_gluoncvs_generators(name, sides):
    """gluoncv's SSDAnchorGenerator, run by MXNet on a feature map of each level's size (native and
    non-square maps), against ours: bit-identical."""
    from converters.frameworks import import_gluoncv, import_mxnet
    mx, gcv = import_mxnet(), import_gluoncv()
    net = gcv.model_zoo.get_model(name, pretrained=False, pretrained_base=False)
    net.anchor_generators.initialize()
    ours = registry.get(name).build().anchor_generators
    assert len(ours) == len(net.anchor_generators) == len(sides)
    for (h, w), theirs, mine in zip(sides, net.anchor_generators, ours):
        want = theirs(mx.nd.zeros((1, 1, h, w))).asnumpy()
        got = mine(torch.zeros(1, 1, h, w)).numpy()
        assert want.shape == got.shape == (1, h * w * mine.num_anchors, 4)
        assert np.array_equal(got, want), (name, h, w)


# -------------------------------------------------------------------------------- L2Norm (VGG)


def test_l2norm_scale_converted_per_channel(converted, tmp_path):
    """The seeded net's norm4 scale is gluoncv's constant init (20 everywhere), which cannot tell a
    per-channel scale from a scalar; plant a different scale per channel: MXNet's normalised conv4_3
    and ours agree within tolerance, while keeping the init scale (a port that drops the parameter)
    does not. (The eps placement is tested on tiny vectors in tests/test_ssd_zoo.py: on real
    conv4_3 activations eps is negligible.)"""
    from converters.frameworks import import_mxnet
    from parity.oracles.mxnet import GluonOracle
    mx = import_mxnet()
    name = "ssd_300_vgg16_atrous_voc"
    seeded = converted(name)
    arrays = mx.nd.load(str(seeded.source))
    assert np.all(arrays["features.norm4.scale"].asnumpy() == 20)
    planted = np.random.default_rng(0).uniform(2, 40, (1, 512, 1, 1)).astype(np.float32)
    arrays["features.norm4.scale"] = mx.nd.array(planted)
    path = tmp_path / f"{name}-planted.params"
    mx.nd.save(str(path), arrays)
    result = convert(name, weights=path)
    row = next(r for r in result.mapping if r.source == "features.norm4.scale")
    assert row.target == "backbone.norm4.scale" and row.fixup is None
    assert np.array_equal(result.module.backbone.norm4.scale.detach().numpy(), planted)

    x = preprocess(sample_photos()[0][1], result.spec.preprocess).numpy()[None]
    _, ref = GluonOracle(name, path, result.spec.get_model_kwargs).run(x, ["features.norm4"])
    ref_norm = ref["features.norm4"]
    _, got, _ = run_torch(result.module, x, ["backbone.norm4"])
    bound = DEFAULT_TOL * np.abs(ref_norm).max()
    assert np.abs(got["backbone.norm4"] - ref_norm).max() <= bound

    dropped = copy.deepcopy(result.module)
    with torch.no_grad():
        dropped.backbone.norm4.scale.fill_(20.0)
    _, naive, _ = run_torch(dropped, x, ["backbone.norm4"])
    assert np.abs(naive["backbone.norm4"] - ref_norm).max() > 100 * bound


# ------------------------------------------------------------------------------ planted errors


@pytest.mark.parametrize("name,layer", [
    ("ssd_300_vgg16_atrous_voc", "backbone.stages.3.2"),        # conv4_2, before the L2Norm tap
    ("ssd_300_vgg16_atrous_voc", "extras.2.conv"),              # the first unpadded 3x3 extra conv
    ("ssd_512_mobilenet1.0_voc", "backbone.blocks.4.dw.conv"),  # a depthwise conv
])
def test_planted_error_is_found_at_its_layer(converted, monkeypatch, name, layer):
    """A 1% error in one conv's weights: the first divergent layer reported is that conv, and every
    layer that ran before it passes. (The NMS-variant replay plays no part here and is skipped.)"""
    import parity.verify
    monkeypatch.setattr(parity.verify, "nms_variants", lambda *a, **k: None)
    result = converted(name)
    bad = copy.deepcopy(result.module)
    with torch.no_grad():
        bad.get_submodule(layer).weight.mul_(1.01)
    r = verify(name, result=dataclasses.replace(result, module=bad), images=sample_photos()[:1])
    assert not r.passed
    first = r.layers.first_divergent
    assert first.name == layer, first.name
    assert all(d.passed for d in r.layers.diffs[: r.layers.diffs.index(first)])
