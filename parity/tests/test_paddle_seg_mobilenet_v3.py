"""The static PaddleX 1.x / PaddleSeg 0.x DeepLabv3p-MobileNetV3 ("fluid" layout) against a Paddle
oracle. No Paddle here runs the static program and PaddleSeg 2.8 has no such net, so the oracle is
our own Paddle definition of it, written from PaddleSeg 0.x's ``deeplab.py`` / ``mobilenet_v3.py``
and built from PaddleSeg 2.8's MobileNetV3 layers (its ``MobileNetV3`` class on the halved static
table, its ``ConvBNLayer``): paddle's own conv, BN, hardswish, hard_sigmoid, pool and resize ops.
It is seeded like every source, saved by paddle's legacy ``save_vars`` under the static names, and
read back by our reader as a PaddleX link's directory would be."""
from __future__ import annotations

import dataclasses
import importlib.util

import numpy as np
import pytest
import torch

import converters
from converters import registry
from converters.arch import deeplab_mobilenet_v3 as arch
from converters.frameworks import paddle_build_scope
from converters.paddle import seeded
from converters.paddle import seg_mobilenet_v3 as rules
from converters.paddle.segmentation import dy_conv_bn, run_logits
from converters.samples import sample_photos
from parity.preprocess import preprocess
from parity.tests.test_paddle_classification import write_fluid_with_paddle

pytestmark = [pytest.mark.oracle,
              pytest.mark.skipif(importlib.util.find_spec("paddle") is None, reason="paddle is not installed")]

NAME = "DeepLabv3_MobileNetV3_large_x1_0_ssld"
# (oracle capture, target module): the decoder tap, the trunk's end, the gated encoder's branch
PAIRS = (("backbone.blocks.5.bottleneck_conv", "backbone.blocks.5.dw"), ("conv_last", "backbone.last"),
         ("aspp0", "head.aspp0"), ("merge", "head.merge"))


def static_oracle(seed: int | None):
    """PaddleSeg 0.x's static net as a paddle dygraph Layer; ``forward`` returns [logits] as PaddleSeg's."""
    from converters.frameworks import import_paddle, import_paddleseg
    paddle, _ = import_paddle(), import_paddleseg()
    from paddleseg.models.backbones import mobilenetv3 as ps
    F = paddle.nn.functional

    class StaticDeepLabMobileNetV3(paddle.nn.Layer):
        def __init__(self):
            super().__init__()
            table = [[b.kernel, b.expand, b.out, b.se, b.act, b.stride] for b in arch.STATIC_LARGE]
            self.backbone = ps.MobileNetV3(table, [], out_index=[len(table) - 1])
            self.conv_last = ps.ConvBNLayer(80, arch.STATIC_LAST, 1, 1, 0, act="hardswish")
            self.pool = paddle.nn.Conv2D(arch.STATIC_LAST, arch.STATIC_CHANNELS, 1, bias_attr=False)
            self.aspp0 = ps.ConvBNLayer(arch.STATIC_LAST, arch.STATIC_CHANNELS, 1, 1, 0, act="relu")
            self.project = paddle.nn.Conv2D(arch.STATIC_CHANNELS, 19, 1, bias_attr=False)
            self.merge = paddle.nn.Conv2D(120, 19, 1, bias_attr=False)
            self._low = []
            self.backbone.blocks[arch.STATIC_LOW].bottleneck_conv.register_forward_post_hook(self._keep_low)

        def _keep_low(self, _layer, _inputs, out) -> None:  # the decoder tap: block 5's depthwise output
            self._low.append(out)

        def forward(self, x):
            self._low.clear()
            high = self.conv_last(self.backbone(x)[-1])
            low = self._low[-1]
            gate = F.avg_pool2d(high, kernel_size=(25, 25), stride=arch.POOL_STRIDE, padding=0)
            gate = F.relu6(self.pool(gate) + 3.0) * 0.16667
            gate = F.interpolate(gate, size=high.shape[2:], mode="bilinear", align_corners=True)
            y = F.interpolate(self.aspp0(high) * gate, size=low.shape[2:], mode="bilinear", align_corners=True)
            y = self.project(y) + self.merge(low)
            return [F.interpolate(y, size=x.shape[2:], mode="bilinear", align_corners=True)]

    with paddle_build_scope(paddle, seed):
        net = StaticDeepLabMobileNetV3()
    net.eval()
    return net


def oracle_to_static() -> dict[str, str]:
    """{oracle state-dict key: static variable name}, through the target names both tables share."""
    static = {t: s for s, t, _ in [*rules.trunk_fluid(), *rules.lite_head_fluid()]}
    ours = [(s, t) for s, t, _ in rules.trunk_dygraph()]
    ours += [(s, t) for s, t, _ in dy_conv_bn("conv_last", "backbone.last", False, conv="conv", bn="bn")]
    ours += [(s, t) for s, t, _ in dy_conv_bn("aspp0", "head.aspp0", False, conv="conv", bn="bn")]
    ours += [(f"{m}.weight", f"head.{m}.weight") for m in ("pool", "project", "merge")]
    return {s: static[t] for s, t in ours}


@pytest.fixture(scope="module")
def static_pair(tmp_path_factory):
    """(seeded oracle net, our conversion of its fluid directory)."""
    from converters.frameworks import import_paddle
    paddle = import_paddle()
    tmp = tmp_path_factory.mktemp("static_mnv3")
    # calibrated at the preset's 769x769: the static net's pool needs it
    spec = dataclasses.replace(registry.get(NAME), name=f"{NAME}-static", source_net=static_oracle, seed_size=None)
    pdparams = seeded.seeded_source(spec, 0, tmp)
    net = static_oracle(None)
    net.set_state_dict(paddle.load(str(pdparams)))
    table = oracle_to_static()
    assert set(table) == set(net.state_dict()), "the name table covers the oracle's every tensor"
    result = converters.convert(NAME, weights=write_fluid_with_paddle(pdparams, table, tmp / "fluid"))
    return net, result


def _capture_paddle(net, x: np.ndarray) -> dict[str, np.ndarray]:
    got, hooks = {}, []

    def keep(path):
        def hook(_layer, _inputs, out) -> None:  # must return None: paddle replaces the output otherwise
            got.setdefault(path, out.numpy())
        return hook

    for path, _ in PAIRS:
        hooks.append(dict(net.named_sublayers())[path].register_forward_post_hook(keep(path)))
    try:
        got["logits"] = run_logits(net, x)
    finally:
        for h in hooks:
            h.remove()
    return got


def _capture_torch(module, x: np.ndarray) -> dict[str, np.ndarray]:
    got, hooks = {}, []

    def keep(path):
        def hook(_module, _inputs, out) -> None:  # None: torch too would replace the output
            got.setdefault(path, out.numpy())
        return hook

    for _, path in PAIRS:
        hooks.append(module.get_submodule(path).register_forward_hook(keep(path)))
    try:
        with torch.no_grad():
            got["logits"] = module(torch.from_numpy(x)).numpy()
    finally:
        for h in hooks:
            h.remove()
    return got


# the preset's 769x769 pools the 25x25 map to one cell; 1025x1281 (odd: ceil-halving) to 3x4 cells,
# which the (4, 5) stride and the align_corners resize of the gate then act on
@pytest.mark.parametrize("size", [None, (1025, 1281)])
def test_static_net_matches_the_paddle_oracle_on_a_photograph(static_pair, size):
    net, result = static_pair
    spec = result.spec
    assert result.layout == "fluid" and result.module.cfg.numerics == "paddlex"
    assert all(row.status == "mapped" for row in result.mapping if row.source)
    pre = dataclasses.replace(spec.preprocess, size=size) if size else spec.preprocess
    x = preprocess(sample_photos()[0][1], pre, "mxnet").numpy()[None]
    ref, got = _capture_paddle(net, x), _capture_torch(result.module, x)
    errors = {}
    for src, tgt in (*PAIRS, ("logits", "logits")):
        r, g = ref[src], got[tgt]
        assert r.shape == g.shape, (src, r.shape, g.shape)
        errors[tgt] = float(np.abs(g - r).max() / np.abs(r).max())
    print(f"static parity at {x.shape[2:]}, max abs err / max |ref|:", errors)
    assert all(e <= spec.tolerance for e in errors.values()), errors
    assert (got["logits"].argmax(1) == ref["logits"].argmax(1)).mean() > 0.999
    assert len(np.unique(ref["logits"].argmax(1))) > 1  # the seeded net does not predict one class everywhere
