"""Everything one report holds, collected from the parity machinery into one JSON-able dict (the
shape schema.json describes): the summary card, the mapping table grouped by module, per-layer
errors along depth, preprocessing differences per variant, metrics per variant (with a dataset),
latency and peak memory. Rendering (document.py, plots.py) reads only this dict, plus the heat-map
arrays, which are too big for JSON."""
from __future__ import annotations

import importlib.metadata as md
import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from converters import __version__
from converters.pipeline import ConversionResult, convert

from ..compare import FLOOR_FACTOR
from .perf import measure

SCHEMA_VERSION = 1
REFERENCE = "mxnet"  # the source's own pipeline (cv2-exact where the source pipeline is cv2 code)
VARIANTS = ("cv2-exact", "pil", "torchvision")  # compared against REFERENCE
# measured, not computed: the fields two runs may disagree on (dropped by `without_measurements`)
MEASURED = frozenset({"median_ms", "min_ms", "times_ms", "peak_rss_mib", "wall_s", "other_load_cores",
                      "seconds", "cpu_s", "user_cpu_ms_per_run", "sys_cpu_ms_per_run",
                      "timed_other_load_cores", "source_over_torch", "phases_s"})


@dataclass
class Collected:
    """The report (JSON-able) and the arrays the figures draw that are too big for JSON."""

    report: dict
    photo: np.ndarray | None = None  # the reference network input of the heat-map photograph
    heatmaps: dict = field(default_factory=dict)  # variant -> HxW max |level difference| (None: other shape)


def collect(name: str, weights: str | Path | None = None, init: str | None = None, seed: int = 0,
            data: str | Path | None = None, limit: int | None = None, images: int | None = None,
            bench: bool = True, fallback_random: bool = False) -> Collected:
    """Convert ``name``, verify it on photographs and gather the report. ``fallback_random``:
    with neither ``weights`` nor ``init``, seeded weights when no published file is on disk."""
    from converters.samples import sample_photos
    from ..verify import verify
    result = _convert(name, weights, init, seed, fallback_random)
    spec = result.spec
    pool = spec.samples() if spec.samples else sample_photos()
    photos = pool[: images or spec.parity_images]
    parity = verify(name, result=result, images=photos)
    pre, photo, heat = preprocessing(spec, pool)
    with tempfile.TemporaryDirectory(prefix="zooport-report-") as tmp:
        converted, _ = result.write(tmp)
        report = {"schema_version": SCHEMA_VERSION, "model": spec.name, "family": spec.family,
                  "framework": spec.framework, "task": spec.task, "input_hw": list(spec.preprocess.size),
                  "card": card(result, parity),
                  "mapping": mapping(result),
                  "layers": layers(parity, spec.tolerance),
                  "preprocessing": pre,
                  "metrics": metrics(result, data, limit) if data is not None else None,
                  "performance": measure(result, converted) if bench else None}
    return Collected(finite(report), photo, heat)


def _convert(name, weights, init, seed, fallback_random) -> ConversionResult:
    if fallback_random and weights is None and init is None:
        from converters import registry
        from converters.sources import resolve
        from converters.errors import WeightsNotFound
        spec = registry.get(name)
        try:
            resolve(spec.weights(), download=False)
        except WeightsNotFound:
            init = "random"  # labelled "seeded" in the card
    return convert(name, weights=weights, init=init, seed=seed, download=not fallback_random)


def _versions(framework: str) -> dict:
    dists = ("torch", "torchvision") + (("mxnet", "gluoncv") if framework == "gluon" else ("paddlepaddle",))
    out = {}
    for d in dists:
        try:
            out[d] = md.version(d)
        except md.PackageNotFoundError:
            out[d] = None
    return out


def _published(result: ConversionResult) -> bool | None:
    """Whether the source file is the publisher's (by the hash it lists); None: it lists none."""
    if result.seed is not None:
        return False
    record = result.spec.weights()
    if record.sha1 is None:
        return None
    from converters.sources import sha1sum
    return sha1sum(result.source) == record.sha1


def card(result: ConversionResult, parity) -> dict:
    m = result.manifest
    seeded = result.seed is not None
    first = parity.layers.first_divergent
    return {"source": {"file": m["source"]["file"], "sha256": m["source"]["sha256"], "layout": result.layout,
                       "weights": "seeded" if seeded else "pretrained", "seed": result.seed,
                       "published": _published(result)},
            "converted": {k: m["output"][k] for k in ("file", "format", "sha256")},
            "converter_version": __version__, "rules_digest": m["metadata"]["rules_digest"],
            "versions": _versions(result.spec.framework),
            "published_metrics": [{"name": x.name, "value": x.value, "dataset": x.dataset, "source": x.source}
                                  for x in result.spec.metrics],
            "verdict": "pass" if parity.passed else "fail",
            "first_divergent": first.name if first is not None else None,
            "task_check": _task_check(parity)}


def _task_check(parity) -> str:
    from ..summary import task_check
    return task_check(parity)


def module_of(row: dict) -> str:
    """The module a mapping row belongs to: its target's owner, or its source's for ignored tensors."""
    name = row["target"] or row["source"] or ""
    owner = name.rpartition(".")[0]
    return owner or "(root)"


def mapping(result: ConversionResult) -> dict:
    """Rows grouped by module, in the order the mapping visited them."""
    groups: dict[str, list] = {}
    for row in result.manifest["mapping"]:
        key = module_of(row) if row["status"] != "ignored" else "(ignored)"
        groups.setdefault(key, []).append(
            {k: row.get(k) for k in ("source", "target", "shape", "dtype", "status", "fixup", "why")})
    return {"counts": dict(result.manifest["counts"]),
            "groups": [{"module": k, "rows": v} for k, v in groups.items()]}


def _diff(d, index: int | None = None) -> dict:
    out = {"name": d.name, "source": d.source, "shape": list(d.shape), "max_abs": d.max_abs,
           "needed": d.needed, "allowed": d.allowed, "floor": d.floor, "cosine": d.cosine,
           "passed": d.passed, "error": d.error}
    return out if index is None else {"index": index, **out}


def layers(parity, tolerance: float) -> dict:
    diffs = parity.layers.diffs
    first = parity.layers.first_divergent
    every = diffs + parity.outputs
    return {"tolerance": tolerance, "floor_factor": FLOOR_FACTOR, "images": list(parity.images),
            "variant": parity.variant, "pairs": len(diffs),
            "first_divergent": first.name if first is not None else None,
            "first_divergent_index": diffs.index(first) if first is not None else None,
            "max_needed": max(d.needed for d in every), "max_ratio": max(d.needed / d.allowed for d in every),
            "diffs": [_diff(d, i) for i, d in enumerate(diffs)],
            "outputs": [_diff(d) for d in parity.outputs]}


LEVEL_BINS = (0, 1, 2, 4, 8, 16, 32, 256)  # histogram edges of |level difference| on the photograph


def preprocessing(spec, pool: Sequence[tuple[str, np.ndarray]]) -> tuple[dict, np.ndarray | None, dict]:
    """uint8 network inputs of each variant against the source pipeline's, on every photograph;
    on the first photograph, the per-pixel difference (max over channels) and its histogram."""
    if spec.prepare is not None:
        return {"applicable": False, "reason": f"{spec.name} takes its own input contract (image-dependent "
                                               "size): the preset pipelines do not apply",
                "reference": None, "photograph": None, "variants": {}, "histogram": None}, None, {}
    from ..preprocess import pixel_differences, pixels
    record = spec.preprocess
    stats = pixel_differences(pool, record, VARIANTS, against=REFERENCE)
    photo, img = pool[0]
    ref = pixels(img, record, REFERENCE)
    heat, hist = {}, {"edges": list(LEVEL_BINS), "counts": {}}
    for v in VARIANTS:
        got = pixels(img, record, v)
        same = got.shape == ref.shape
        heat[v] = np.abs(got.astype(np.int16) - ref.astype(np.int16)).max(-1) if same else None
        hist["counts"][v] = np.histogram(heat[v], LEVEL_BINS)[0].tolist() if same else None
    return ({"applicable": True, "reason": None, "reference": REFERENCE, "photograph": photo,
             "variants": stats, "histogram": hist}, ref, heat)


def metrics(result: ConversionResult, data, limit: int | None) -> dict:
    """Every variant in torch and the source framework, then the ladder from the source pipeline
    to the typical port's (pil preprocessing, torchvision NMS)."""
    from ..evaluate import evaluate
    from ..explain import explain
    from ..predict import source_framework
    from ..preprocess import VARIANTS as ALL
    spec = result.spec
    ev = evaluate(result, data, list(ALL), ["torch", source_framework(spec)], "mxnet", limit=limit,
                  progress=False).to_dict()
    ladder = explain(result, data, target="pil", nms="torchvision", limit=limit, progress=False).to_dict()
    return {"evaluation": ev, "ladder": ladder}


def finite(value: Any) -> Any:
    """numpy to Python, non-finite floats to None (strict JSON)."""
    if isinstance(value, dict):
        return {str(k): finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value


def without_measurements(value: Any) -> Any:
    """The report with every measured field (timings, memory, neighbours' load) removed: what two
    runs must agree on exactly."""
    if isinstance(value, dict):
        return {k: without_measurements(v) for k, v in value.items() if k not in MEASURED}
    if isinstance(value, list):
        return [without_measurements(v) for v in value]
    return value

