"""Simple Pose against MXNet beyond the registry sweep: the other published input sizes, the deconv
head layer by layer, a planted deconv error, MXNet's Conv2DTranspose numerics, and the export layout
of a net built in a fresh name scope."""
from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest
import torch

from converters.arch.simple_pose import DECONV_PADDING
from converters.samples import sample_photos
from parity.compare import DEFAULT_TOL, FLOOR_FACTOR
from parity.verify import verify

pytestmark = pytest.mark.oracle

SMALL = "simple_pose_resnet18_v1b"
HEAD = {f"deconv_layers.{i}" for i in range(9)} | {"final_layer"}  # deconvs, BNs, ReLUs, 1x1 conv


@pytest.mark.parametrize("name,size", [
    (SMALL, (128, 96)), (SMALL, (384, 288)),
    # gluon-cv's large published model runs at 384x288
    pytest.param("simple_pose_resnet152_v1d", (384, 288), marks=pytest.mark.slow),
])
def test_parity_at_the_other_published_sizes(converted, name, size):
    result = converted(name)
    assert tuple(size) in tuple(result.spec.parity_sizes)
    r = verify(name, result=result, images=sample_photos()[:2], size=size)
    assert r.passed, r.layers.first_divergent or r.argmax
    assert r.size == size
    out = {d.name: d for d in r.layers.diffs}["final_layer"]
    assert out.shape == (1, 17, size[0] // 4, size[1] // 4)  # heatmaps at a quarter of the input
    assert r.argmax["count"] == 17 * 2 and r.argmax["unexplained"] == 0


def test_deconv_head_is_paired_layer_by_layer(parity_report):
    r = parity_report(SMALL)
    by_name = {d.name: d for d in r.layers.diffs}
    assert HEAD <= set(by_name)
    assert {"layer1", "layer4", "maxpool"} <= set(by_name)  # block outputs, beyond the mapping's pairs
    for name in HEAD:
        d = by_name[name]
        assert d.needed <= max(DEFAULT_TOL, FLOOR_FACTOR * d.floor), name
    # the joints' peaks are where MXNet puts them (tie-aware), on every image
    assert r.argmax["identical"] + r.argmax["tie_explained"] == r.argmax["count"] == 17 * len(r.images)


def test_planted_deconv_error_is_found_at_that_layer(converted):
    """1% on the second transposed conv: every layer before it passes, it is the first divergence."""
    result = converted(SMALL)
    bad = copy.deepcopy(result.module)
    with torch.no_grad():
        bad.deconv_layers[3].weight.mul_(1.01)
    r = verify(SMALL, result=dataclasses.replace(result, module=bad), images=sample_photos()[:1])
    assert not r.passed
    assert r.layers.first_divergent.name == "deconv_layers.3"
    assert all(d.passed for d in r.layers.diffs[: r.layers.diffs.index(r.layers.first_divergent)])


@pytest.mark.parametrize("kernel", sorted(DECONV_PADDING))
def test_mxnet_conv2d_transpose_equals_torch(kernel):
    """gluon's Conv2DTranspose stores (in, out, kh, kw), torch's ConvTranspose2d too, and their
    padding/output_padding give the same map; the (out, in) reading a naive port might take fails."""
    from converters.frameworks import import_mxnet
    mx = import_mxnet()
    pad, out_pad = DECONV_PADDING[kernel]
    rng = np.random.default_rng(kernel)
    x = rng.standard_normal((2, 6, 5, 7)).astype(np.float32)
    w = rng.standard_normal((6, 4, kernel, kernel)).astype(np.float32)
    block = mx.gluon.nn.Conv2DTranspose(4, kernel, strides=2, padding=pad, output_padding=out_pad,
                                        use_bias=False, in_channels=6)
    block.initialize()
    block.weight.set_data(mx.nd.array(w))
    ref = block(mx.nd.array(x)).asnumpy()
    t = torch.nn.ConvTranspose2d(6, 4, kernel, 2, pad, out_pad, bias=False)
    with torch.no_grad():
        t.weight.copy_(torch.from_numpy(w))
        got = t(torch.from_numpy(x)).numpy()
        naive = torch.nn.functional.conv_transpose2d(
            torch.from_numpy(x), torch.from_numpy(w).reshape(4, 6, kernel, kernel).transpose(0, 1),
            stride=2, padding=pad, output_padding=out_pad).numpy()
    assert ref.shape == got.shape == (2, 4, 10, 14)
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-5 * np.abs(ref).max())
    assert np.abs(naive - ref).max() > 0.1 * np.abs(ref).max()


def _export_fresh(converted, tmp_path):
    """The seeded net exported by MXNet from a fresh name scope (head symbols conv0.., as the first
    net of a process has them), converted through the export rules; and the save_parameters result."""
    from converters import convert
    from converters.frameworks import import_gluoncv, import_mxnet
    mx, gcv = import_mxnet(), import_gluoncv()
    ref = converted(SMALL)
    with mx.name.NameManager():
        net = gcv.model_zoo.get_model(SMALL, pretrained=False, **ref.spec.get_model_kwargs)
    net.load_parameters(str(ref.source))
    net.hybridize()
    net(mx.nd.zeros((1, 3, *ref.spec.preprocess.size)))
    net.export(str(tmp_path / "pose"))
    return convert(SMALL, weights=tmp_path / "pose-0000.params"), ref


def test_export_from_a_fresh_name_scope_converts_to_the_same_weights(converted, tmp_path):
    exported, ref = _export_fresh(converted, tmp_path)
    assert exported.layout == "export" and exported.state_dict.keys() == ref.state_dict.keys()
    assert all(torch.equal(exported.state_dict[k], ref.state_dict[k]) for k in ref.state_dict)
    assert {r.source for r in exported.mapping if r.target == "deconv_layers.0.weight"} == {"conv0_weight"}


def test_export_passes_parity_through_mxnets_symbol_block(converted, tmp_path):
    """Every mapped layer paired through the imported symbol graph, the root-scope head included."""
    exported, _ = _export_fresh(converted, tmp_path)
    r = verify(SMALL, result=exported, images=sample_photos()[:1])
    assert r.passed, r.layers.first_divergent
    assert {"deconv_layers.0", "deconv_layers.7", "final_layer"} <= {d.name for d in r.layers.diffs}
