"""Verification: the converted torch module against the source framework, layer by layer and on
final outputs, on real photographs. A third run, the torch module in float64, measures each
activation's fp32 noise floor so tolerances are justified by measurement."""
from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from converters.errors import ParityError
from converters.pipeline import ConversionResult, convert
from converters.samples import sample_photos

from .capture import run_torch, save_run
from .compare import FLOOR_FACTOR, Comparison, TensorDiff, diff, relative_max_error, worst
from .detection import DetectionMatch, match_batch
from .preprocess import preprocess
from .reference64 import reference64

SCORE_TOL, BOX_TOL = 1e-5, 1e-3  # post-NMS: scores, box corners in pixels (raised to the fp32 floor)


@dataclass
class ParityReport:
    model: str
    source: dict
    images: list[str]
    variant: str
    layers: Comparison
    outputs: list[TensorDiff] = field(default_factory=list)
    topk: dict | None = None  # classification: top-5 order per image (identical / tie-explained)
    detections: DetectionMatch | None = None
    detection_tol: dict | None = None
    # detection: per post-processing variant, how its detections compare with MXNet's
    nms_variants: dict | None = None
    # segmentation (per pixel) / pose (per joint): argmax identical except at reference ties
    argmax: dict | None = None
    ocr: dict | None = None  # text detection: DB boxes; text recognition: decoded strings
    size: tuple[int, int] | None = None  # network input (H, W) when not the preset's
    replayed: list[str] = field(default_factory=list)  # target modules continued from the source's output
    masks: dict | None = None  # instance masks: probabilities on replayed boxes, pasted pixels (parity.masks)

    @property
    def passed(self) -> bool:
        task_ok = (self.topk is None or self.topk["unexplained"] == 0) and (
            self.detections is None or self.detections.passed) and (
            self.argmax is None or self.argmax["unexplained"] == 0) and (
            self.ocr is None or self.ocr["unexplained"] == 0) and (
            self.masks is None or self.masks["passed"])
        return self.layers.passed and all(d.passed for d in self.outputs) and task_ok

    def __bool__(self) -> bool:
        return self.passed

    def to_dict(self) -> dict:
        return {"model": self.model, "passed": self.passed, "source": self.source, "images": self.images,
                "preprocess_variant": self.variant, "floor_factor": FLOOR_FACTOR,
                "layers": self.layers.to_dict(), "outputs": [d.to_dict() for d in self.outputs],
                "topk": self.topk, "detections": self.detections.to_dict() if self.detections else None,
                "detection_tolerance": self.detection_tol, "nms_variants": self.nms_variants,
                "argmax": self.argmax, "ocr": self.ocr, "size": list(self.size) if self.size else None,
                "replayed": self.replayed, "masks": self.masks}


def oracle_for(result: ConversionResult):
    spec = result.spec
    if spec.source_format == "paddle-inference" or result.layout == "inference":
        from .oracles.paddle_program import ProgramOracle
        return ProgramOracle(result.source)
    if spec.source_format == "paddle-checkpoint":
        from .oracles.paddle_dygraph import DygraphOracle
        return DygraphOracle(spec, result.source, result.layout)
    if spec.framework == "detectron":
        raise ParityError(f"{spec.name}: no oracle: Caffe2 (Detectron's runtime) cannot be installed; "
                          "Detectron models are checked by exact transfer and per-op tests against numpy "
                          "definitions (tests/test_detectron_zoo.py, tests/test_detectron_ops.py)")
    if spec.framework != "gluon":
        raise ParityError(f"{spec.name}: no oracle for framework {spec.framework!r}")
    from .oracles.mxnet import GluonOracle
    return GluonOracle(spec.source_model, result.source, spec.get_model_kwargs)


def layer_pairs(result: ConversionResult, oracle) -> list[tuple[str, str]]:
    """(source capture point, target module) for every target layer the mapping filled, plus the
    family's explicit pairs. A target layer fed from two source layers is a mapping bug."""
    pairs: dict[str, str] = {}
    for row in result.mapping:
        if row.status != "mapped":
            continue
        target = row.target.rpartition(".")[0]
        point = oracle.capture_point(row.source)
        if pairs.setdefault(target, point) != point:
            raise ParityError(f"{target} takes tensors from two source layers: {pairs[target]} and {point}")
    if result.layout == "gluon":  # explicit pairs name Gluon block paths; an imported export has none
        pairs.update({t: s for s, t in result.spec.extra_pairs})
    if not pairs:
        raise ParityError(f"{result.spec.name}: no layer pairs to compare")
    return [(s, t) for t, s in pairs.items()]


def _diffs(name: str, source: str, ref: Any, got: Any, exact: Any, tol: float) -> list[TensorDiff]:
    """Diff reference vs converted, with the floor from converted-fp32 vs converted-fp64."""
    if isinstance(ref, tuple):
        return [d for i, (r, g, e) in enumerate(zip(ref, got, exact))
                for d in _diffs(f"{name}[{i}]", f"{source}[{i}]", r, g, e, tol)]
    out = diff(ref, got, name, source, tol)
    out.floor = relative_max_error(exact, got)
    return [out]


@dataclass
class _Runs:
    """Everything one image contributes."""

    ref_out: Any
    got_out: Any
    exact_out: Any  # converted module in float64
    ref: dict
    got: dict
    exact: dict
    fired: list[str]


NMS_INPUT = "nms#in"  # detectors' pre-NMS rows (torch side), replayed through each NMS variant


def floor_names(spec) -> list[str]:
    """Detection: the torch-side captures whose fp32 noise sets the post-NMS tolerances; a floor
    point is one capture name or a tuple of them (e.g. one per detector output)."""
    if spec.task != "detection":
        return []
    names = [n for v in spec.floor_points.values() for n in ((v,) if isinstance(v, str) else v)]
    return list(dict.fromkeys(names))


def replay_pairs(result: ConversionResult) -> list[tuple[str, str]]:
    """The spec's replay points; they name source-net paths (Gluon blocks, or the Paddle net the
    dygraph oracle builds for both Paddle checkpoint layouts), so an imported export has none."""
    own_net = result.layout == "gluon" or (result.spec.source_format == "paddle-checkpoint"
                                           and result.layout in ("dygraph", "fluid"))
    return list(result.spec.replay) if own_net else []


def _run_image(result: ConversionResult, oracle, module64, pairs, x: np.ndarray) -> _Runs:
    replay = replay_pairs(result)
    ref_out, ref = oracle.run(x, [s for s, _ in pairs] + [s for s, _ in replay])
    extra = [NMS_INPUT] if _nms_module(result.module) is not None else []
    floors = floor_names(result.spec)  # torch-only captures: they need no source pair
    # both torch runs continue from the source's own output at the replay points (fp64: the same
    # values widened), so the floor measures noise on identical downstream inputs
    got_out, got, fired = run_torch(result.module, x, [t for _, t in pairs] + extra + floors,
                                    replace={t: ref[s] for s, t in replay})
    exact_out, exact, _ = run_torch(module64, x.astype(np.float64), [t for _, t in pairs] + floors,
                                    replace={t: ref[s] for s, t in replay})
    return _Runs(ref_out, got_out, exact_out, ref, got, exact, fired)


def _nms_module(module):
    from converters.arch.nms import DetectionNMS
    nms = getattr(module, "nms", None)
    return nms if isinstance(nms, DetectionNMS) else None


def _detection_tol(runs: list[_Runs], points: dict) -> dict:
    """Post-NMS tolerances: the fixed bars, or FLOOR_FACTOR x the fp32 floor of the class
    probabilities / decoded boxes in absolute terms, whichever is larger."""
    def noise(names) -> float:
        names = (names,) if isinstance(names, str) else names
        return max(float(np.abs(r.got[n] - r.exact[n]).max()) for r in runs for n in names)
    prob, box = noise(points["score"]), noise(points["box"])
    return {"score": max(SCORE_TOL, FLOOR_FACTOR * prob), "box": max(BOX_TOL, FLOOR_FACTOR * box),
            "score_floor": prob, "box_floor": box}


def topk_check(runs: list[_Runs], k: int = 5) -> dict:
    """Top-k class order per image: identical, or differing only between classes whose reference
    logits are within FLOOR_FACTOR x the measured fp32 noise of the logits (a tie no fp32
    implementation can order reliably)."""
    noise = max(float(np.abs(r.got_out - r.exact_out).max()) for r in runs)
    tie = FLOOR_FACTOR * noise
    out = {"images": len(runs), "k": k, "identical": 0, "tie_explained": 0, "unexplained": 0, "tie_tol": tie}
    for r in runs:
        ref, got = r.ref_out[0], r.got_out[0]
        a, b = np.argsort(-ref, kind="stable")[:k], np.argsort(-got, kind="stable")[:k]
        if np.array_equal(a, b):
            out["identical"] += 1
        elif all(abs(ref[i] - ref[j]) <= tie for i, j in zip(a, b) if i != j):
            out["tie_explained"] += 1
        else:
            out["unexplained"] += 1
    return out


def nms_variants(result: ConversionResult, runs: list[_Runs], tol: dict) -> dict | None:
    """Replay each run's pre-NMS rows through every post-processing variant and count the MXNet
    detections it changes (not reproduced identically, plus any extra detections)."""
    from converters.arch.nms import NMS_VARIANTS
    base = _nms_module(result.module)
    if base is None:
        return None
    out = {}
    for v in NMS_VARIANTS:
        nms = copy.deepcopy(base)
        nms.variant = v
        total = DetectionMatch()
        for r in runs:
            got = tuple(t.numpy() for t in nms(torch.from_numpy(r.got[NMS_INPUT])))
            total = total.merge(match_batch(r.ref_out, got, score_tol=tol["score"], box_tol=tol["box"]))
        out[v] = {**total.to_dict(),
                  "changed": total.reference - total.identical + max(0, total.converted - total.reference)}
    return out


def argmax_check(runs: list[_Runs], unit: str) -> dict:
    """Argmax of the main (B, C, H, W) output per "pixel" (over channels) or per "joint" (over the
    flattened heatmap, row-major as gluoncv's get_max_pred): identical, or differing only where the reference values of the two picks are within
    FLOOR_FACTOR x the measured fp32 noise of that output."""
    main = (lambda o: o[0] if isinstance(o, tuple) else o)
    noise = max(float(np.abs(main(r.got_out) - main(r.exact_out)).max()) for r in runs)
    tie = FLOOR_FACTOR * noise
    out = {"unit": unit, "count": 0, "identical": 0, "tie_explained": 0, "unexplained": 0, "tie_tol": tie}
    for r in runs:
        if unit == "pixel":
            ref, got = (np.moveaxis(main(o), 1, -1) for o in (r.ref_out, r.got_out))
        else:
            ref, got = (main(o).reshape(*main(o).shape[:2], -1) for o in (r.ref_out, r.got_out))
        a, b = ref.argmax(-1), got.argmax(-1)
        same = a == b
        gap = np.abs(np.take_along_axis(ref, a[..., None], -1) - np.take_along_axis(ref, b[..., None], -1))[..., 0]
        out["count"] += int(same.size)
        out["identical"] += int(same.sum())
        out["tie_explained"] += int((~same & (gap <= tie)).sum())
        out["unexplained"] += int((~same & (gap > tie)).sum())
    return out


def _require_eval(module, name: str) -> None:
    """A live Dropout's noise would be absorbed into the fp64 floor and pass: refuse training mode."""
    live = [path or "(root)" for path, m in module.named_modules() if m.training]
    if live:
        raise ParityError(f"{name}: the converted module is in training mode ({len(live)} modules, "
                          f"first {live[0]}); call .eval() before verifying")


def parity_result(result: ConversionResult) -> ConversionResult:
    """The conversion as parity runs it: with the spec's ``parity_build``, its module (built from
    the config the source net is built from) holding the converted weights and numerics."""
    spec = result.spec
    if spec.parity_build is None:
        return result
    module = spec.parity_build()
    if result.layout in spec.numerics:
        module.set_numerics(spec.numerics[result.layout])
    module.load_state_dict(result.module.state_dict())
    return dataclasses.replace(result, module=module.eval())


def verify(name: str, weights: str | Path | None = None, init: str | None = None, seed: int = 0,
           images: Sequence[tuple[str, np.ndarray]] | None = None, variant: str = "mxnet",
           save_runs: str | Path | None = None, result: ConversionResult | None = None,
           size: tuple[int, int] | None = None) -> ParityReport:
    """``size``: run at this network input (H, W) instead of the preset's (sizes a model accepts)."""
    result = parity_result(result or convert(name, weights=weights, init=init, seed=seed))
    _require_eval(result.module, name)
    spec, oracle = result.spec, oracle_for(result)
    pre = dataclasses.replace(spec.preprocess, size=tuple(size)) if size else spec.preprocess
    pairs = layer_pairs(result, oracle)
    module64 = reference64(result.module)
    if images is None:
        images = spec.samples() if spec.samples else sample_photos()
    images = list(images)
    runs, by_pair = [], {}
    for img_name, img in images:
        x = spec.prepare(img) if spec.prepare else preprocess(img, pre, variant).numpy()[None]
        run = _run_image(result, oracle, module64, pairs, x)
        if save_runs:
            save_run(Path(save_runs) / f"{name}-{img_name}-{spec.framework}.h5", run.ref, {"image": img_name})
            save_run(Path(save_runs) / f"{name}-{img_name}-torch.h5", run.got, {"image": img_name})
        _fold(by_pair, run, pairs, spec)
        runs.append(run)
    report = _report(result, by_pair, [n for n, _ in images], runs, variant)
    report.size = tuple(size) if size else None
    report.replayed = [t for _, t in replay_pairs(result)]
    return report


def _outputs(spec, runs: list[_Runs]) -> list[TensorDiff]:
    """Final outputs (every element of a tuple output), worst over the images."""
    worst_by: dict[str, TensorDiff] = {}
    for run in runs:
        for d in _diffs("output", "output", run.ref_out, run.got_out, run.exact_out, spec.tolerance):
            worst_by[d.name] = worst(worst_by.get(d.name), d)
    return list(worst_by.values())


def _fold(by_pair: dict[str, TensorDiff], run: _Runs, pairs, spec) -> None:
    """Fold one image's captures into the per-pair worst diffs, then drop all but what the task
    checks read: a detector's captures are ~2 GB per photograph."""
    for s, t in pairs:
        for d in _diffs(t, s, run.ref[s], run.got[t], run.exact[t], spec.tolerance):
            by_pair[d.name] = worst(by_pair.get(d.name), d)
    keep = {*floor_names(spec), NMS_INPUT}
    run.ref = {}
    run.got = {k: v for k, v in run.got.items() if k in keep}
    run.exact = {k: v for k, v in run.exact.items() if k in keep}


def _report(result: ConversionResult, by_pair: dict[str, TensorDiff], names: list[str], runs: list[_Runs],
            variant: str) -> ParityReport:
    spec = result.spec
    rank = {t: i for i, t in enumerate(runs[0].fired)}
    layers = Comparison(sorted(by_pair.values(), key=lambda d: (rank.get(d.name.split("[")[0], 1 << 30), d.name)))
    source = {"file": result.source.name, "sha256": result.manifest["source"]["sha256"],
              "layout": result.layout, "seeded": result.seed is not None, "seed": result.seed}
    report = ParityReport(spec.name, source, names, variant, layers)
    if spec.task == "classification":
        report.outputs = _outputs(spec, runs)
        report.topk = topk_check(runs)
    elif spec.task == "detection":
        tol = _detection_tol(runs, dict(spec.floor_points))
        report.detection_tol = tol
        report.detections = DetectionMatch()
        for run in runs:
            report.detections = report.detections.merge(
                match_batch(run.ref_out, run.got_out, score_tol=tol["score"], box_tol=tol["box"]))
        report.nms_variants = nms_variants(result, runs, tol)
        if len(runs[0].ref_out) > 4:  # Mask R-CNN: (ids, scores, boxes, mask probabilities, pasted masks)
            from .masks import mask_check
            report.masks = mask_check(runs, spec.floor_points.get("mask", "mask_prob"))
    elif spec.task in ("segmentation", "pose"):
        report.outputs = _outputs(spec, runs)
        report.argmax = argmax_check(runs, "pixel" if spec.task == "segmentation" else "joint")
    elif spec.task in ("text-detection", "text-recognition"):
        from . import ocr
        report.outputs = _outputs(spec, runs)
        if spec.task == "text-detection":
            report.ocr = ocr.db_check(runs)
        else:
            from converters.arch.ctc import load_charset
            from converters.paddle.ppocr import charset_path
            report.ocr = ocr.ctc_check(runs, load_charset(charset_path()))
    else:
        raise ParityError(f"{spec.name}: no parity check for task {spec.task!r}")
    return report
