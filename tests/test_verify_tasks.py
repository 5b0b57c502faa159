"""The task checks of parity.verify on synthetic runs (no framework needed): argmax maps for
segmentation and pose, tie-aware; and its refusal of a module in training mode."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from converters.errors import ParityError
from parity.compare import FLOOR_FACTOR
from parity.verify import _Runs, _require_eval, argmax_check


def _run(ref, got, exact) -> _Runs:
    return _Runs(ref, got, exact, {}, {}, {}, [])


def test_segmentation_argmax_identical_and_tuple_outputs():
    rng = np.random.default_rng(0)
    ref = rng.standard_normal((1, 5, 8, 8)).astype(np.float32)
    got = ref + 1e-7
    r = argmax_check([_run((ref, ref[:, :, :4]), (got, got[:, :, :4]), (got, got[:, :, :4]))], "pixel")
    assert r == {"unit": "pixel", "count": 64, "identical": 64, "tie_explained": 0, "unexplained": 0,
                 "tie_tol": 0.0}


def test_segmentation_argmax_flip_at_a_tie_is_explained_elsewhere_not():
    ref = np.zeros((1, 3, 2, 2), np.float32)
    ref[0, 0] = 1.0
    ref[0, 1, 0, 0] = 1.0 - 1e-6  # a near tie at pixel (0, 0)
    got = ref.copy()
    got[0, 1, 0, 0] = 1.0 + 1e-6  # flips the tied pixel
    # fp64 run of the converted model: noise (converted fp32 vs fp64) 1e-6 -> tie tolerance 4e-6
    r = argmax_check([_run(ref, got, got + 1e-6)], "pixel")
    assert (r["identical"], r["tie_explained"], r["unexplained"]) == (3, 1, 0)
    assert np.isclose(r["tie_tol"], FLOOR_FACTOR * 1e-6)
    got[0, 2, 1, 1] = 5.0  # a clear flip at pixel (1, 1)
    r = argmax_check([_run(ref, got, got + 1e-6)], "pixel")
    assert r["unexplained"] == 1


def test_pose_argmax_per_joint_over_flattened_heatmap():
    rng = np.random.default_rng(1)
    ref = rng.random((1, 17, 16, 12)).astype(np.float32)
    got = ref.copy()
    j, (y, x) = 3, np.unravel_index(ref[0, 3].argmax(), ref[0, 3].shape)
    got[0, j, (y + 5) % 16, x] = ref[0, j, y, x] + 0.5  # moves joint 3's peak
    r = argmax_check([_run(ref, got, got)], "joint")
    assert r["count"] == 17 and r["identical"] == 16 and r["unexplained"] == 1


def test_verify_refuses_a_module_in_training_mode():
    """Before any oracle runs: a module left in training mode (live Dropout) is an error, not a pass."""
    net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Dropout(0.5))
    _require_eval(net.eval(), "toy")
    net[1].train()
    with pytest.raises(ParityError, match=r"toy: .*training mode \(1 modules, first 1\)"):
        _require_eval(net, "toy")
