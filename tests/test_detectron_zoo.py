"""Detectron .pkl -> torchvision: the reader, the naming scheme, exact landing of every blob.

Fixtures are synthetic Detectron checkpoints (converters.detectron.seeded): Detectron's blob
names for each config, seeded values, protocol-2 pickles with momentum blobs and scalars, read
back by our reader. Caffe2 cannot be installed, so no source forward pass exists; parity is exact
transfer + the per-op tests (test_detectron_ops.py) + deterministic end-to-end outputs."""
from __future__ import annotations

import pickle
import re

import numpy as np
import pytest
import torch

from converters import registry
from converters.detectron import seeded
from converters.detectron._names import Layout, blobs
from converters.detectron.common import CONFIGS, PIXEL_MEANS, detectron_blob
from converters.engine import map_tensors
from converters.errors import MappingError, ReaderError
from converters.io import detectron_pkl
from converters.pipeline import convert, rules_for
from converters.samples import sample_photos
from tests import fuzz_seeds

DETECTRON = [s.name for s in registry.specs() if s.framework == "detectron"]
R50 = ["R-50", "e2e_faster_rcnn_R-50-FPN_1x", "e2e_mask_rcnn_R-50-FPN_1x", "e2e_keypoint_rcnn_R-50-FPN_1x",
       "e2e_faster_rcnn_R-50-C4_1x", "retinanet_R-50-FPN_1x"]


# ------------------------------------------------------------------------------- reader

def test_reads_a_python2_pickle(tmp_path):
    """{"blobs": ...} exactly as Python 2's cPickle writes it (str data, SHORT_BINSTRING keys)."""
    path = tmp_path / "model_final.pkl"
    path.write_bytes(fuzz_seeds.pkl_py2_seed().data)
    got = detectron_pkl.read_pkl(path)
    want = fuzz_seeds.detectron_state()["blobs"]
    assert list(got) == list(want) and all(np.array_equal(got[k], want[k]) for k in want)


def test_bare_dict_scalars_and_cfg(tmp_path):
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    bare = tmp_path / "R-50.pkl"
    bare.write_bytes(pickle.dumps({"conv1_w": a, "pred_b": a[0]}, protocol=2))
    assert list(detectron_pkl.read_pkl(bare)) == ["conv1_w", "pred_b"] and detectron_pkl.read_cfg(bare) is None
    full = tmp_path / "model_final.pkl"
    full.write_bytes(pickle.dumps({"blobs": {"x_w": a, "lr": np.float32(0.02), "iter": 7}, "cfg": "MODEL: {}"},
                                  protocol=2))
    got = detectron_pkl.read_pkl(full)
    assert got["lr"].shape == () and got["lr"].dtype == np.float32 and int(got["iter"]) == 7
    assert detectron_pkl.read_cfg(full) == "MODEL: {}"


@pytest.mark.parametrize("obj, match", [
    ([1, 2], "not a Detectron weights dict"),
    ({"blobs": [1]}, "'blobs' is a list"),
    ({"blobs": {"a": np.zeros(2)}, "extra": 1}, "unexpected top-level key"),
    ({"blobs": {"a": "text"}}, r"blob is a str.*'a'"),
    ({"blobs": {}}, "no blobs"),
    ({"blobs": {"a": np.array(["x"])}}, "not numeric"),
])
def test_malformed_files_are_one_line_errors(tmp_path, obj, match):
    path = tmp_path / "bad.pkl"
    path.write_bytes(pickle.dumps(obj, protocol=2))
    with pytest.raises(ReaderError, match=match) as exc:
        detectron_pkl.read_pkl(path)
    assert str(path) in str(exc.value) and "\n" not in str(exc.value)


class _Touch:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        import os
        return os.system, (f"touch {self.path}",)


def test_code_running_pickle_refused_before_it_runs(tmp_path):
    canary = tmp_path / "canary"
    path = tmp_path / "model_final.pkl"
    path.write_bytes(pickle.dumps({"blobs": {"conv1_w": _Touch(canary)}}, protocol=2))
    with pytest.raises(ReaderError, match=r"global (posix|os)\.system"):
        detectron_pkl.read_pkl(path)
    assert not canary.exists()


# ------------------------------------------------------------------------------- naming scheme

ISSUE_NAMES = {  # names the issue lists, by config
    "e2e_faster_rcnn_R-50-FPN_1x": ["conv1_w", "res_conv1_bn_s", "res2_0_branch2a_w", "res2_0_branch1_bn_b",
                                    "fpn_inner_res5_2_sum_w", "fpn_inner_res4_5_sum_lateral_w", "fpn_res2_2_sum_w",
                                    "conv_rpn_fpn2_w", "rpn_cls_logits_fpn2_w", "rpn_bbox_pred_fpn2_w", "fc6_w",
                                    "fc7_w", "cls_score_w", "bbox_pred_w"],
    "e2e_mask_rcnn_R-50-FPN_1x": ["_[mask]_fcn1_w", "conv5_mask_w", "mask_fcn_logits_w"],
    "e2e_keypoint_rcnn_R-50-FPN_1x": ["conv_fcn1_w", "kps_score_lowres_w"],
    "retinanet_R-50-FPN_1x": ["retnet_cls_conv_n0_fpn3_w", "retnet_cls_pred_fpn3_w", "fpn_6_w", "fpn_7_w"],
    "e2e_mask_rcnn_R-101-FPN_1x": ["fpn_inner_res4_22_sum_lateral_w", "res4_22_branch2c_bn_s"],
    "e2e_faster_rcnn_R-50-C4_1x": ["conv_rpn_w", "rpn_cls_logits_w", "res5_2_branch2c_w"],
}


@pytest.mark.parametrize("name", sorted(ISSUE_NAMES))
def test_scheme_has_the_checkpoint_names(name):
    names = blobs(seeded.layout_of(CONFIGS[name]))
    assert set(ISSUE_NAMES[name]) <= set(names)


@pytest.mark.parametrize("name", DETECTRON)
def test_rules_cover_every_blob_and_target(name):
    """All 16 configs: each scheme blob is claimed by one rule onto a target tensor of the same
    shape; every target tensor is a blob's or a named default (names and shapes, no values)."""
    spec = registry.get(name)
    model = spec.build()
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    rules = rules_for(spec, "detectron", None)
    hit: dict[str, str] = {}
    for blob, shape in blobs(seeded.layout_of(CONFIGS[name])).items():
        targets = [t for r in rules if hasattr(r, "repl") and (t := r.apply(blob)) is not None]
        assert targets, f"{blob} matched by no rule"
        assert expected.get(targets[0]) == shape, (blob, targets[0], shape, expected.get(targets[0]))
        assert targets[0] not in hit, (blob, hit.get(targets[0]))
        hit[targets[0]] = blob
    rest = set(expected) - set(hit)
    assert all(any(d.regex.fullmatch(t) for d in spec.defaults) for t in rest), sorted(rest)[:5]
    assert all(t.endswith(("running_mean", "running_var")) for t in rest)


def test_wrong_depth_names_are_refused():
    """An R-101 checkpoint offered to the R-50 net: its extra blocks and FPN names fail loudly."""
    spec = registry.get("e2e_faster_rcnn_R-50-FPN_1x")
    src = seeded.make_blobs(Layout("R-101", "faster"), 0)
    with pytest.raises(MappingError, match=r"res4_22_sum|res4_(6|[1-2][0-9])_branch"):
        map_tensors(spec.name, src, spec.build(), rules_for(spec, "detectron", None), (), spec.defaults)


# ------------------------------------------------------------------------------- exact landing

@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    cache = {}

    def get(name):
        if name not in cache:
            path = tmp_path_factory.mktemp("pkl") / f"{name}.pkl"
            seeded.write(seeded.layout_of(CONFIGS[name]), path, seed=11)
            cache[name] = (convert(name, weights=path), path)
        return cache[name]
    return get


@pytest.mark.parametrize("name", R50)
def test_every_blob_lands_exactly(converted, name):
    result, path = converted(name)
    src = detectron_pkl.read_pkl(path)
    state = result.module.state_dict()
    rows = {r.source: r for r in result.mapping if r.source is not None}
    assert set(rows) == set(src)  # every blob consumed or ignored
    for blob, row in rows.items():
        if row.status == "ignored":
            assert re.fullmatch(r".*_momentum|lr|iter", blob) and row.why, blob
            continue
        assert row.status == "mapped" and row.fixup is None
        assert np.array_equal(state[row.target].numpy(), src[blob]), blob
    defaults = [r for r in result.mapping if r.status == "default"]
    assert defaults and all(r.why.startswith("affine_channel") for r in defaults)
    for r in defaults:
        want = 0.0 if r.target.endswith("running_mean") else np.float32(1 - 1e-5)
        assert torch.all(state[r.target] == want), r.target
    assert set(state) == {r.target for r in result.mapping if r.target is not None}


def test_class_layout_and_ignores(converted):
    """cls_score row c is class c (background 0) and bbox_pred rows 4c..4c+3 are its deltas, as
    torchvision's FastRCNNPredictor reads them; momentum and scalars are ignored with a reason."""
    result, path = converted("e2e_faster_rcnn_R-50-FPN_1x")
    src = detectron_pkl.read_pkl(path)
    pred = result.module.roi_heads.box_predictor
    x = torch.randn(3, 1024)
    with torch.no_grad():
        scores, deltas = pred(x)
    assert np.allclose(scores.numpy(), x.numpy() @ src["cls_score_w"].T + src["cls_score_b"], atol=1e-4)
    assert np.allclose(deltas.view(3, 81, 4)[:, 17].numpy(),
                       x.numpy() @ src["bbox_pred_w"][68:72].T + src["bbox_pred_b"][68:72], atol=1e-4)
    ignored = {r.source: r.why for r in result.mapping if r.status == "ignored"}
    assert "lr" in ignored and "iter" in ignored and "fc6_w_momentum" in ignored and "conv1_w_momentum" not in ignored


# ------------------------------------------------------------------------------- end to end

def _bgr_input(rgb: np.ndarray, short: int = 256) -> torch.Tensor:
    return detectron_blob(np.ascontiguousarray(rgb[..., ::-1]), short, 1333)[0]


def test_detectron_blob_is_prep_im_for_blob():
    """Means subtracted before one float resize; im_scale by Detectron's rounding rule."""
    import cv2
    img = sample_photos(("coffee",))[0][1][..., ::-1]  # 400 x 600
    x, scale = detectron_blob(np.ascontiguousarray(img), 800, 1000)
    assert scale == 1000 / 600 and tuple(x.shape) == (3, 667, 1000)
    ref = cv2.resize(img.astype(np.float32) - np.array(PIXEL_MEANS, np.float32), None, None, fx=scale, fy=scale)
    assert np.abs(x.numpy().transpose(1, 2, 0) - ref).max() <= 1e-3


@pytest.mark.parametrize("name", ["e2e_mask_rcnn_R-50-FPN_1x", "e2e_keypoint_rcnn_R-50-FPN_1x", "retinanet_R-50-FPN_1x"])
def test_end_to_end_deterministic_on_photographs(converted, name):
    """Two runs on a real photograph give identical outputs; the Detectron numerics change them
    against torchvision's (the switches are live end to end)."""
    model = converted(name)[0].module
    images = [_bgr_input(img) for _, img in sample_photos(("astronaut",))]
    torch.manual_seed(0)
    with torch.no_grad():
        a, b = model(images), model(images)
        model.set_numerics("torchvision")
        c = model(images)
        model.set_numerics("detectron")
    for x, y in zip(a, b):
        assert x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)
    assert a[0]["boxes"].shape[0] > 0
    assert any(x["boxes"].shape != z["boxes"].shape or not torch.equal(x["boxes"], z["boxes"]) for x, z in zip(a, c))
