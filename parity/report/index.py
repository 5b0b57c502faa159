"""The index across models (DIR/index.md, DIR/index.html) from the reports' JSON files, in the
shape of gluon-cv's model-zoo tables (model, source metric, converted metric per preprocessing,
max error, verdict), and the release tarball of every report file.

    python -m parity.report.index [DIR]        (`make reports` runs it after the reports)"""
from __future__ import annotations

import gzip
import io
import json
import sys
import tarfile
from pathlib import Path

from .document import Heading, Para, Table, e
from .files import SUFFIXES, write_atomic
from .html import render as render_html
from .markdown import render as render_md
from .schema import errors

TARBALL = "zooport-reports.tar.gz"
VARIANTS = ("mxnet", "cv2-exact", "pil", "torchvision")


def load(out_dir: Path) -> list[dict]:
    """Every report JSON in ``out_dir`` (other JSON files there, e.g. bench.json, are skipped)."""
    out = []
    for path in sorted(Path(out_dir).glob("*.json")):
        data = json.loads(path.read_text())
        if isinstance(data, dict) and "schema_version" in data and "card" in data:
            problems = errors(data)
            if problems:
                raise ValueError(f"{path}: not a valid report: {'; '.join(problems[:5])}")
            out.append(data)
    return out


def _source_metric(r: dict) -> str:
    """The publisher's numbers, then (with a dataset) the source framework's own on the source pipeline."""
    pub = "; ".join(f"{m['name']} {m['value']:g} ({m['dataset']})" for m in r["card"]["published_metrics"])
    m = r["metrics"]
    if m is None:
        return pub or "—"
    name = m["ladder"]["metric"]
    src = [row for row in m["evaluation"]["rows"] if row["framework"] != "torch" and row["preprocess"] == "mxnet"]
    measured = f"{src[0]['framework']}: {name} {src[0]['metrics'][name]:.4f}" if src else ""
    return "; ".join(x for x in (pub and f"published {pub}", measured) if x) or "—"


def _converted(r: dict) -> list[str]:
    """The headline metric in torch per preprocessing variant, when the report was given a dataset."""
    m = r["metrics"]
    if m is None:
        return ["—"] * len(VARIANTS)
    name = m["ladder"]["metric"]
    by = {row["preprocess"]: row["metrics"].get(name) for row in m["evaluation"]["rows"]
          if row["framework"] == "torch" and row["nms"] in (None, "mxnet")}
    return [f"{name} {by[v]:.4f}" if by.get(v) is not None else "—" for v in VARIANTS]


def blocks(reports: list[dict]) -> list:
    rows, bad = [], set()
    for i, r in enumerate(reports):
        c = r["card"]
        weights = "seeded" if c["source"]["weights"] == "seeded" else "pretrained"
        rows.append([r["model"], r["task"], weights, _source_metric(r), *_converted(r), e(r["layers"]["max_needed"]),
                     c["verdict"].upper()])
        if c["verdict"] != "pass":
            bad.add(i)
    seeded = sum(r["card"]["source"]["weights"] == "seeded" for r in reports)
    return [Heading("zooport conversion reports", 1),
            Para(f"{len(reports)} models ({seeded} with seeded random weights: their parity is measured to the "
                 "same standard, but they have no accuracy of their own). Source metric: the publisher's number "
                 "for its checkpoint, and with a dataset the source framework's own on it. Converted metric: the converted model in torch per preprocessing variant, "
                 "when the report was built with a dataset (`zooport report MODEL --data PATH`). Max error: "
                 "the largest max |err| / max |ref| over every layer pair and output. Each model's own report "
                 "(`MODEL.html`, `MODEL.md`, `MODEL.json`) holds the card, mapping, per-layer errors, "
                 "preprocessing differences and latency."),
            Table(["model", "task", "weights", "source metric", *(f"converted ({v})" for v in VARIANTS),
                   "max error", "verdict"], rows, right={8}, bad=bad,
                  links=[f"{r['model']}.html" for r in reports])]


def tarball(out_dir: Path, files: list[Path]) -> Path:
    """A reproducible .tar.gz: sorted members, fixed mtime/owner, gzip header without a timestamp."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for f in sorted(files):
            info = tarfile.TarInfo(f"zooport-reports/{f.name}")
            data = f.read_bytes()
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            tar.addfile(info, io.BytesIO(data))
    packed = io.BytesIO()
    with gzip.GzipFile(fileobj=packed, mode="wb", mtime=0, filename="") as gz:
        gz.write(raw.getvalue())
    path = out_dir / TARBALL
    write_atomic(path, packed.getvalue())
    return path


def build(out_dir: str | Path = "reports") -> dict[str, Path]:
    out_dir = Path(out_dir)
    reports = load(out_dir)
    if not reports:
        raise SystemExit(f"{out_dir}: no report JSON files (run `zooport report MODEL --out {out_dir}`)")
    doc = blocks(reports)
    paths = {"md": out_dir / "index.md", "html": out_dir / "index.html"}
    write_atomic(paths["md"], render_md(doc, {}).encode())
    write_atomic(paths["html"], render_html(doc, {}, "zooport conversion reports").encode())
    members = [paths["md"], paths["html"]]
    for r in reports:
        members += [p for p in (out_dir / f"{r['model']}{suffix}" for suffix in SUFFIXES) if p.is_file()]
    paths["tarball"] = tarball(out_dir, members)
    return paths


if __name__ == "__main__":
    for kind, path in build(sys.argv[1] if len(sys.argv) > 1 else "reports").items():
        print(f"{kind}\t{path}")
