"""Comparison numbers and verdicts on synthetic tensors."""
from __future__ import annotations

import numpy as np
import pytest

from parity.compare import Comparison, diff, relative_max_error, worst
from parity.detection import match_image


def test_diff_statistics_and_needed_tolerance():
    ref = np.array([1.0, -2.0, 4.0])
    got = ref + np.array([0.0, 0.0, 4e-4])
    d = diff(ref, got, "x", "y", tol=1e-4)
    assert abs(d.max_abs - 4e-4) < 1e-12 and d.scale == 4.0 and abs(d.needed - 1e-4) < 1e-12
    assert d.passed and abs(d.max_rel - 1e-4) < 1e-9 and d.cosine > 0.999999
    assert not diff(ref, ref + np.array([0, 0, 5e-4]), tol=1e-4).passed


def test_floor_allowance_and_errors():
    ref = np.ones(4)
    d = diff(ref, ref + 3e-4, tol=1e-4)
    assert not d.passed
    d.floor = 1e-4  # measured fp32 noise of this activation: 4x of it is allowed
    assert d.passed and d.allowed == 4e-4
    assert diff(np.ones(3), np.ones(4)).error.startswith("shape")
    assert "non-finite" in diff(np.ones(2), np.array([1, np.nan])).error


def test_comparison_zero_pairs_fails_and_first_divergence():
    assert not Comparison([])
    ok, bad = diff(np.ones(2), np.ones(2), "a"), diff(np.ones(2), np.zeros(2), "b")
    c = Comparison([ok, bad, diff(np.ones(2), np.zeros(2), "c")])
    assert not c.passed and c.first_divergent.name == "b" and c.to_dict()["first_divergent"] == "b"
    assert worst(ok, bad) is bad


def _dets(rows):
    a = np.array(rows, dtype=np.float32).reshape(-1, 6)
    return a[:, :1], a[:, 1:2], a[:, 2:]


def test_detection_match_identical_ties_and_mismatch():
    ref = _dets([[1, .9, 0, 0, 10, 10], [2, .5, 5, 5, 9, 9], [3, .5, 1, 1, 2, 2], [-1, -1, -1, -1, -1, -1]])
    same = match_image(ref, _dets([[1, .9, 0, 0, 10, 10], [3, .5, 1, 1, 2, 2], [2, .5, 5, 5, 9, 9], [-1] * 6]))
    assert same.passed and same.identical == 3  # order inside a tie is free
    tie = match_image(ref, _dets([[1, .9, 0, 0, 10, 10], [2, .5, 5, 5, 9, 9], [4, .5, 1, 1, 2, 2], [-1] * 6]))
    assert tie.passed and tie.tie_explained == 2
    wrong = match_image(ref, _dets([[1, .8, 0, 0, 10, 10], [2, .5, 5, 5, 9, 9], [3, .5, 1, 1, 2, 2], [-1] * 6]))
    assert not wrong.passed and wrong.unexplained == 1
    extra = match_image(ref, _dets([[1, .9, 0, 0, 10, 10], [2, .5, 5, 5, 9, 9], [3, .5, 1, 1, 2, 2], [5, .1, 0, 0, 1, 1]]))
    assert not extra.passed


def test_topk_check_identical_tie_and_unexplained():
    from parity.verify import _Runs, topk_check

    def run(ref, got, noise=1e-4):  # the fp64 run sits next to the converted fp32 one
        ref, got = np.array([ref]), np.array([got])
        return _Runs(ref, got, got + noise, {}, {}, {}, [])
    ref = [5.0, 4.0, 3.0, 2.0, 1.0005, 1.0]
    assert topk_check([run(ref, ref)])["identical"] == 1
    tie = topk_check([run(ref, [5.0, 4.0, 3.0, 2.0, 0.9999, 1.0])])
    assert tie["unexplained"] == 1  # 5e-4 apart is more than 4 x 1e-4 of noise: a real swap
    tie = topk_check([run(ref, [5.0, 4.0, 3.0, 2.0, 0.9999, 1.0], noise=2e-4)])
    assert tie["tie_explained"] == 1 and tie["unexplained"] == 0  # within 4 x 2e-4: a tie
    far = topk_check([run(ref, [5.0, 4.0, 1.0, 2.0, 3.0, 0.0])])
    assert far["unexplained"] == 1


@pytest.mark.parametrize("case", ["random", "zero_ref", "both_zero", "empty", "shape", "nan", "inf_got", "f64_vs_f32"])
def test_relative_max_error_is_diffs_needed(case):
    """The floors' shortcut gives exactly what the full diff would report as ``needed``."""
    rng = np.random.default_rng(3)
    ref = rng.normal(size=(2, 5, 7)).astype(np.float32)
    got = (ref + rng.normal(scale=1e-5, size=ref.shape)).astype(np.float32)
    if case == "zero_ref":
        ref = np.zeros_like(ref)
    elif case == "both_zero":
        ref, got = np.zeros_like(ref), np.zeros_like(ref)
    elif case == "empty":
        ref, got = ref[:0], got[:0]
    elif case == "shape":
        got = got[:1]
    elif case == "nan":
        got[0, 0, 0] = np.nan
    elif case == "inf_got":
        got[1, 2, 3] = np.inf
    elif case == "f64_vs_f32":  # the floor's own call: fp64 reference run vs the fp32 run
        ref = ref.astype(np.float64) + rng.normal(scale=1e-9, size=ref.shape)
    assert relative_max_error(ref, got) == diff(ref, got).needed
