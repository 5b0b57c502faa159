"""OCR task checks for parity: the converted model's outputs must give the source's boxes (DB
post-processing) and strings (CTC greedy decoding), not merely close probabilities."""
from __future__ import annotations

import numpy as np

from converters.arch.ctc import ctc_greedy
from converters.arch.db_postprocess import DBParams, db_boxes

from .compare import FLOOR_FACTOR


def _noise(runs) -> float:
    return max(float(np.abs(r.got_out - r.exact_out).max()) for r in runs)


def db_check(runs, params: DBParams = DBParams()) -> dict:
    """Boxes from the source's and the converted probability maps (network-input pixels), per
    image; binarisation flips are counted and each is explained only if the source probability is
    within FLOOR_FACTOR x the measured fp32 noise of the threshold."""
    tie = FLOOR_FACTOR * _noise(runs)
    out = {"images": len(runs), "boxes": 0, "identical_images": 0, "differing_images": 0,
           "mask_flips": 0, "mask_flips_unexplained": 0, "tie_tol": tie}
    for r in runs:
        ref, got = r.ref_out[0, 0], r.got_out[0, 0]
        flips = (ref > params.thresh) != (got > params.thresh)
        out["mask_flips"] += int(flips.sum())
        out["mask_flips_unexplained"] += int((flips & (np.abs(ref - params.thresh) > tie)).sum())
        a, b = db_boxes(ref, ref.shape, params)[0], db_boxes(got, got.shape, params)[0]
        out["boxes"] += len(a)
        same = a.shape == b.shape and np.array_equal(a, b)
        out["identical_images" if same else "differing_images"] += 1
    out["unexplained"] = out["differing_images"] if out["mask_flips_unexplained"] else 0
    return out


def ctc_check(runs, charset: list[str]) -> dict:
    """Decoded strings of the source's and the converted outputs, per line; a differing string is
    explained only when every differing step's top two source probabilities are within
    FLOOR_FACTOR x the measured fp32 noise (a tie no fp32 port can order)."""
    tie = FLOOR_FACTOR * _noise(runs)
    out = {"lines": 0, "identical": 0, "tie_explained": 0, "unexplained": 0, "tie_tol": tie, "texts": []}
    for r in runs:
        for ref, got, (rt, _), (gt, _) in zip(r.ref_out, r.got_out, ctc_greedy(r.ref_out, charset),
                                            ctc_greedy(r.got_out, charset)):
            out["lines"] += 1
            out["texts"].append(rt)
            if rt == gt:
                out["identical"] += 1
                continue
            a, b = ref.argmax(-1), got.argmax(-1)
            steps = np.nonzero(a != b)[0]
            gap = np.abs(ref[steps, a[steps]] - ref[steps, b[steps]])
            out["tie_explained" if (gap <= tie).all() else "unexplained"] += 1
    return out
