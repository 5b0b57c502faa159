"""PaddleX segmentation against PaddleSeg 2.8 itself (paddleseg.models, built by ``source_net``):
the dygraph rule tables against the real nets' state dicts, parity on photographs with the per-pixel
argmax check, and a planted error found at the layer it touches. The "fluid" layouts hold the
static PaddleX 1.x nets, which PaddleSeg 2.8 does not define; the static UNet differs from
PaddleSeg's only in conv biases and align_corners, so it is checked against PaddleSeg's UNet run
with align_corners True and zero biases; the static HRNet_W18 (PaddleX 1.x) against PaddleSeg's FCN
with its own switches set as the static net's (symmetric padding, no head biases, align_corners True)
and Paddle's align_mode-1 bilinear in the fusions. Static Fast-SCNN: tests/test_paddle_seg.py only.
HRNet_W18 (FCN): its 512x512 sweep is slow; CI runs it at 128x160 and at 100x140."""
from __future__ import annotations

import copy
import dataclasses
import importlib.util

import numpy as np
import pytest
import torch

import converters
from converters import registry
from converters.paddle import hrnet_seg
from converters.paddle import segmentation as seg
from converters.samples import sample_photos
from converters.seeding import seeded_source
from parity.preprocess import preprocess
from parity.verify import verify
from parity.tests.test_paddle_classification import write_fluid_with_paddle

pytestmark = [pytest.mark.oracle,
              pytest.mark.skipif(importlib.util.find_spec("paddle") is None, reason="paddle is not installed")]

SMALL = (128, 160)  # rectangular: catches a transposed resize; 1/32 of it still has 4x5 cells
FAST = ["FastSCNN"]
SLOW = ["DeepLabv3_MobileNetV2_x1.0", "UNet", "DeepLabv3_Xception65"]  # + CI_SMALL's sweeps
# CI: at SMALL only (their presets' sweeps, 769x769 and 512x512, are parity-full's)
CI_SMALL = ["DeepLabv3_MobileNetV3_large_x1_0_ssld", "HRNet_W18"]
ODD = (100, 140)  # not multiples of 32: HRNet's maps 25x35, 13x18, 7x9 (not halves), fused by resizing


@pytest.mark.parametrize("name", FAST + CI_SMALL + SLOW)
def test_dygraph_rules_fit_paddleseg_s_net(name):
    """Every tensor of PaddleSeg's own net is matched by exactly one rule or ignore, and each rule
    sends it to a target tensor of its shape."""
    spec = registry.get(name)
    state = spec.source_net(None).state_dict()
    target = spec.build().state_dict()
    sent = set()
    for key, tensor in state.items():
        hits = [r for r in spec.rules["dygraph"] if r.apply(key)]
        assert len(hits) == 1, (key, hits)
        if hasattr(hits[0], "repl"):
            tname = hits[0].apply(key)
            assert tuple(target[tname].shape) == tuple(tensor.shape), key
            sent.add(tname)
    assert sent == {k for k in target if not k.endswith("num_batches_tracked")}


def _check(report) -> None:
    assert report.passed, report.layers.first_divergent
    assert report.layers.diffs and all(d.passed for d in report.layers.diffs)
    assert report.argmax["unexplained"] == 0 and report.argmax["identical"] > 0.99 * report.argmax["count"]


@pytest.mark.parametrize("name", FAST)
def test_parity_on_photographs(name, parity_report):
    _check(parity_report(name))  # the registry sweep's report (parity/conftest.py): computed once


@pytest.mark.slow
@pytest.mark.parametrize("name", SLOW + CI_SMALL)
def test_parity_on_photographs_slow(name, converted):
    _check(verify(name, result=converted(name), images=sample_photos()[:2]))


@pytest.mark.parametrize("name", FAST + CI_SMALL + [pytest.param(n, marks=pytest.mark.slow) for n in SLOW])
def test_parity_on_a_rectangular_input(name, converted):
    _check(verify(name, result=converted(name), images=sample_photos()[:1], size=SMALL))


def test_hrnet_parity_on_sides_not_multiples_of_32(converted):
    """Strided convs on even and odd maps (Paddle's "same": the pad after on even ones, symmetric on
    odd ones) and fusion resized to each branch's own size, which is not a factor of 2 here."""
    result = converted("HRNet_W18")
    _check(verify("HRNet_W18", result=result, images=sample_photos()[1:2], size=ODD))
    # and each switch matters: PaddleClas's padding, or its nearest fusion, diverges from PaddleSeg
    from converters.arch.hrnet import SEG_W18, HRNetFCN
    for switch in ({"same_pad": False}, {"fuse_up": "nearest"}):
        other = HRNetFCN(19, dataclasses.replace(SEG_W18, **switch)).eval()
        other.load_state_dict(result.module.state_dict())
        size = SMALL if "fuse_up" in switch else ODD  # nearest 2x needs exact halves
        r = verify("HRNet_W18", result=dataclasses.replace(result, module=other), images=sample_photos()[1:2],
                   size=size)
        assert not r.passed, switch


@pytest.mark.parametrize("name,module,attr,source", [
    ("FastSCNN", "ppm.project.conv", "weight", "global_feature_extractor.ppm.conv_bn_relu2._conv"),
    pytest.param("DeepLabv3_MobileNetV2_x1.0", "aspp.branches.2.depthwise.bn", "running_var",
                 "head.aspp.aspp_blocks.2.depthwise_conv._batch_norm", marks=pytest.mark.slow),
    pytest.param("UNet", "up.1.0.bn", "bias", "decode.up_sample_list.1.double_conv.0._batch_norm",
                 marks=pytest.mark.slow),
    ("DeepLabv3_MobileNetV3_large_x1_0_ssld", "backbone.blocks.13.se.expand", "weight",
     "backbone.blocks.13.mid_se.conv2"),  # a dilated block's squeeze-excite
    ("HRNet_W18", "backbone.stage3.2.fuse.2.0.1.conv", "weight",
     "backbone.st3.stage_st3_3.fuse_func.residual_st3_3_layer_3_1_2._conv"),  # a fusion chain's last step
])  # CI: FastSCNN, MobileNetV3 and HRNet_W18 at SMALL (the other models' sweeps are parity-full only)
def test_a_planted_error_is_the_first_divergence(name, module, attr, source, converted):
    """1% on one tensor: every pair before it passes, that layer is the first divergence."""
    result = converted(name)
    bad = copy.deepcopy(result.module)
    with torch.no_grad():
        getattr(bad.get_submodule(module), attr).mul_(1.01)
    r = verify(name, result=dataclasses.replace(result, module=bad), images=sample_photos()[:1], size=SMALL)
    assert not r.passed and r.layers.first_divergent.name == module
    assert r.layers.first_divergent.source == source
    assert all(d.passed for d in r.layers.diffs[: r.layers.diffs.index(r.layers.first_divergent)])


def test_static_unet_is_paddleseg_s_with_align_corners_and_no_biases(tmp_path):
    """The seeded PaddleSeg 2.8 UNet with every conv bias zeroed, run by paddle with align_corners
    True, written as a fluid directory under the static names: our "paddlex" UNet gives its logits."""
    from converters.frameworks import import_paddle
    paddle = import_paddle()
    spec = registry.get("UNet")
    net = seg._build_paddleseg("UNet", None, num_classes=81, align_corners=True)
    state = {k: v.numpy() for k, v in paddle.load(str(seeded_source(spec, 0))).items()}
    state = {k: np.zeros_like(v) if k.endswith((".bias", "cls.bias")) and "_batch_norm" not in k else v
             for k, v in state.items()}
    net.set_state_dict(state)
    paddle.save(net.state_dict(), str(tmp_path / "zero_bias.pdparams"))
    by_target = {t: s for s, t, _ in seg.unet_dygraph()}
    table = {by_target[t]: name for name, t, _ in seg.unet_fluid()}  # {dygraph key: static name}
    write_fluid_with_paddle(tmp_path / "zero_bias.pdparams", table, tmp_path / "unet")
    result = converters.convert("UNet", weights=tmp_path / "unet")
    assert result.layout == "fluid" and result.module.cfg.numerics == "paddlex"
    x = preprocess(sample_photos()[0][1], dataclasses.replace(spec.preprocess, size=SMALL), "mxnet").numpy()[None]
    ref = seg.run_logits(net, x)
    with torch.no_grad():
        got = result.module(torch.from_numpy(x)).numpy()
    scale = float(np.abs(ref).max())
    assert np.abs(got - ref).max() <= spec.tolerance * scale  # the registry's per-layer bar, on the output
    assert (got.argmax(1) == ref.argmax(1)).mean() > 0.999
    # and the switch matters: PaddleSeg's align_corners False net differs from it
    other = seg._build_paddleseg("UNet", None, num_classes=81)
    other.set_state_dict(state)
    assert np.abs(seg.run_logits(other, x) - ref).max() > 100 * spec.tolerance * scale


def test_hrnet_eval_same_metrics_in_paddle_and_torch(converted, tmp_path):
    """`zooport eval` on a tiny Cityscapes set (two frames at the 512x512 preset, ~7 s): paddle's
    PaddleSeg net and the converted module give the same mIoU up to fp32 logit ties."""
    from parity.evaluate import evaluate
    from parity.fixtures import build_tiny
    data = build_tiny("cityscapes", tmp_path / "cityscapes", 2)
    report = evaluate(converted("HRNet_W18"), data, ["cv2-exact"], ["torch", "paddle"], progress=False)
    rows = {r.framework: r.to_dict()["metrics"] for r in report.rows}
    assert report.dataset["kind"] == "cityscapes" and rows["paddle"]["pixAcc"] > 0
    # scored as PaddleSeg scores (logits resized to the full frame, then argmax): near-tied logits
    # interpolate into ties over many pixels (measured: pixAcc 5.1105 vs 5.1099, 6e-6 of the
    # pixels); 1e-4 of the pixels (0.01 points), the bound of test_paddle_det_seg_evaluate.py
    for name in ("pixAcc", "mIoU"):
        assert abs(rows["torch"][name] - rows["paddle"][name]) <= 0.01, (name, rows["torch"][name], rows["paddle"][name])


def _static_hrnet_fcn(paddle, align_mode_1: bool):
    """PaddleSeg 2.8's FCN(HRNet_W18) with PaddleX 1.x's static switches: padding_same False (pads
    (k - 1) // 2), bias False (head conv and classifier), align_corners True (concat and logits);
    with ``align_mode_1`` each fusion's resize is Paddle's bilinear with align_corners False and
    align_mode 1, the static net's (fluid.layers.resize_bilinear(..., align_corners=False, align_mode=1))."""
    from converters.frameworks import import_paddleseg
    paddleseg = import_paddleseg()
    from paddleseg.models.backbones import hrnet as ps_hrnet
    functional = paddle.nn.functional

    class AlignMode1:  # the module's ``F`` while a FuseLayers runs: only interpolate changes
        def __getattr__(self, name):
            return getattr(functional, name)

        @staticmethod
        def interpolate(x, size=None, mode="nearest", align_corners=False, **_):
            return functional.interpolate(x, size, mode=mode, align_corners=False, align_mode=1)

    class StaticFuse(ps_hrnet.FuseLayers):
        def forward(self, x):
            ps_hrnet.F = AlignMode1()
            try:
                return super().forward(x)
            finally:
                ps_hrnet.F = functional

    with paddle.utils.unique_name.guard():
        backbone = ps_hrnet.HRNet_W18(padding_same=False, align_corners=True)
        if align_mode_1:
            for layer in backbone.sublayers():
                if type(layer) is ps_hrnet.FuseLayers:
                    layer.__class__ = StaticFuse
        net = paddleseg.models.FCN(19, backbone, align_corners=True, bias=False)
    net.eval()
    return net


def test_static_hrnet_is_paddleseg_s_with_the_static_switches(tmp_path):
    """The seeded HRNet_W18 (head biases dropped) in PaddleSeg's net set up as PaddleX 1.x's static one
    (_static_hrnet_fcn), written by paddle as a fluid directory under the static names: our "paddlex"
    HRNetFCN gives its logits at SMALL and at ODD (maps that are not halves: the resize ratios)."""
    from converters.frameworks import import_paddle
    paddle = import_paddle()
    spec = registry.get("HRNet_W18")
    state = {k: v for k, v in paddle.load(str(seeded_source(spec, 0))).items()
             if k not in ("head.conv_1._conv.bias", "head.cls.bias")}
    net, plain = _static_hrnet_fcn(paddle, True), _static_hrnet_fcn(paddle, False)
    for n in (net, plain):
        missing, unexpected = n.set_state_dict(state)
        assert not missing and not unexpected
    paddle.save(net.state_dict(), str(tmp_path / "static.pdparams"))
    by_target = {t: s for s, t, _ in hrnet_seg.fcn_fluid()}
    table = {s: by_target[t] for s, t, _ in hrnet_seg.fcn_dygraph() if t in by_target}
    assert len(table) == len(state) == 1531
    write_fluid_with_paddle(tmp_path / "static.pdparams", table, tmp_path / "hrnet_w18_bn_cityscapes")
    result = converters.convert("HRNet_W18", weights=tmp_path / "hrnet_w18_bn_cityscapes")
    assert result.layout == "fluid" and result.module.numerics == "paddlex"
    for size in (SMALL, ODD):
        x = preprocess(sample_photos()[0][1], dataclasses.replace(spec.preprocess, size=size), "mxnet").numpy()[None]
        ref = seg.run_logits(net, x)
        with torch.no_grad():
            got = result.module(torch.from_numpy(x)).numpy()
        scale = float(np.abs(ref).max())
        assert got.shape == ref.shape == (1, 19, *size)
        assert np.abs(got - ref).max() <= spec.tolerance * scale, (size, np.abs(got - ref).max() / scale)
        assert (got.argmax(1) == ref.argmax(1)).mean() > 0.999
        # and the fusion's align_mode matters: PaddleSeg's half-pixel resize differs from it
        assert np.abs(seg.run_logits(plain, x) - ref).max() > 100 * spec.tolerance * scale
