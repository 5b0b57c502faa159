"""A collected report -> DIR/MODEL.json, DIR/MODEL.md (+ its PNG figures) and DIR/MODEL.html, each
written atomically (temp file + rename) after the JSON is checked against the schema."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from converters.io.writer import write_json

from . import document, html, markdown, plots
from .model import Collected
from .schema import validate


SUFFIXES = (".json", ".md", ".html", ".depth.png", ".preprocess.png")  # a report's files: MODEL + suffix


def write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would follow the files into the release tarball
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def figures(c: Collected) -> dict[str, bytes]:
    r = c.report
    out = {"depth": plots.depth(r["layers"])}
    p = r["preprocessing"]
    if p["applicable"]:
        out["preprocess"] = plots.heatmap(c.photo, c.heatmaps, p["reference"], p["photograph"])
    return out


def write(c: Collected, out_dir: str | Path) -> dict[str, Path]:
    """Write the report's files; return them by kind."""
    r, out_dir = c.report, Path(out_dir)
    validate(r)
    name = r["model"]
    pngs = figures(c)
    blocks = document.build(r)
    paths = {"json": out_dir / f"{name}.json", "md": out_dir / f"{name}.md", "html": out_dir / f"{name}.html"}
    write_json(paths["json"], r)
    for key, png in pngs.items():
        paths[key] = out_dir / f"{name}.{key}.png"
        write_atomic(paths[key], png)
    write_atomic(paths["md"], markdown.render(blocks, {k: paths[k].name for k in pngs}).encode())
    write_atomic(paths["html"], html.render(blocks, pngs, f"zooport: {name}").encode())
    return paths
