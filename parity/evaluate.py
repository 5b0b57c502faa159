"""End-to-end evaluation: a model on a dataset under several pipelines at once (framework x
preprocessing variant x NMS variant), one metric row per pipeline.

Each image is preprocessed once per variant and run once per framework; a detector's other NMS
variants replay its pre-NMS rows. Under torch.distributed (torchrun) rank r takes samples r::world,
predictions are gathered to rank 0 and every metric is computed once there, in dataset order, so
N processes give exactly the numbers one process gives."""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from itertools import product
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from converters.pipeline import ConversionResult, convert

from . import predict
from .predict import FRAMEWORKS, EvalError

__all__ = ["Config", "EvalError", "EvalReport", "EvalRow", "evaluate"]


@dataclass(frozen=True)
class Config:
    """One pipeline: framework, preprocessing (a VARIANTS name, or Stages for a ladder step), NMS."""

    framework: str
    preprocess: str  # the row's label
    nms: str | None  # None: not a detector
    stages: Any = None  # what preprocess_meta runs when not the variant named by ``preprocess``

    @property
    def pipeline(self) -> Any:
        return self.preprocess if self.stages is None else self.stages


@dataclass
class EvalRow:
    framework: str
    preprocess: str
    nms: str | None
    metrics: dict
    n: int
    seconds: float  # this row's preprocessing + network + post-processing, slowest process

    def to_dict(self) -> dict:
        return {"framework": self.framework, "preprocess": self.preprocess, "nms": self.nms,
                "metrics": json_safe(self.metrics), "n": self.n, "seconds": round(self.seconds, 3)}


@dataclass
class EvalReport:
    model: str
    task: str
    dataset: dict  # kind, root, size (samples the dataset holds)
    n: int  # samples evaluated
    limit: int | None
    source: dict
    rows: list[EvalRow]
    world_size: int = 1
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    published: list[dict] = field(default_factory=list)
    rank: int = 0  # this process's rank: only rank 0 prints and writes

    @property
    def complete(self) -> bool:
        return self.n == self.dataset["size"]

    def to_dict(self) -> dict:
        return {"model": self.model, "task": self.task, "dataset": self.dataset, "n": self.n,
                "limit": self.limit, "complete": self.complete, "source": self.source,
                "world_size": self.world_size, "seconds": round(self.seconds, 3), "notes": self.notes,
                "published": self.published, "rows": [r.to_dict() for r in self.rows]}

    def write(self, path: str | Path) -> Path:
        from converters.io.writer import write_json
        write_json(Path(path), self.to_dict())
        return Path(path)


def json_safe(value: Any) -> Any:
    """numpy scalars to Python numbers, NaN (e.g. the AP of a class without objects) to None."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, (np.integer, int)) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, (np.floating, float)):
        return None if math.isnan(value) else float(value)
    return value


def names(value: str | Sequence[str] | None) -> list[str]:
    """A comma list or sequence of names, order kept, duplicates dropped."""
    if value is None:
        return []
    items = value.split(",") if isinstance(value, str) else list(value)
    return list(dict.fromkeys(s.strip() for s in items if s and s.strip()))


# ------------------------------------------------------------------------------------ the job


@dataclass
class Job:
    """What every process needs: the conversion, the dataset and this process's share of it."""

    result: ConversionResult
    dataset: Any
    n: int  # samples evaluated (all ranks)
    limit: int | None
    rank: int = 0
    world: int = 1

    @property
    def indices(self) -> range:
        return range(self.rank, self.n, self.world)


def distributed() -> tuple[int, int]:
    """(rank, world size). Under torchrun (RANK and WORLD_SIZE set) the process group is initialised
    here with gloo (CPU) if the caller has not done it."""
    import torch.distributed as dist
    if not dist.is_available():
        return 0, 1
    if not dist.is_initialized():
        if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
            return 0, 1
        dist.init_process_group("gloo")
    return dist.get_rank(), dist.get_world_size()


def _agree(error: BaseException | None, world: int) -> None:
    """Every rank learns whether any rank failed, and raises the first failure (no rank is left
    waiting in a collective for a rank that died)."""
    if world > 1:
        import torch.distributed as dist
        errors: list = [None] * world
        dist.all_gather_object(errors, None if error is None else (type(error).__name__, str(error)))
        failed = [(r, e) for r, e in enumerate(errors) if e is not None]
        if failed and error is None:
            rank, (kind, msg) = failed[0]
            raise EvalError(f"rank {rank} failed ({kind}): {msg}")
    if error is not None:
        raise error


def prepare(model: str | ConversionResult, data: Any, weights=None, init=None, seed: int = 0,
            limit: int | None = None, kind: str | None = None) -> Job:
    """Convert (rank 0 first: it may build and cache the seeded checkpoint), open the dataset and
    settle how many samples are evaluated: all of them, unless ``limit`` says fewer."""
    rank, world = distributed()
    result = model if isinstance(model, ConversionResult) else None
    for first in (True, False):  # rank 0, then the others (its seeded checkpoint is cached by then)
        error = None
        if result is None and (rank == 0) == first:
            try:
                result = convert(model, weights=weights, init=init, seed=seed)
            except Exception as exc:  # noqa: BLE001 - re-raised by _agree, after the other ranks are told
                error = exc
        _agree(error, world)
    dataset = open_data(result.spec, data, kind)
    total = len(dataset)
    if limit is not None and limit < 1:
        raise EvalError(f"--limit {limit}: evaluate at least one sample (the dataset at {dataset.root} "
                        f"holds {total})")
    if limit is not None and limit > total:
        raise EvalError(f"--limit {limit}: the dataset at {dataset.root} holds {total} samples")
    if total == 0:
        raise EvalError(f"the dataset at {dataset.root} holds no samples")
    return Job(result, dataset, limit or total, limit, rank, world)


def open_data(spec, data: Any, kind: str | None = None):
    """A dataset object, or a path opened as ``kind`` (default: the kind the model was published on)."""
    if not isinstance(data, (str, Path)):
        return data
    from .datasets import dataset_kind_for, open_dataset
    return open_dataset(kind or dataset_kind_for(spec), data)


# ------------------------------------------------------------------------------------ running


def _nets(job: Job, configs: Sequence[Config]) -> dict[str, Any]:
    out = {}
    for fw in dict.fromkeys(c.framework for c in configs):
        out[fw] = (predict.TorchNet(job.result.module) if fw == "torch" else
                   predict.PaddleNet(job.result) if fw == "paddle" else predict.MXNetNet(job.result))
    return out


def predict_shard(job: Job, configs: Sequence[Config], progress: bool = False) -> tuple[dict, dict]:
    """This rank's predictions {config: [(index, prediction)]} and seconds {config: s}."""
    spec = job.result.spec
    nets = _nets(job, configs)
    groups: dict[Any, dict[str, list]] = {}  # pipeline -> framework -> NMS variants
    for c in configs:
        groups.setdefault(c.pipeline, {}).setdefault(c.framework, []).append(c.nms)
    by_key = {(c.framework, c.pipeline, c.nms): c for c in configs}
    preds: dict[Config, list] = {c: [] for c in configs}
    seconds = dict.fromkeys(configs, 0.0)
    with _Progress(progress and job.rank == 0, len(job.indices), spec.name) as advance:
        for i in job.indices:
            sample = job.dataset[i]
            label = predict.LabelCache(sample)
            for pipe, frameworks in groups.items():
                t = time.perf_counter()
                views = predict.views(spec, sample, pipe)
                pre = time.perf_counter() - t
                for fw, variants in frameworks.items():
                    runs = [nets[fw](x, variants) for x, _ in views]
                    for nms in variants:
                        t = time.perf_counter()
                        outs = [(r[nms][0], x, m) for r, (x, m) in zip(runs, views)]
                        pred = predict.postprocess(spec, outs, label)
                        c = by_key[(fw, pipe, nms)]
                        preds[c].append((i, pred))
                        seconds[c] += pre + sum(r[nms][1] for r in runs) + time.perf_counter() - t
            advance()
    return preds, seconds


class _Progress:
    """A rich progress bar on stderr (rank 0 only); a no-op otherwise."""

    def __init__(self, show: bool, total: int, name: str):
        self.show, self.total, self.name = show, total, name

    def __enter__(self):
        if not self.show:
            return lambda: None
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, \
            TimeRemainingColumn
        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TimeElapsedColumn(), TimeRemainingColumn(), console=Console(stderr=True))
        self.bar.__enter__()
        task = self.bar.add_task(f"evaluating {self.name}", total=self.total)
        return lambda: self.bar.advance(task)

    def __exit__(self, *exc):
        if self.show:
            self.bar.__exit__(*exc)


def run(job: Job, configs: Sequence[Config], progress: bool = True) -> tuple[list[EvalRow], float]:
    """Rows for ``configs`` (the same on every rank) and the wall seconds."""
    start, asked = time.perf_counter(), configs
    configs = list(dict.fromkeys(configs))  # a ladder step that changes nothing shares its row
    local, error = None, None
    try:
        local = predict_shard(job, configs, progress)
    except Exception as exc:  # noqa: BLE001 - re-raised by _agree, after the other ranks are told
        error = exc
    _agree(error, job.world)
    parts = _gather(local, job)
    rows = None
    if job.rank == 0:
        try:
            rows = _score(job, configs, parts)
        except Exception as exc:  # noqa: BLE001 - as above
            error = exc
    if job.world > 1:
        rows = _broadcast(rows, error, job)
    elif error is not None:
        raise error
    by_config = dict(zip(configs, rows))
    return [by_config[c] for c in asked], time.perf_counter() - start


def _gather(local: tuple[dict, dict], job: Job) -> list[tuple[dict, dict]] | None:
    if job.world == 1:
        return [local]
    import torch.distributed as dist
    parts = [None] * job.world if job.rank == 0 else None
    dist.gather_object(local, parts, dst=0)
    return parts


def _broadcast(rows, error, job: Job) -> list[EvalRow]:
    import torch.distributed as dist
    box = [(rows, None if error is None else f"{type(error).__name__}: {error}")]
    dist.broadcast_object_list(box, src=0)
    rows, message = box[0]
    if error is not None:
        raise error
    if message is not None:
        raise EvalError(f"rank 0 failed computing metrics ({message})")
    return rows


def _score(job: Job, configs: Sequence[Config], parts: list[tuple[dict, dict]]) -> list[EvalRow]:
    """Metrics once per config, updated in dataset order (order-dependent metrics, e.g. VOC's score
    sort among equal scores, then match any sharding)."""
    from .metrics import metric_for
    spec, ds = job.result.spec, job.dataset
    rows = []
    for c in configs:
        preds = sorted((p for part, _ in parts for p in part[c]), key=lambda p: p[0])
        if [i for i, _ in preds] != list(range(job.n)):
            raise EvalError(f"{c.framework}/{c.preprocess}: evaluated {len(preds)} of the {job.n} samples "
                            f"asked for (the dataset holds {len(ds)})")
        metric = metric_for(ds.kind, ds, spec)
        for i, pred in preds:
            predict.update(metric, spec, ds[i], pred)
        seconds = max(s[c] for _, s in parts)
        rows.append(EvalRow(c.framework, c.preprocess, c.nms, metric.result(), len(preds), seconds))
    return rows


# -------------------------------------------------------------------------------------- entry


def configs_for(spec, preprocess: Sequence[str], framework: Sequence[str],
                nms: Sequence[str]) -> tuple[list[Config], list[str]]:
    """framework x preprocessing x NMS rows; MXNet runs only its own NMS (noted, not silently run)."""
    from converters.arch.nms import NMS_VARIANTS
    from .preprocess import VARIANTS
    for kind, got, known in (("--preprocess", preprocess, VARIANTS), ("--framework", framework, FRAMEWORKS),
                             ("--nms", nms, NMS_VARIANTS)):
        bad = [g for g in got if g not in known]
        if bad or not got:
            raise EvalError(f"{kind} {','.join(bad) or '(empty)'}: expected a comma list of {', '.join(known)}")
    source = predict.source_framework(spec)
    foreign = [f for f in framework if f not in ("torch", source)]
    if foreign:
        raise EvalError(f"--framework {','.join(foreign)}: {spec.name} runs in torch or its source framework "
                        f"{source}")
    notes = []
    if not predict.has_nms_variants(spec):
        if nms != ["mxnet"]:
            why = (f"a {spec.task} model" if spec.task != "detection" else
                   "a Paddle detector (Paddle's multiclass_nms semantics, no variants)")
            notes.append(f"--nms ignored: {spec.name} is {why}")
        nms = [None]
    configs = [Config(fw, pre, v) for fw, pre, v in product(framework, preprocess, nms)
               if fw != "mxnet" or v in (None, "mxnet")]
    skipped = [v for v in nms if v not in (None, "mxnet")] if "mxnet" in framework else []
    if skipped:
        notes.append(f"framework mxnet runs MXNet's own box_nms only: no mxnet row for nms {', '.join(skipped)}")
    return configs, notes


def evaluate(model: str | ConversionResult, data: Any, preprocess: str | Sequence[str] = ("cv2-exact",),
             framework: str | Sequence[str] = ("torch",), nms: str | Sequence[str] = "mxnet",
             weights: str | Path | None = None, init: str | None = None, seed: int = 0,
             limit: int | None = None, progress: bool = True, kind: str | None = None) -> EvalReport:
    """MODEL on the dataset at ``data``: one row per framework x preprocessing x NMS variant.
    Every sample is evaluated unless ``limit`` (the first ``limit`` samples)."""
    configs, notes = configs_for(spec_of(model), names(preprocess), names(framework), names(nms))
    job = prepare(model, data, weights, init, seed, limit, kind)  # options are checked before converting
    rows, seconds = run(job, configs, progress)
    return report(job, rows, seconds, notes)


def spec_of(model: str | ConversionResult):
    from converters import registry
    return model.spec if isinstance(model, ConversionResult) else registry.get(model)


def _is_published(result: ConversionResult) -> bool:
    from converters.sources import sha1sum
    return result.seed is None and sha1sum(result.source) == result.spec.weights().sha1


def report(job: Job, rows: list[EvalRow], seconds: float, notes: list[str]) -> EvalReport:
    r, spec = job.result, job.result.spec
    source = {"file": r.source.name, "sha256": r.manifest["source"]["sha256"], "seeded": r.seed is not None,
              "seed": r.seed}
    dataset = {"kind": job.dataset.kind, "root": str(job.dataset.root), "size": len(job.dataset)}
    # gluon-cv's numbers belong to its own checkpoint: shown only when the file is that checkpoint
    published = [{"name": m.name, "value": m.value, "dataset": m.dataset, "source": m.source}
                 for m in spec.metrics] if _is_published(r) else []
    return EvalReport(spec.name, spec.task, dataset, job.n, job.limit, source, rows, job.world, seconds,
                      notes, published, job.rank)
