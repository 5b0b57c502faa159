"""Latency and peak memory of the converted module against the source framework, each measured in
a fresh process by parity/bench.py's children (so peak RSS is that process's own).

The children are started from a small intermediate process (``python -m parity.report.perf``):
Linux carries a process's peak RSS across fork and exec, so children forked from the report's own
process (torch, MXNet and the models loaded) would report at least its size."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BATCH = 1
RUNS, WARMUP = 10, 2
KEEP = ("median_ms", "min_ms", "runs", "warmup")
MARK = "@@report-perf@@ "


def _source_job(result) -> tuple[str | None, str | None, str | None]:
    """(child kind, source path, why not measured)."""
    spec = result.spec
    if spec.framework == "gluon" and result.layout == "gluon":
        return "infer-mxnet", str(result.source), None
    if spec.framework == "paddle" and result.layout == "inference":
        return "infer-paddle", str(result.source), None
    return None, None, ("parity/bench.py times gluoncv networks in MXNet and Paddle inference programs in "
                        f"Paddle's predictor; this source is a {result.layout}-layout checkpoint")


def _side(child: dict) -> dict:
    timed = child["batches"][str(BATCH)]
    return {**{k: timed[k] for k in KEEP}, "peak_rss_mib": child["peak_rss_mib"],
            "other_load_cores": child.get("timed_other_load_cores", child["other_load_cores"]),
            "version": child.get("version")}


def measure(result, converted: Path) -> dict:
    """Batch-1 latency (median of RUNS after WARMUP) and peak RSS, torch then the source framework,
    on the same seeded input, with bench.THREADS threads each. Not retried under contention: the
    neighbours' CPU use is recorded beside each figure instead."""
    from ..bench import ROOT, THREADS
    spec = result.spec
    kind, source, why = _source_job(result)
    plan = {"model": spec.name, "size": list(spec.preprocess.size), "threads": THREADS,
            "converted": str(converted), "source_kind": kind, "source": source}
    proc = subprocess.run([sys.executable, "-m", "parity.report.perf", json.dumps(plan)], cwd=ROOT,
                          capture_output=True, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(MARK)]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{spec.name}: latency measurement failed:\n{proc.stderr[-3000:]}")
    sides = json.loads(lines[-1][len(MARK):])
    torch_side, source_side = sides["torch"], sides["source"]
    ratio = (round(source_side["median_ms"] / torch_side["median_ms"], 3)
             if source_side and torch_side["median_ms"] > 0 else None)
    return {"batch": BATCH, "threads": THREADS, "input_hw": plan["size"],
            "includes_postprocessing": spec.task == "detection",
            "source_framework": kind.removeprefix("infer-") if kind else None, "not_measured": why,
            "torch": torch_side, "source": source_side, "source_over_torch": ratio}


def _run(plan: dict) -> dict:
    """In the small intermediate process: one bench child per framework."""
    from ..bench import run_child
    common = {"model": plan["model"], "size": plan["size"], "batches": [[BATCH, [RUNS, WARMUP]]],
              "threads": plan["threads"]}
    torch_side = _side(run_child("infer-torch", {**common, "weights": plan["converted"]}))
    kind = plan["source_kind"]
    source_side = _side(run_child(kind, {**common, "weights": plan["source"]})) if kind else None
    return {"torch": torch_side, "source": source_side}


if __name__ == "__main__":
    print(MARK + json.dumps(_run(json.loads(sys.argv[1]))), flush=True)
