"""Post-NMS detection comparison. Detections must be identical (ids equal, scores within
``score_tol``, boxes within ``box_tol`` pixels) except inside groups of tied scores, where the two
frameworks may legitimately order (and hence suppress) differently."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass
class DetectionMatch:
    reference: int = 0  # valid reference detections
    converted: int = 0
    identical: int = 0
    tie_explained: int = 0  # reference detections inside a tied-score group that differs
    unexplained: int = 0
    max_score_diff: float = 0.0
    max_box_diff: float = 0.0

    @property
    def passed(self) -> bool:
        return self.unexplained == 0 and self.reference == self.identical + self.tie_explained

    def __bool__(self) -> bool:
        return self.passed

    def merge(self, other: "DetectionMatch") -> "DetectionMatch":
        merged = DetectionMatch(**{k: getattr(self, k) + getattr(other, k) for k in
                                   ("reference", "converted", "identical", "tie_explained", "unexplained")})
        merged.max_score_diff = max(self.max_score_diff, other.max_score_diff)
        merged.max_box_diff = max(self.max_box_diff, other.max_box_diff)
        return merged

    def to_dict(self) -> dict:
        return {**asdict(self), "passed": self.passed}


def _valid(ids: np.ndarray, scores: np.ndarray, boxes: np.ndarray):
    keep = ids.reshape(-1) >= 0
    return ids.reshape(-1)[keep], scores.reshape(-1)[keep], boxes.reshape(-1, 4)[keep]


def _groups(scores: np.ndarray, tol: float) -> list[slice]:
    """Runs of consecutive (score-sorted) detections whose neighbouring gaps are within ``tol``."""
    out, start = [], 0
    for i in range(1, len(scores) + 1):
        if i == len(scores) or abs(scores[i - 1] - scores[i]) > tol:
            out.append(slice(start, i))
            start = i
    return out


def match_image(ref: tuple, got: tuple, score_tol: float = 1e-5, box_tol: float = 1e-3) -> DetectionMatch:
    """Compare one image's (ids, scores, boxes), each as returned by the detector (N x 1|1|4)."""
    ri, rs, rb = _valid(*ref[:3])  # further outputs (instance masks) are compared elsewhere
    gi, gs, gb = _valid(*got[:3])
    m = DetectionMatch(reference=len(ri), converted=len(gi))
    for g in _groups(rs, score_tol):
        n = g.stop - g.start
        ok, ds, db = _match_set((ri[g], rs[g], rb[g]), (gi[g], gs[g], gb[g]), score_tol, box_tol)
        if ok:
            m.identical += n
            m.max_score_diff, m.max_box_diff = max(m.max_score_diff, ds), max(m.max_box_diff, db)
        elif n > 1:
            m.tie_explained += n
        else:
            m.unexplained += 1
    m.unexplained += max(0, len(gi) - len(ri))  # extra converted detections are never explained
    return m


def _match_set(a: tuple, b: tuple, score_tol: float, box_tol: float) -> tuple[bool, float, float]:
    """Multiset equality of detections (order inside a tie group is free); max diffs if equal."""
    if len(a[0]) != len(b[0]):
        return False, 0.0, 0.0
    used: set[int] = set()
    ds = db = 0.0
    for i in range(len(a[0])):
        hit = next((j for j in range(len(b[0])) if j not in used and a[0][i] == b[0][j]
                    and abs(a[1][i] - b[1][j]) <= score_tol and np.abs(a[2][i] - b[2][j]).max() <= box_tol),
                   None)
        if hit is None:
            return False, 0.0, 0.0
        used.add(hit)
        ds, db = max(ds, float(abs(a[1][i] - b[1][hit]))), max(db, float(np.abs(a[2][i] - b[2][hit]).max()))
    return True, ds, db


def match_batch(ref: tuple, got: tuple, **kw) -> DetectionMatch:
    total = DetectionMatch()
    for b in range(ref[0].shape[0]):
        total = total.merge(match_image(tuple(r[b] for r in ref), tuple(g[b] for g in got), **kw))
    return total
