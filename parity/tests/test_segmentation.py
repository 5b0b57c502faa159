"""Segmentation parity beyond the registry sweep: the dilated backbone's layer pairs, gluoncv's
output tuple, and errors planted where this family can go wrong (a dilation, the first dilated
block's rate, corner alignment of the resizes, the auxiliary head), each caught at its own layer.

The planted-error runs use a 160x160 crop: gluoncv bakes its resize targets in from ``crop_size``,
so the oracle is built at that crop (``get_model(..., crop_size=160)``; the weights do not depend on
it) and the harness is the sweep's own ``verify``, at a ninth of the cost of the native 480."""
from __future__ import annotations

import copy
import dataclasses

import pytest
import torch
import torch.nn.functional as F

import converters.arch.segmentation as seg_arch
from converters.samples import sample_photos
from parity.verify import verify

pytestmark = pytest.mark.oracle

SMALL = 160
FCN, PSP, DEEPLAB = "fcn_resnet50_ade", "psp_resnet50_ade", "deeplab_resnet50_ade"


def _at_small_crop(result, module=None):
    """The same conversion (optionally another module), its oracle built for a SMALL crop."""
    spec = result.spec
    small = dataclasses.replace(spec, source_kwargs={**spec.get_model_kwargs, "crop_size": SMALL})
    return dataclasses.replace(result, spec=small, module=module if module is not None else result.module)


def _verify_small(result, module=None):
    return verify(result.spec.name, result=_at_small_crop(result, module), images=sample_photos()[:1],
                  size=(SMALL, SMALL))


def _assert_first_divergence(report, name: str) -> None:
    first = report.layers.first_divergent
    assert not report.passed and first is not None and first.name == name, first
    before = report.layers.diffs[: report.layers.diffs.index(first)]
    assert before and all(d.passed for d in before)


# ----------------------------------------------------------------------------- at native size


@pytest.mark.slow  # deeplab_resnet50_ade's parity runs in `make parity-full` (parity/selection.py)
def test_dilated_backbone_layer_pairs(parity_report):
    """Every conv and BN of the dilated stages is paired (the first blocks' lower-rate 3x3 convs
    included) and within tolerance, as are the stage outputs, the ASPP branches and both heads."""
    r = parity_report(DEEPLAB)
    diffs = {d.name: d for d in r.layers.diffs}
    for stage, blocks in ((3, 6), (4, 3)):
        for b in range(blocks):
            for layer in ("conv1", "bn1", "conv2", "bn2", "conv3", "bn3"):
                assert diffs[f"backbone.layer{stage}.{b}.{layer}"].passed
        assert diffs[f"backbone.layer{stage}.0.downsample.0"].passed
        assert diffs[f"backbone.layer{stage}"].passed
    for name in ("head.aspp.branches.4", "head.aspp", "head", "aux_head", "head.classifier.4", "aux_head.4"):
        assert diffs[name].passed, name
    assert len(r.layers.diffs) == 136 and r.passed  # 128 mapped layers + 8 explicit pairs


def test_output_tuple_matches_gluoncvs(parity_report):
    """gluoncv's eval output is (main, aux); both compared, same shapes (any shape difference is a
    diff error), and the argmax map identical apart from logit ties."""
    r = parity_report(PSP)
    assert [d.name for d in r.outputs] == ["output[0]", "output[1]"]
    assert all(d.error is None and d.shape == (1, 150, 480, 480) and d.passed for d in r.outputs)
    a = r.argmax
    assert a["unexplained"] == 0 and a["identical"] + a["tie_explained"] == a["count"]
    assert a["identical"] >= 0.999 * a["count"]  # the seeded logits are spread: ties are rare


# -------------------------------------------------------------------- small crop, planted errors


def test_small_crop_baseline_passes(converted):
    """The reference point of the planted runs below: the unmodified net passes at the small crop,
    with gluoncv's (main, aux) shapes at that crop."""
    r = _verify_small(converted(PSP))
    assert r.passed, r.layers.first_divergent
    assert [d.shape for d in r.outputs] == [(1, 150, SMALL, SMALL)] * 2


def test_planted_error_in_a_dilated_conv_is_found_there(converted):
    result = converted(PSP)
    bad = copy.deepcopy(result.module)
    with torch.no_grad():
        bad.backbone.layer4[1].conv2.weight.mul_(1.01)
    _assert_first_divergence(_verify_small(result, bad), "backbone.layer4.1.conv2")


@pytest.mark.parametrize("stage,block,dilation", [
    (4, 1, 1),  # a dilated conv run undilated
    (3, 0, 2),  # the stage's rate on its first block, where gluoncv keeps dilation 1
    (4, 0, 4),  # likewise on stage 4, where gluoncv's first block uses 2
])
def test_wrong_dilation_is_found_at_that_conv(converted, stage, block, dilation):
    result = converted(PSP)
    bad = copy.deepcopy(result.module)
    conv = bad.backbone.get_submodule(f"layer{stage}.{block}.conv2")
    assert conv.dilation != (dilation, dilation)
    conv.dilation, conv.padding = (dilation, dilation), (dilation, dilation)
    _assert_first_divergence(_verify_small(result, bad), f"backbone.layer{stage}.{block}.conv2")


def test_resizing_with_align_corners_false_is_found_at_the_pyramid(converted, monkeypatch):
    """PSP resizes its 2x2/3x3/6x6 levels back to the feature map: the first pair that sees a resize."""
    monkeypatch.setattr(seg_arch, "resize_bilinear",
                        lambda x, size: F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False))
    _assert_first_divergence(_verify_small(converted(PSP)), "head.pyramid")


def test_planted_error_in_the_aux_head_fails_only_the_aux_output(converted):
    result = converted(FCN)
    bad = copy.deepcopy(result.module)
    with torch.no_grad():
        bad.aux_head[0].weight.mul_(1.01)
    r = _verify_small(result, bad)
    _assert_first_divergence(r, "aux_head.0")
    main, aux = r.outputs
    assert main.passed and not aux.passed
