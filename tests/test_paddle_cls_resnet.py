"""PaddleClas ResNets (converters/paddle/resnet.py), without paddle: both rule tables against the
family's names, fluid == dygraph on one set of values, the named conventions (Linear [in, out],
BN ``_mean``/``_variance``, ResNet18/34's stage-1 projection, vd's exclusive ceil-mode avg-pool
shortcut) and a bad checkpoint's one-line error."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import converters
from converters import registry
from converters.registry import paddleclas_eval
from converters.errors import MappingError, ReaderError
from converters.paddle import resnet as pr
from test_paddle_cls_fixtures import (assert_layouts_agree, synthetic_source, tensor_record,
                                      write_fluid_dir, write_pdparams)

FAMILY = [m[0] for m in pr.MODELS]
CASES = {m[0]: (m[1], m[2]) for m in pr.MODELS}  # name -> (depth, vd)


def _tables(name: str) -> dict[str, str]:
    depth, vd = CASES[name]
    return pr.fluid_names(pr.config(depth, vd), depth)


def test_every_model_is_registered_as_a_paddle_checkpoint():
    assert sorted(FAMILY) == sorted(n for n in registry.names() if registry.get(n).family == "paddle.resnet")
    for name in FAMILY:
        spec = registry.get(name)
        assert spec.framework == "paddle" and spec.source_format == "paddle-checkpoint"
        assert set(spec.rules) == {"dygraph", "fluid"}
        assert spec.preprocess == paddleclas_eval()
        w = spec.weights()
        assert w.archive == "tar" and w.sha1 is None and w.url.endswith(f"/{w.filename}.tar")


@pytest.mark.parametrize("name", FAMILY)
def test_both_layouts_cover_every_tensor_and_agree(name):
    """Every name of the dygraph state dict and of the static scheme is matched by exactly one rule,
    every target tensor is filled, and the two layouts give one state dict for one set of values."""
    assert_layouts_agree(registry.get(name), _tables(name))


def test_static_names_follow_paddleclas_1x():
    """Spot checks of the static scheme (PaddleClas release 1.x/2.0 resnet.py, resnet_vd.py)."""
    vb, vd, deep = _tables("ResNet50"), _tables("ResNet50_vd"), _tables("ResNet101_vd")
    assert vb["stem.0.conv.weight"] == "conv1_weights" and vb["stem.0.bn._mean"] == "bn_conv1_mean"
    assert vb["blocks.0.conv0.conv.weight"] == "res2a_branch2a_weights"
    assert vb["blocks.0.short.bn.weight"] == "bn2a_branch1_scale"
    assert vb["blocks.3.conv1.bn.bias"] == "bn3a_branch2b_offset"
    assert vd["stem.0.conv.weight"] == "conv1_1_weights" and vd["stem.2.bn._variance"] == "bnv1_3_variance"
    # ResNet101's third stage: res4a, res4b1 .. res4b22
    assert deep["blocks.7.conv2.conv.weight"] == "res4a_branch2c_weights"
    assert deep["blocks.29.conv0.conv.weight"] == "res4b22_branch2a_weights"
    assert deep["blocks.30.short.conv.weight"] == "res5a_branch1_weights"
    assert vb["fc.weight"] == "fc_0.w_0" and vb["fc.bias"] == "fc_0.b_0"


def test_files_in_both_layouts_convert_to_the_same_weights(tmp_path):
    """Through the readers and the pipeline: a .pdparams file and a fluid directory holding the same
    values convert to identical state dicts; the Linear is transposed and BN statistics land in the
    running buffers."""
    for name in ("ResNet18", "ResNet50_vd"):
        spec, table = registry.get(name), _tables(name)
        dygraph = synthetic_source(spec, table)
        a = converters.convert(name, weights=write_pdparams(tmp_path / f"{name}.pdparams", dygraph))
        b = converters.convert(name, weights=write_fluid_dir(tmp_path / name, {table[k]: v for k, v in dygraph.items()}))
        assert (a.layout, b.layout) == ("dygraph", "fluid")
        assert all(torch.equal(a.state_dict[k], b.state_dict[k]) for k in a.state_dict)
        fc = next(r for r in a.mapping if r.target == "fc.weight")
        assert fc.fixup == "transpose_linear" and fc.shape == dygraph["fc.weight"].shape
        assert torch.equal(a.state_dict["fc.weight"], torch.from_numpy(dygraph["fc.weight"].T))
        bn = pr.config(*CASES[name]).deep_stem and "conv1.1" or "bn1"
        assert torch.equal(a.state_dict[f"{bn}.running_var"], torch.from_numpy(dygraph["stem.0.bn._variance"]))
        assert torch.equal(a.state_dict[f"{bn}.running_mean"], torch.from_numpy(dygraph["stem.0.bn._mean"]))


def test_a_truncated_fluid_file_is_one_line_naming_file_and_tensor(tmp_path):
    spec, table = registry.get("ResNet18"), _tables("ResNet18")
    fluid = {table[k]: v for k, v in synthetic_source(spec, table).items()}
    d = write_fluid_dir(tmp_path / "ResNet18_pretrained", fluid)
    bad = d / "res3a_branch2b_weights"
    bad.write_bytes(tensor_record(fluid[bad.name])[:-7])
    with pytest.raises(ReaderError) as exc:
        converters.convert("ResNet18", weights=d)
    msg = str(exc.value)
    assert "\n" not in msg and str(bad) in msg and "'res3a_branch2b_weights'" in msg


def test_a_checkpoint_of_another_model_names_the_tensors(tmp_path):
    """A ResNet18 file given as ResNet34: every problem (here shape mismatches: the flat block
    numbers shift) is listed, naming the source tensor, on one line."""
    spec = registry.get("ResNet18")
    f = write_pdparams(tmp_path / "r18.pdparams", synthetic_source(spec, _tables("ResNet18")))
    with pytest.raises(MappingError) as exc:
        converters.convert("ResNet34", weights=f)
    msg = str(exc.value)
    assert "\n" not in msg and "shape mismatch: source blocks.2.conv0.conv.weight (128, 64, 3, 3)" in msg


# ------------------------------------------------------------------------------ the target nets

def test_basic_nets_project_stage_1_like_paddleclas():
    """PaddleClas gives every stage's first block a projection: ResNet18/34 have a 1x1/1 64->64
    conv + BN in stage 1 (torchvision has none)."""
    for name in ("ResNet18", "ResNet34"):
        net = registry.get(name).build()
        conv, bn = net.layer1[0].downsample
        assert (conv.in_channels, conv.out_channels, conv.stride, conv.kernel_size) == (64, 64, (1, 1), (1, 1))
        assert isinstance(bn, nn.BatchNorm2d) and net.layer1[1].downsample is None


def test_vb_bottlenecks_stride_the_3x3_and_equal_torchvision():
    spec = registry.get("ResNet50")
    ours = spec.build().eval()
    assert ours.layer2[0].conv2.stride == (2, 2) and ours.layer2[0].conv1.stride == (1, 1)
    theirs = spec.torchvision().eval()
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(1, 3, 64, 80)
    with torch.no_grad():
        assert torch.equal(ours(x), theirs(x))


def paddle_avg_pool_same_ceil_exclusive(x: np.ndarray) -> np.ndarray:
    """Paddle AvgPool2D(2, 2, padding="SAME", ceil_mode=True, exclusive=True) as documented: "SAME"
    pads (out - 1) * 2 + 2 - size >= 0 at the end of each axis, out = ceil(size / 2); exclusive
    averages the input elements each window covers."""
    n, c, h, w = x.shape
    out = np.zeros((n, c, -(-h // 2), -(-w // 2)), x.dtype)
    for i in range(out.shape[2]):
        for j in range(out.shape[3]):
            out[:, :, i, j] = x[:, :, 2 * i:2 * i + 2, 2 * j:2 * j + 2].mean(axis=(2, 3))
    return out


def test_vd_projection_pool_is_ceil_mode_and_exclusive():
    net = registry.get("ResNet50_vd").build().eval()
    pool, conv, _ = net.layer3[0].downsample
    assert (pool.kernel_size, pool.stride, pool.ceil_mode, pool.count_include_pad) == (2, 2, True, False)
    assert conv.stride == (1, 1)
    x = torch.randn(1, 4, 9, 7)  # odd: the last window of each axis covers one row/column
    with torch.no_grad():
        got = pool(x).numpy()
    np.testing.assert_allclose(got, paddle_avg_pool_same_ceil_exclusive(x.numpy()), rtol=1e-6, atol=1e-7)
    assert np.array_equal(got[..., -1, -1], x.numpy()[..., -1, -1])
