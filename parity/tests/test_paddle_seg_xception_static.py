"""The static PaddleX 1.x / PaddleSeg 0.x DeepLabv3p-Xception65 ("fluid" layout) against a Paddle
oracle. No Paddle here runs the static program and PaddleSeg 2.8's DeepLabV3P is another head, so the
oracle is our own Paddle definition of the static net, written from PaddleX 1.x ``nets/segmentation/
deeplabv3p.py`` + ``nets/xception.py`` (= PaddleSeg 0.x ``deeplab.py`` / ``backbone/xception.py``):
PaddleSeg 2.8's Xception65_deeplab trunk (same strides, dilations and BN eps as the static one), the
decoder tapping entry block 2's second separable conv, and the static head from PaddleSeg 2.8's
bias-free ConvBNReLU layers (ReLU after the depthwise BNs, image pool first, fluid's inference dropout,
align_corners True). Seeded like every source, saved by paddle's legacy ``save_vars`` under the static
names, read back by our reader as a PaddleX link's directory would be. Small input (129x161, odd
sides): Xception65 is ~40M parameters."""
from __future__ import annotations

import copy
import dataclasses
import importlib.util

import numpy as np
import pytest
import torch

import converters
from converters import registry
from converters.frameworks import paddle_build_scope
from converters.paddle import seeded
from converters.paddle import segmentation as seg
from converters.samples import sample_photos
from parity.preprocess import preprocess
from parity.tests.test_paddle_classification import write_fluid_with_paddle

pytestmark = [pytest.mark.oracle,
              pytest.mark.skipif(importlib.util.find_spec("paddle") is None, reason="paddle is not installed")]

NAME = "DeepLabv3_Xception65"
SIZE = (129, 161)
TAP = "backbone.xception_65/entry_flow/block2._conv2"
# (oracle capture, target module): the decoder tap, the trunk's last strided block, the image pool, the
# ASPP projection (before the dropout), the decoder
PAIRS = ((TAP, "backbone.entry.1.sep2"), ("backbone._exit_flow_1", "backbone.exit1"), ("pool", "aspp.pool"),
         ("project", "aspp.project"), ("dec2_pw", "decoder.sep2"))
RATIOS = (6, 12, 18)
# Measured on this seeded net at 129x161: torch fp32 and Paddle fp32 are each up to ~6e-5 (relative to
# max |ref|) off our fp64 forward after the trunk's 65 layers (exit block 1: ~1.5e-5, the tap ~1e-6),
# so the two fp32 forwards differ by up to their sum (~1e-4): 2e-4 per layer, and both runtimes are
# also held to it against the fp64 forward.
TOL = 2e-4


def static_oracle(seed: int | None):
    """The static net as a paddle dygraph Layer; ``forward`` returns [logits] as PaddleSeg's."""
    from converters.frameworks import import_paddle, import_paddleseg
    paddle, paddleseg = import_paddle(), import_paddleseg()
    from paddleseg.models.layers import ConvBNReLU
    F = paddle.nn.functional

    def cbr(cin, cout, k=1, **kw):  # the static conv(..., bias_attr False) + bn_relu
        return ConvBNReLU(cin, cout, k, padding=kw.pop("padding", 0), bias_attr=False, **kw)

    class StaticDeepLabXception65(paddle.nn.Layer):
        def __init__(self):
            super().__init__()
            self.backbone = paddleseg.cvlibs.manager.BACKBONES["Xception65_deeplab"]()
            self.pool, self.aspp0 = cbr(2048, 256), cbr(2048, 256)
            for i, r in enumerate(RATIOS, 1):  # separate_conv(..., act=relu): ReLU after both BNs
                setattr(self, f"aspp{i}_dw", cbr(2048, 2048, 3, padding=r, dilation=r, groups=2048))
                setattr(self, f"aspp{i}_pw", cbr(2048, 256))
            self.project, self.reduce = cbr(5 * 256, 256), cbr(256, 48)
            self.dec1_dw, self.dec1_pw = cbr(304, 304, 3, padding=1, groups=304), cbr(304, 256)
            self.dec2_dw, self.dec2_pw = cbr(256, 256, 3, padding=1, groups=256), cbr(256, 256)
            self.logit = paddle.nn.Conv2D(256, 19, 1)
            self._low = []
            dict(self.named_sublayers())[TAP].register_forward_post_hook(self._keep_low)

        def _keep_low(self, _layer, _inputs, out) -> None:  # decode_points=2: block 2's results[1]
            self._low.append(out)

        def forward(self, x):
            self._low.clear()
            high = self.backbone(x)[-1]
            low = self._low[-1]

            def up(t, like):
                return F.interpolate(t, size=like.shape[2:], mode="bilinear", align_corners=True)

            branches = [up(self.pool(high.mean(axis=[2, 3], keepdim=True)), high), self.aspp0(high)]
            branches += [getattr(self, f"aspp{i}_pw")(getattr(self, f"aspp{i}_dw")(high)) for i in (1, 2, 3)]
            y = self.project(paddle.concat(branches, axis=1)) * 0.1  # fluid dropout(0.9), downgrade_in_infer
            low = self.reduce(low)
            y = paddle.concat([up(y, low), low], axis=1)
            y = self.dec2_pw(self.dec2_dw(self.dec1_pw(self.dec1_dw(y))))
            return [up(self.logit(y), x)]

    with paddle_build_scope(paddle, seed):
        net = StaticDeepLabXception65()
    net.eval()
    return net


def oracle_to_static() -> dict[str, str]:
    """{oracle state-dict key: static variable name}, through the target names both tables share."""
    static = {t: s for s, t, _ in [*seg.xception65_fluid(), *seg.deeplab_head_fluid()]}
    ours = [(s, t) for s, t, _ in seg.xception65_dygraph()]
    heads = [("pool", "aspp.pool"), ("aspp0", "aspp.branches.0"), ("project", "aspp.project"),
             ("reduce", "decoder.reduce")]
    heads += [(f"aspp{i}_{p}", f"aspp.branches.{i}.{part}") for i in (1, 2, 3)
              for p, part in (("dw", "depthwise"), ("pw", "pointwise"))]
    heads += [(f"dec{i}_{p}", f"decoder.sep{i}.{part}") for i in (1, 2)
              for p, part in (("dw", "depthwise"), ("pw", "pointwise"))]
    for src, tgt in heads:
        ours += [(s, t) for s, t, _ in seg.dy_conv_bn(src, tgt, False)]
    ours += [("logit.weight", "logit.weight"), ("logit.bias", "logit.bias")]
    return {s: static[t] for s, t in ours}


@pytest.fixture(scope="module")
def static_pair(tmp_path_factory):
    """(seeded oracle net, our conversion of its fluid directory)."""
    from converters.frameworks import import_paddle
    paddle = import_paddle()
    tmp = tmp_path_factory.mktemp("static_xception")
    spec = dataclasses.replace(registry.get(NAME), name=f"{NAME}-static", source_net=static_oracle,
                               seed_size=SIZE)
    pdparams = seeded.seeded_source(spec, 0, tmp)
    net = static_oracle(None)
    net.set_state_dict(paddle.load(str(pdparams)))
    table = oracle_to_static()
    assert set(table) == set(net.state_dict()), "the name table covers the oracle's every tensor"
    result = converters.convert(NAME, weights=write_fluid_with_paddle(pdparams, table, tmp / "fluid"))
    return net, result


def _capture(named, register, run, paths) -> dict[str, np.ndarray]:
    got, hooks = {}, []

    def keep(path):
        def hook(_layer, _inputs, out) -> None:  # must return None: both frameworks replace the output otherwise
            got.setdefault(path, out.numpy())
        return hook

    for path in paths:
        hooks.append(register(named(path), keep(path)))
    try:
        got["logits"] = run()
    finally:
        for h in hooks:
            h.remove()
    return got


def test_static_net_matches_the_paddle_oracle_on_a_photograph(static_pair):
    net, result = static_pair
    spec, module = result.spec, result.module
    assert result.layout == "fluid" and module.cfg.numerics == "paddlex"
    assert all(row.status == "mapped" for row in result.mapping if row.source)
    x = preprocess(sample_photos()[0][1], dataclasses.replace(spec.preprocess, size=SIZE), "mxnet").numpy()[None]
    layers = dict(net.named_sublayers())
    ref = _capture(layers.__getitem__, lambda m, h: m.register_forward_post_hook(h),
                   lambda: seg.run_logits(net, x), [p for p, _ in PAIRS])

    def run_torch():
        with torch.no_grad():
            return module(torch.from_numpy(x)).numpy()

    got = _capture(module.get_submodule, lambda m, h: m.register_forward_hook(h), run_torch, [p for _, p in PAIRS])
    exact = copy.deepcopy(module).double()
    with torch.no_grad():
        f64 = _capture(exact.get_submodule, lambda m, h: m.register_forward_hook(h),
                       lambda: exact(torch.from_numpy(x.astype(np.float64))).numpy(), [p for _, p in PAIRS])
    errors, floor = {}, {}
    for src, tgt in (*PAIRS, ("logits", "logits")):
        r, g, e = ref[src], got[tgt], f64[tgt]
        assert r.shape == g.shape == e.shape, (src, r.shape, g.shape)
        errors[tgt] = float(np.abs(g - r).max() / np.abs(r).max())
        floor[tgt] = max(float(np.abs(a - e).max() / np.abs(e).max()) for a in (r, g))
    print(f"static parity at {x.shape[2:]}, max abs err / max |ref|:", errors, "worst fp32 vs fp64:", floor)
    assert ref[TAP].shape[1:] == (256, 33, 41)  # 1/4 of 129x161, ceil-halved twice
    assert all(e <= TOL for e in errors.values()), errors
    assert all(e <= TOL for e in floor.values()), floor
    assert (got["logits"].argmax(1) == ref["logits"].argmax(1)).mean() > 0.999
    assert len(np.unique(ref["logits"].argmax(1))) > 1  # the seeded net does not predict one class everywhere
