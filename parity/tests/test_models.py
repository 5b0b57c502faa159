"""Both models, converted from seeded gluoncv checkpoints, against MXNet on real photographs."""
from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest
import torch

from parity.selection import sweep_params

from converters.samples import sample_photos
from parity.compare import DEFAULT_TOL
from parity.verify import verify

pytestmark = pytest.mark.oracle


@pytest.mark.parametrize("name", sweep_params())
def test_registered_model_passes_parity(parity_report, name):
    """Every registered model, by default: all layer pairs and the task check pass."""
    report = parity_report(name)
    assert report.passed, report.layers.first_divergent or report.detections or report.topk
    assert len(report.layers.diffs) > 0


def test_resnet50_v1_every_layer_within_1e4(parity_report):
    r = parity_report("resnet50_v1")
    assert r.passed, r.layers.first_divergent
    assert len(r.images) >= 5
    assert len(r.layers.diffs) == 107  # 53 convs + 53 BNs + fc, each paired from the mapping
    # this network is well conditioned: the flat 1e-4 bar holds everywhere, no floor allowance
    assert max(d.needed for d in r.layers.diffs) <= DEFAULT_TOL
    assert min(d.cosine for d in r.layers.diffs) > 0.99999
    assert r.outputs[0].needed <= DEFAULT_TOL
    assert r.topk["identical"] == len(r.images) and r.topk["unexplained"] == 0


def test_ssd_512_every_layer_within_tolerance(parity_report):
    r = parity_report("ssd_512_resnet50_v1_voc")
    names = {d.name for d in r.layers.diffs}
    assert r.layers.passed, r.layers.first_divergent
    assert len(names) == 148
    assert {"box_decoder", "cls_decoder#in", "extras.3", "backbone.layer3", "class_predictors.5"} <= names
    for d in r.layers.diffs:
        assert d.needed <= max(DEFAULT_TOL, 4 * d.floor), d.name  # within 1e-4 or 4x fp32 noise
    anchors = [d for d in r.layers.diffs if d.name.startswith("anchor_generators")]
    assert len(anchors) == 6 and all(d.max_abs == 0 for d in anchors)  # anchors are exact


def test_ssd_512_detections_identical(parity_report):
    r = parity_report("ssd_512_resnet50_v1_voc")
    d = r.detections
    assert d.reference > 10 * len(r.images) // 2  # the seeded detector really detects things
    assert d.unexplained == 0 and d.identical + d.tie_explained == d.reference, d
    assert d.converted == d.reference
    assert r.detection_tol["score"] <= 2e-3 and r.detection_tol["box"] <= 0.25
    assert r.passed


def test_harness_reports_the_first_divergent_layer(converted):
    """A 1% error planted in one conv is found, and it is the first divergence reported."""
    result = converted("resnet50_v1")
    bad = copy.deepcopy(result.module)
    with torch.no_grad():
        bad.layer2.get_submodule("1").conv2.weight.mul_(1.01)
    r = verify("resnet50_v1", result=dataclasses.replace(result, module=bad), images=sample_photos()[:1])
    assert not r.passed
    assert r.layers.first_divergent.name == "layer2.1.conv2"
    assert all(d.passed for d in r.layers.diffs[: r.layers.diffs.index(r.layers.first_divergent)])


def test_ignoring_fix_gamma_is_caught(converted):
    """A converter that copies the stored gamma of MXNet's fix_gamma BatchNorms (as naive ports do)
    diverges exactly at the first extra-layer BN."""
    from converters.io.mxnet_params import read_params
    result = converted("ssd_512_resnet50_v1_voc")
    stored = read_params(result.source)
    naive = copy.deepcopy(result.module)
    with torch.no_grad():
        for i in range(4):
            naive.extras[i].trans_bn.weight.copy_(torch.from_numpy(stored[f"features.expand_trans_bn{i}_gamma"]))
            naive.extras[i].bn.weight.copy_(torch.from_numpy(stored[f"features.expand_bn{i}_gamma"]))
    assert not np.allclose(stored["features.expand_bn0_gamma"], 1)  # the seeded file stores real gammas
    r = verify("ssd_512_resnet50_v1_voc", result=dataclasses.replace(result, module=naive),
               images=sample_photos()[:1])
    assert not r.passed
    assert r.layers.first_divergent.name == "extras.0.trans_bn"


def test_export_layout_converts_and_matches(converted, tmp_path):
    """The same seeded net exported by MXNet (arg:/aux: symbol names) converts through the export
    rules to the same weights, and passes parity."""
    from converters import convert
    from converters.frameworks import import_gluoncv, import_mxnet
    mx, gcv = import_mxnet(), import_gluoncv()
    ref = converted("resnet50_v1")
    net = gcv.model_zoo.get_model("resnet50_v1", pretrained=False)
    net.load_parameters(str(ref.source))
    net.hybridize()
    net(mx.nd.zeros((1, 3, 224, 224)))
    net.export(str(tmp_path / "r50"))
    exported = convert("resnet50_v1", weights=tmp_path / "r50-0000.params")
    assert exported.layout == "export"
    assert exported.state_dict.keys() == ref.state_dict.keys()
    assert all(torch.equal(exported.state_dict[k], ref.state_dict[k]) for k in ref.state_dict)
    assert verify("resnet50_v1", result=exported, images=sample_photos()[:2]).passed
