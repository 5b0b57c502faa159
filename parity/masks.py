"""Instance-mask parity (Mask R-CNN): the detector's 4th output, mask probabilities [B, K, M, M] on
its detection rows, and the source's 5th, its pasted binary masks [B, K, H, W].

Probabilities: compared row by row on the source's detections (the mask branch crops the source's
final boxes, replayed), max abs error within MASK_TOL or FLOOR_FACTOR x the measured fp32 noise of
our probabilities. Pasted masks: ours (paste_masks of our probabilities on our boxes) against the
source's, pixel by pixel. A pixel may flip only where our interpolated probability lies within
``delta`` of the 0.5 threshold; ``delta`` = the probability tolerance above + the largest step
between neighbouring mask cells x the box error in mask cells (corners moved by at most e pixels
move a pixel's sampling point by at most 2 e M / side cells, and bilinear interpolation changes by
at most the largest neighbouring step per cell). Flips elsewhere are unexplained and fail."""
from __future__ import annotations

import numpy as np
import torch

from .compare import FLOOR_FACTOR

MASK_TOL = 1e-5  # probabilities in [0, 1]: absolute


def mask_check(runs, floor_point: str = "mask_prob") -> dict:
    noise = max((float(np.abs(r.got[floor_point] - r.exact[floor_point]).max()) for r in runs
                 if r.got.get(floor_point) is not None and r.got[floor_point].size), default=0.0)
    tol = max(MASK_TOL, FLOOR_FACTOR * noise)
    out = {"rows": 0, "prob_max_abs": 0.0, "prob_tol": tol, "prob_floor": noise, "pixels": 0,
           "differing": 0, "explained": 0, "unexplained": 0, "delta_max": 0.0}
    for r in runs:
        _image(out, r.ref_out, r.got_out, tol)
    out["passed"] = out["prob_max_abs"] <= tol and out["unexplained"] == 0
    return out


def _image(out: dict, ref: tuple, got: tuple, tol: float) -> None:
    from converters.arch.paddle_mask_rcnn import paste_probs
    for b in range(ref[0].shape[0]):
        k = int((ref[1][b, :, 0] >= 0).sum())  # the source's rows (empty boxes relabelled -1 included)
        if k == 0:
            continue
        rp, gp = ref[3][b, :k].astype(np.float64), got[3][b, :k].astype(np.float64)
        perr = float(np.abs(rp - gp).max()) if rp.shape == gp.shape else np.inf
        out["rows"] += k
        out["prob_max_abs"] = max(out["prob_max_abs"], perr)
        rm = ref[4][b, :k]
        h, w = rm.shape[-2:]
        gb = got[2][b, :k].astype(np.float64)
        soft = paste_probs(torch.from_numpy(got[3][b, :k]), torch.from_numpy(got[2][b, :k]), h, w).numpy()
        mine = soft >= 0.5
        m = gp.shape[-1]
        step = max(float(np.abs(np.diff(gp, axis=1)).max()), float(np.abs(np.diff(gp, axis=2)).max()))
        side = np.minimum(gb[:, 2] - gb[:, 0], gb[:, 3] - gb[:, 1])
        box_err = np.abs(ref[2][b, :k].astype(np.float64) - gb).max(axis=1)
        cells = np.where(side > 0, 2 * box_err * m / np.maximum(side, 1e-12), np.inf)  # x1 and x2 both move
        delta = tol + step * cells  # per row: the allowed probability error, not the measured one
        flip = mine != (rm == 1)
        near = np.abs(soft - 0.5) <= delta[:, None, None]
        out["pixels"] += int(rm.size)
        out["differing"] += int(flip.sum())
        out["explained"] += int((flip & near).sum())
        out["unexplained"] += int((flip & ~near).sum())
        out["delta_max"] = max(out["delta_max"], float(delta.max()))
