"""Comparison of two runs: per-pair error statistics, tolerance verdicts, first divergence.

Results are plain dataclasses with numbers (serialisable), truthy when passing, and they report
the tolerance that *would* have passed, not only pass/fail."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

DEFAULT_TOL = 1e-4  # fp32: max abs error <= 1e-4 x max |reference| of that activation
# A pair may also pass within FLOOR_FACTOR x its fp32 noise floor (torch fp32 vs torch fp64 on the
# same input): deep layers of ill-conditioned nets carry more rounding noise than 1e-4 in *any*
# fp32 implementation, MXNet's included; measured MXNet-vs-torch error stays within ~1.5x of it.
FLOOR_FACTOR = 4.0


@dataclass
class TensorDiff:
    name: str  # target (torch) module path, or output name
    source: str  # source capture point
    shape: tuple[int, ...]
    max_abs: float
    max_rel: float
    cosine: float
    p99_abs: float
    scale: float  # max |reference|
    tol: float  # base allowed max_abs / scale
    error: str | None = None  # shape mismatch or non-finite values
    floor: float = 0.0  # fp32 noise floor of this activation, as a relative error (0: not measured)

    @property
    def needed(self) -> float:
        """Smallest relative tolerance that would pass."""
        return self.max_abs / self.scale if self.scale > 0 else (0.0 if self.max_abs == 0 else float("inf"))

    @property
    def allowed(self) -> float:
        return max(self.tol, FLOOR_FACTOR * self.floor)

    @property
    def passed(self) -> bool:
        return self.error is None and self.needed <= self.allowed

    def __bool__(self) -> bool:
        return self.passed

    def to_dict(self) -> dict:
        d = asdict(self)
        d.update(shape=list(self.shape), needed=self.needed, allowed=self.allowed, passed=self.passed)
        return d


def diff(ref: np.ndarray, got: np.ndarray, name: str = "", source: str = "",
         tol: float = DEFAULT_TOL) -> TensorDiff:
    ref, got = np.asarray(ref, dtype=np.float64), np.asarray(got, dtype=np.float64)
    if ref.shape != got.shape:
        return TensorDiff(name, source, tuple(got.shape), np.inf, np.inf, 0.0, np.inf, 0.0, tol,
                          f"shape {tuple(got.shape)} != reference {tuple(ref.shape)}")
    if not (np.isfinite(ref).all() and np.isfinite(got).all()):
        bad = "reference" if not np.isfinite(ref).all() else "converted"
        return TensorDiff(name, source, tuple(ref.shape), np.inf, np.inf, 0.0, np.inf, 0.0, tol,
                          f"non-finite values in the {bad} output")
    if not ref.size:
        return TensorDiff(name, source, tuple(ref.shape), 0.0, 0.0, 1.0, 0.0, 0.0, tol)
    # in-place temporaries: a detector's per-RoI maps are ~100 MB each, and this runs per pair and image
    err = np.subtract(ref, got)
    np.abs(err, out=err)
    scale = float(max(ref.max(), -ref.min()))
    max_abs = float(err.max())
    rel = np.abs(ref)
    np.maximum(rel, 1e-6 * max(scale, 1e-30), out=rel)
    np.divide(err, rel, out=rel)
    denom = float(np.linalg.norm(ref) * np.linalg.norm(got))
    cosine = float((ref * got).sum() / denom) if denom > 0 else float(max_abs == 0)
    p99 = float(np.percentile(err, 99, overwrite_input=True))  # last: it reorders err
    return TensorDiff(name, source, tuple(ref.shape), max_abs, float(rel.max()), cosine, p99, scale, tol)


def relative_max_error(ref: np.ndarray, got: np.ndarray) -> float:
    """``diff(ref, got).needed`` alone: the fp32 floors read nothing else, and the full statistics
    (percentile, cosine, relative map) were half of a verify's time on a segmenter's large maps."""
    ref, got = np.asarray(ref), np.asarray(got)
    if ref.shape != got.shape or not (np.isfinite(ref).all() and np.isfinite(got).all()):
        return float("inf")
    if not ref.size:
        return 0.0
    max_abs = float(np.abs(np.subtract(ref, got, dtype=np.float64)).max())
    scale = float(np.abs(ref).max())
    return max_abs / scale if scale > 0 else (0.0 if max_abs == 0 else float("inf"))


def worst(a: TensorDiff | None, b: TensorDiff) -> TensorDiff:
    """Keep the worse of two diffs of the same pair (across images), judged against what each allows."""
    if a is None:
        return b
    if (a.error is None) != (b.error is None):
        return a if a.error else b
    return a if a.needed / a.allowed >= b.needed / b.allowed else b


@dataclass
class Comparison:
    """Layer pairs in execution order, each the worst over all inputs."""

    diffs: list[TensorDiff] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return bool(self.diffs) and all(d.passed for d in self.diffs)  # zero pairs is a failure

    def __bool__(self) -> bool:
        return self.passed

    @property
    def first_divergent(self) -> TensorDiff | None:
        return next((d for d in self.diffs if not d.passed), None)

    def to_dict(self) -> dict:
        first = self.first_divergent
        return {"pairs": len(self.diffs), "passed": self.passed,
                "first_divergent": first.name if first is not None else None,
                "diffs": [d.to_dict() for d in self.diffs]}
