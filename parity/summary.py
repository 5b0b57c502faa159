"""One-line-per-model parity summaries (reports/parity/<model>.json) and the README table built
from the registry and those summaries."""
from __future__ import annotations

import json
import re
from pathlib import Path

from converters import registry
from converters.io.writer import write_json
from converters.sources import ROOT

from .selection import NO_SOURCE_RUNTIME, slow

SUMMARY_DIR = ROOT / "reports" / "parity"
MARK_START, MARK_END = "<!-- models:start -->", "<!-- models:end -->"


def task_check(report) -> str:
    """The task-level verdict in words: top-5 order, detections, argmax maps, OCR boxes or strings."""
    if report.topk:
        t = report.topk
        return (f"top-5 identical {t['identical']}/{t['images']}"
                + (f" (+{t['tie_explained']} in logit ties)" if t["tie_explained"] else ""))
    if report.detections is not None:
        d = report.detections
        text = f"{d.identical}/{d.reference} detections identical" + (
            f" (+{d.tie_explained} in score ties)" if d.tie_explained else "")
        if report.nms_variants:
            text += "; changed by nms " + ", ".join(
                f"{k} {v['changed']}" for k, v in report.nms_variants.items() if k != "mxnet")
        m = getattr(report, "masks", None)
        if m:
            text += (f"; masks: prob max err {m['prob_max_abs']:.1e} on {m['rows']} rows, pasted pixels differing "
                     f"{m['differing']}/{m['pixels']} ({m['unexplained']} unexplained)")
        return text
    if report.ocr and "boxes" in report.ocr:
        o = report.ocr
        return f"DB boxes identical on {o['identical_images']}/{o['images']} images ({o['boxes']} boxes)"
    if report.ocr:
        o = report.ocr
        return (f"strings identical {o['identical']}/{o['lines']}"
                + (f" (+{o['tie_explained']} in ties)" if o["tie_explained"] else ""))
    a = report.argmax
    return (f"argmax {a['identical']}/{a['count']} {a['unit']}s identical"
            + (f" (+{a['tie_explained']} in ties)" if a["tie_explained"] else ""))


def write_summary(report, result, out_dir: Path = SUMMARY_DIR) -> Path:
    diffs = report.layers.diffs
    task = task_check(report)
    summary = {"model": report.model, "passed": report.passed, "pairs": len(diffs),
               "params": sum(p.numel() for p in result.module.parameters()),
               "max_needed": max(d.needed for d in diffs), "max_ratio": max(d.needed / d.allowed for d in diffs),
               "above_1e-4": sum(d.needed > 1e-4 for d in diffs), "images": len(report.images),
               "seeded": result.seed is not None, "task_check": task}
    path = Path(out_dir) / f"{report.model}.json"
    write_json(path, summary)
    return path


def table(summary_dir: Path = SUMMARY_DIR, earlier: dict[str, str] | None = None) -> str:
    """``earlier``: model -> its row in the current README, kept for models this checkout has no
    summary of (a partial parity run must not blank the rows a full run measured)."""
    earlier = earlier or {}
    rows = ["| model | family | input | parameters | layer pairs | max normalised error | task check | verdict |",
            "|---|---|---|---:|---:|---:|---|---|"]
    for spec in registry.specs():
        path = Path(summary_dir) / f"{spec.name}.json"
        size = "x".join(map(str, spec.preprocess.size))
        if not path.exists() and spec.name in earlier and not earlier[spec.name].rstrip(" |").endswith(("not run", "(parity-full only)")):
            cells = earlier[spec.name].split("|")
            if slow(spec.name) and "parity-full" not in cells[-2]:  # left CI since that run
                cells[-2] = cells[-2].replace("pass", "pass (parity-full)", 1)
            rows.append("|".join(cells))
            continue
        if not path.exists() and spec.framework in NO_SOURCE_RUNTIME:  # nothing to run the source with
            rows.append(f"| {spec.name} | {spec.family} | {size} | | | | | no source runtime: exact transfer "
                        "and per-op tests (see the Detectron section) |")
            continue
        if not path.exists():
            rows.append(f"| {spec.name} | {spec.family} | {size} | | | | | not run{' (parity-full only)' if slow(spec.name) else ''} |")
            continue
        s = json.loads(path.read_text())
        verdict = ("pass" if s["passed"] else "FAIL") + (" (parity-full)" if slow(spec.name) else "")
        if s["above_1e-4"]:
            n = s["above_1e-4"]
            verdict += f" ({n} pair{'s' if n > 1 else ''} above 1e-4, within {'their' if n > 1 else 'its'} fp32 floor)"
        rows.append(f"| {spec.name} | {spec.family} | {size} | {s['params'] / 1e6:.1f}M | {s['pairs']} | "
                    f"{s['max_needed']:.1e} | {s['task_check']} on {s['images']} {'real' if not s['seeded'] else ''} images | {verdict} |".replace("  ", " "))
    return "\n".join(rows)


def update_readme(readme: Path = ROOT / "README.md", summary_dir: Path = SUMMARY_DIR) -> None:
    text = readme.read_text()
    pattern = re.compile(re.escape(MARK_START) + r".*?" + re.escape(MARK_END), re.S)
    if not pattern.search(text):
        raise SystemExit(f"{readme}: no {MARK_START} ... {MARK_END} section")
    old = pattern.search(text).group(0).splitlines()[3:-1]  # after the marker, header and rule
    earlier = {row.split("|")[1].strip(): row for row in old if row.startswith("|")}
    readme.write_text(pattern.sub(lambda _: f"{MARK_START}\n{table(summary_dir, earlier)}\n{MARK_END}", text))


if __name__ == "__main__":
    update_readme()
