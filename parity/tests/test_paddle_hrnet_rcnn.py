"""PaddleX FasterRCNN_HRNet_W18_FPN against PaddleDetection 2.6 itself: the name tables (both layouts)
fit ppdet's state dict; in CI, HRNet + HRFPN (the part this model adds to the Faster R-CNN family)
against ppdet's backbone and neck on a small input, from a .pdparams and from a fluid directory
written by paddle (then against ppdet's HRFPN run with the static net's align_corners True); slow:
the whole detector on a photograph, RoIs replayed, layer pairs within tolerance and the detections
identical."""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from converters import registry
from converters.paddle import hrnet_rcnn, ppcls
from converters.samples import sample_photos
from parity.verify import verify

pytestmark = [pytest.mark.oracle,
              pytest.mark.skipif(importlib.util.find_spec("paddle") is None, reason="paddle is not installed")]

NAME = "FasterRCNN_HRNet_W18_FPN"


@pytest.fixture(scope="module")
def source():
    return registry.get(NAME).source_net(0)


def test_name_table_is_ppdet_s_state_dict(source):
    spec = registry.get(NAME)
    state = source.state_dict()
    table = {s: t for s, t, _ in hrnet_rcnn.dygraph()}
    assert sorted(table) == sorted(state)
    assert sorted(ppcls.static_names(NAME, source).values()) == sorted(state)  # the static table, 1:1
    target = spec.build().state_dict()
    for key, value in state.items():
        assert target[table[key]].numel() == int(np.prod(value.shape)), key


def _static_layout(state: dict, tmp_path):
    """The values as PaddleX 1.x stores them (background class first, 4 background box rows), written
    by paddle's save_vars under the static names."""
    from converters.frameworks import import_paddle
    from parity.tests.test_paddle_classification import write_fluid_with_paddle
    paddle = import_paddle()
    state = dict(state)
    for k in ("bbox_head.bbox_score.weight", "bbox_head.bbox_score.bias"):
        state[k] = np.roll(state[k], 1, axis=-1)
    for k in ("bbox_head.bbox_delta.weight", "bbox_head.bbox_delta.bias"):
        state[k] = np.concatenate([np.full(state[k].shape[:-1] + (4,), 3.0, np.float32), state[k]], axis=-1)
    paddle.save(state, str(tmp_path / "static_values.pdparams"))
    return write_fluid_with_paddle(tmp_path / "static_values.pdparams", hrnet_rcnn.fluid_names(),
                                   tmp_path / "faster_rcnn_hrnetv2p_w18_1x")


@pytest.mark.parametrize("layout", ["dygraph", "fluid"])
def test_backbone_and_hrfpn_match_ppdet_s(source, tmp_path, layout, monkeypatch):
    """ppdet's HRNet + HRFPN (seed 0, BN statistics randomised so every layer matters) and ours with
    the converted weights: P2..P6 within the per-layer bar on a 96x160 input. "fluid": the weights
    from a static directory, our target in the "paddlex" numerics, ppdet's HRFPN run with Paddle's
    bilinear at align_corners True (the static HRFPN's fluid resize_bilinear default)."""
    import converters
    from converters.frameworks import import_paddle
    paddle = import_paddle()
    rng = np.random.default_rng(1)
    state = {k: v.numpy() for k, v in source.state_dict().items()}
    for k, v in state.items():
        if k.endswith("_variance"):
            state[k] = rng.uniform(0.5, 2.0, v.shape).astype(np.float32)
        elif k.endswith("_mean"):
            state[k] = rng.normal(0.0, 0.2, v.shape).astype(np.float32)
    source.set_state_dict(state)
    if layout == "fluid":
        from ppdet.modeling.necks import hrfpn as ppdet_hrfpn
        functional = paddle.nn.functional

        class Corners:  # ppdet's hrfpn module ``F``: interpolate with align_corners True, the rest as is
            def __getattr__(self, name):
                return getattr(functional, name)

            @staticmethod
            def interpolate(x, *args, **kwargs):
                return functional.interpolate(x, *args, **{**kwargs, "align_corners": True})

        monkeypatch.setattr(ppdet_hrfpn, "F", Corners())
        result = converters.convert(NAME, weights=_static_layout(state, tmp_path))
        assert result.layout == "fluid" and result.module.fpn.align_corners
    else:
        paddle.save(source.state_dict(), str(tmp_path / "m.pdparams"))
        result = converters.convert(NAME, weights=tmp_path / "m.pdparams")
    net = result.module
    x = rng.standard_normal((1, 3, 96, 160)).astype(np.float32)
    with paddle.no_grad():
        ref = source.neck(source.backbone({"image": paddle.to_tensor(x)}))
    with torch.no_grad():
        got = net.features(torch.from_numpy(x))
    assert len(got) == len(ref) == 5
    for level, (g, r) in enumerate(zip(got, ref)):
        r = r.numpy()
        assert g.shape == r.shape, level
        assert np.abs(g.numpy() - r).max() <= registry.get(NAME).tolerance * np.abs(r).max(), level


@pytest.mark.slow
def test_parity_on_a_photograph(converted):
    """Seeded weights, one photograph at 384x640 (the family's CI size; 800x1333 is ~4x the cost):
    every layer pair within tolerance, RoIs replayed into ``collect``, detections identical."""
    r = verify(NAME, result=converted(NAME), images=sample_photos()[:1], size=(384, 640))
    assert r.passed, r.layers.first_divergent or r.detections
    assert r.detections.reference > 20 and r.detections.identical == r.detections.reference
    assert r.replayed == ["collect"]
