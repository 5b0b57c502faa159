"""Gap attribution: start from the source pipeline (gluoncv's net in MXNet, gluoncv's transforms,
MXNet's box_nms) and move to the user's pipeline one stage at a time (framework, zooport's own
preprocessing, then each preprocessing choice: decoder, resize, crop, colour order, then the NMS
variant), measuring the metric after every step. Each step's delta is the change it caused, so the
deltas add up to the whole gap by construction (a telescoping sum)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from converters.pipeline import ConversionResult

from .evaluate import Config, EvalError, EvalRow, Job, json_safe, prepare, report, run, spec_of

HEADLINE = {"classification": ("top1",), "detection": ("mAP", "AP", "bbox_AP"), "segmentation": ("mIoU",),
            "pose": ("AP",)}


@dataclass
class Step:
    stage: str  # "source", "framework", "preprocess", a Stages field, "nms"
    change: str  # what this step changed, "old -> new"
    row: EvalRow
    value: float  # the headline metric after this step
    delta: float  # value minus the previous step's value (0 at the source)

    def to_dict(self) -> dict:
        return {"stage": self.stage, "change": self.change, "value": self.value, "delta": self.delta,
                **self.row.to_dict()}


@dataclass
class Ladder:
    model: str
    metric: str
    target: dict  # the user's pipeline: framework, preprocess, nms
    steps: list[Step]
    evaluation: dict  # the evaluation context (dataset, n, source, ...), as EvalReport.to_dict
    rank: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def total_gap(self) -> float:
        return self.steps[-1].value - self.steps[0].value

    @property
    def sum_of_deltas(self) -> float:
        return math.fsum(s.delta for s in self.steps)

    def to_dict(self) -> dict:
        return {"model": self.model, "metric": self.metric, "target": self.target,
                "source_value": self.steps[0].value, "final_value": self.steps[-1].value,
                "total_gap": self.total_gap, "sum_of_deltas": self.sum_of_deltas,
                "steps": [s.to_dict() for s in self.steps], "notes": self.notes, **self.evaluation}

    def write(self, path: str | Path) -> Path:
        from converters.io.writer import write_json
        write_json(Path(path), json_safe(self.to_dict()))
        return Path(path)


def _label(stages) -> str:
    """A VARIANTS name when the stages are one, else decoder/resize/crop/color: pil/opencv/floor/RGB."""
    from .preprocess import FIELDS, VARIANTS
    named = [k for k, v in VARIANTS.items() if v == stages]
    return named[0] if named else "/".join(getattr(stages, f) for f in FIELDS)


def steps_for(spec, target: str, nms: str) -> list[tuple[str, str, Config]]:
    """(stage, change, pipeline) from the source pipeline to ``target`` preprocessing + ``nms``."""
    from converters.arch.nms import NMS_VARIANTS
    from .preprocess import VARIANTS, ladder, resolve
    if target not in VARIANTS or VARIANTS[target] is None:
        usable = [k for k, v in VARIANTS.items() if v is not None]
        raise EvalError(f"--to {target!r}: expected a preprocessing variant other than the source's "
                        f"({', '.join(usable)})")
    if nms not in NMS_VARIANTS:
        raise EvalError(f"--nms {nms!r}: expected one of {', '.join(NMS_VARIANTS)}")
    from .predict import has_nms_variants, source_framework
    base = "mxnet" if has_nms_variants(spec) else None
    fw = source_framework(spec)
    if fw == "mxnet":
        source = "MXNet net, gluoncv transforms" + (", MXNet box_nms" if base else "")
        out = [("source", source, Config("mxnet", "mxnet", base)),
               ("framework", "mxnet -> torch (the converted module)", Config("torch", "mxnet", base)),
               ("preprocess", "gluoncv transforms -> cv2-exact (zooport's, no MXNet)",
                Config("torch", "cv2-exact", base))]
    else:  # Paddle's pipelines are cv2 code: zooport's cv2-exact is the source's own preprocessing
        out = [("source", f"{fw} net, its cv2 transforms", Config(fw, "cv2-exact", base)),
               ("framework", f"{fw} -> torch (the converted module)", Config("torch", "cv2-exact", base))]
    record, prev = spec.preprocess, VARIANTS["cv2-exact"]
    for name, stages in ladder(target, record):  # only the fields that change this record's pipeline
        was, now = getattr(resolve(prev, record), name), getattr(resolve(stages, record), name)
        prev = stages
        if name == "crop" and record.crop == "none":  # nothing is cropped: the step would be a no-op
            continue
        out.append((name, f"{was} -> {now}", Config("torch", _label(stages), base, stages)))
    if base and nms != base:
        last = out[-1][2]  # the same preprocessing pipeline (a skipped no-op crop step is equivalent)
        label = _label(prev) if last.stages else last.preprocess
        out.append(("nms", f"{base} -> {nms}", Config("torch", label, nms, last.stages)))
    return out


def headline(task: str, metrics: dict) -> str:
    for name in HEADLINE.get(task, ()):
        if name in metrics:
            return name
    scalars = [k for k, v in metrics.items() if isinstance(v, (int, float))]
    if not scalars:
        raise EvalError(f"no scalar metric to attribute among {', '.join(metrics)}")
    return scalars[0]


def explain(model: str | ConversionResult, data: Any, target: str = "pil", nms: str = "torchvision",
            weights: str | Path | None = None, init: str | None = None, seed: int = 0,
            limit: int | None = None, progress: bool = True, kind: str | None = None,
            metric: str | None = None) -> Ladder:
    """The gap-attribution ladder of MODEL on the dataset at ``data``."""
    from .predict import has_nms_variants
    spec = spec_of(model)
    plan = steps_for(spec, target, nms)  # options are checked before converting
    job: Job = prepare(model, data, weights, init, seed, limit, kind)
    rows, seconds = run(job, [c for _, _, c in plan], progress)
    name = metric or headline(spec.task, rows[0].metrics)
    if name not in rows[0].metrics:
        raise EvalError(f"--metric {name!r}: the dataset's metrics are {', '.join(rows[0].metrics)}")
    steps, prev = [], None
    for (stage, change, _), row in zip(plan, rows):
        value = float(row.metrics[name])
        steps.append(Step(stage, change, row, value, 0.0 if prev is None else value - prev))
        prev = value
    notes = [] if has_nms_variants(spec) else [f"no NMS step: {spec.name} is a {spec.task} model"
                                                + (" with Paddle's own NMS" if spec.task == "detection" else "")]
    context = report(job, rows, seconds, []).to_dict()
    context.pop("rows")
    context.pop("notes")
    final = plan[-1][2]
    return Ladder(spec.name, name, {"framework": "torch", "preprocess": target, "nms": final.nms}, steps,
                  context, job.rank, notes)

