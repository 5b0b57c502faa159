"""YOLOv3 against MXNet beyond the 416x416 sweep: one conversion at 320, 608 and the largest input
its grid offsets allow (gluoncv allocates them once and slices them per input), a clear error above
that, and planted conversion errors caught at the layer where they enter."""
from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest
import torch

from converters import registry
from converters.samples import sample_photos
from parity.verify import ParityReport, oracle_for, verify

pytestmark = pytest.mark.oracle

CI = "yolo3_mobilenet1.0_voc"
SIZES = [(320, 320), (608, 608)]


def _cells(size: tuple[int, int]) -> list[int]:
    """Grid cells per output, deepest first."""
    return [-(-size[0] // s) * -(-size[1] // s) for s in (32, 16, 8)]


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("name,n_images", [(CI, 2), pytest.param("yolo3_darknet53_coco", 1, marks=pytest.mark.slow)])
def test_one_conversion_matches_mxnet_at_other_sizes(converted, name, n_images, size):
    """Every layer pair within tolerance and every MXNet detection reproduced, at an input size
    other than the preset's; the per-output rows prove the offsets were sliced to this grid.
    (DarkNet on one photo: its layer captures in MXNet, fp32 and fp64 peak at 6.5 GB at 608.)"""
    result = converted(name)
    assert size in registry.get(name).parity_sizes
    images = sample_photos()[:n_images]
    r = verify(name, result=result, images=images, size=size)
    assert r.size == size
    assert r.layers.passed, r.layers.first_divergent
    classes = result.module.cfg.num_classes
    rows = {d.name: d for d in r.layers.diffs if d.name.startswith("yolo_outputs.") and d.name.count(".") == 1}
    assert [rows[f"yolo_outputs.{i}"].shape for i in range(3)] == [(1, classes * 3 * n, 6) for n in _cells(size)]
    d = r.detections
    assert d.reference == 100 * len(images)  # the seeded detector fills post_nms on every photo
    assert d.unexplained == 0 and d.identical + d.tie_explained == d.reference and d.converted == d.reference, d
    assert r.passed


def test_largest_allocated_input_matches_mxnet(converted):
    """1024x1024: the stride-8 grid uses all 128x128 allocated offsets. Only the three outputs'
    rows are paired (a full layer capture at this size takes gigabytes); detections as always."""
    result = converted(CI)
    rows_only = dataclasses.replace(
        result, spec=dataclasses.replace(result.spec, extra_pairs=()),
        mapping=[m for m in result.mapping if m.target and m.target.endswith((".anchors", ".offsets"))])
    r = verify(CI, result=rows_only, images=sample_photos()[:1], size=(1024, 1024))
    assert sorted(d.name for d in r.layers.diffs) == [f"yolo_outputs.{i}" for i in range(3)]
    assert r.layers.diffs[-1].shape == (1, 20 * 3 * 128 * 128, 6)
    assert r.passed, r.layers.first_divergent or r.detections
    assert r.detections.reference == 100


def test_inputs_above_the_allocation_fail_clearly_in_both_frameworks(converted):
    """1056 px needs 132 stride-8 cells of the 128 allocated: MXNet's slice_like fails deep in
    the graph; the converted module refuses up front, naming the limit."""
    result = converted(CI)
    x = np.zeros((1, 3, 1056, 1056), np.float32)
    with pytest.raises(ValueError, match=r"input 1056x1056 exceeds this YOLOv3's maximum 1024x1024"):
        result.module(torch.from_numpy(x))
    oracle = oracle_for(result)
    with pytest.raises(oracle.mx.base.MXNetError, match="132"):
        oracle.run(x, [])


def _planted(result, edit) -> ParityReport:
    bad = copy.deepcopy(result.module)
    with torch.no_grad():
        edit(bad)
    return verify(CI, result=dataclasses.replace(result, module=bad), images=sample_photos()[:1])


@pytest.mark.parametrize("output,edit,why", [
    (1, lambda m: m.yolo_outputs[1].anchors.mul_(1.01), "anchors 1% off"),
    (2, lambda m: m.yolo_outputs[2].offsets.copy_(m.yolo_outputs[2].offsets.flip(-1)), "offsets (x, y) swapped"),
])
def test_planted_constant_errors_are_caught_at_their_output(converted, output, edit, why):
    """A wrong anchor or grid constant (the tensors only YOLO converts) leaves the network intact
    and fails first at the rows of the output that uses it."""
    r = _planted(converted(CI), edit)
    assert not r.passed, why
    assert r.layers.first_divergent.name == f"yolo_outputs.{output}", (why, r.layers.first_divergent)
    before = r.layers.diffs[: r.layers.diffs.index(r.layers.first_divergent)]
    assert before and all(d.passed for d in before)
    assert not r.detections.passed  # and the detections change


def test_planted_head_conv_error_is_caught_at_that_conv(converted):
    r = _planted(converted(CI), lambda m: m.yolo_blocks[1].body[2].conv.weight.mul_(1.01))
    assert not r.passed
    assert r.layers.first_divergent.name == "yolo_blocks.1.body.2.conv"
