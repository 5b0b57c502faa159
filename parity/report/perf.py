"""Latency and peak memory of the converted module against the source framework, each measured in
a fresh process by parity/bench.py's children (so peak RSS is that process's own)."""
from __future__ import annotations

from pathlib import Path

from converters.pipeline import ConversionResult

BATCH = 1
RUNS, WARMUP = 10, 2
KEEP = ("median_ms", "min_ms", "runs", "warmup")


def _source_job(result: ConversionResult) -> tuple[str | None, str | None, str | None]:
    """(child kind, source path, why not measured)."""
    spec = result.spec
    if spec.framework == "gluon" and result.layout == "gluon":
        return "infer-mxnet", str(result.source), None
    if spec.framework == "paddle" and result.layout == "inference":
        return "infer-paddle", str(result.source), None
    return None, None, (f"the {spec.framework} benchmark runs gluoncv networks and Paddle inference programs; "
                        f"this source is a {result.layout}-layout checkpoint")


def _side(child: dict) -> dict:
    timed = child["batches"][str(BATCH)]
    return {**{k: timed[k] for k in KEEP}, "peak_rss_mib": child["peak_rss_mib"],
            "other_load_cores": child.get("timed_other_load_cores", child["other_load_cores"]),
            "version": child.get("version")}


def measure(result: ConversionResult, converted: Path) -> dict:
    """Batch-1 latency (median of RUNS after WARMUP) and peak RSS, torch then the source framework,
    on the same seeded input, with bench.THREADS threads each. Not retried under contention: the
    neighbours' CPU use is recorded beside each figure instead."""
    from ..bench import THREADS, run_child
    spec = result.spec
    common = {"model": spec.name, "size": list(spec.preprocess.size), "batches": [[BATCH, [RUNS, WARMUP]]],
              "threads": THREADS}
    torch_side = _side(run_child("infer-torch", {**common, "weights": str(converted)}))
    kind, source, why = _source_job(result)
    source_side = _side(run_child(kind, {**common, "weights": source})) if kind else None
    ratio = (round(source_side["median_ms"] / torch_side["median_ms"], 3)
             if source_side and torch_side["median_ms"] > 0 else None)
    return {"batch": BATCH, "threads": THREADS, "input_hw": list(spec.preprocess.size),
            "includes_postprocessing": spec.task == "detection",
            "source_framework": kind.removeprefix("infer-") if kind else None, "not_measured": why,
            "torch": torch_side, "source": source_side, "source_over_torch": ratio}
