"""Conversion reports: one model's card, mapping, per-layer errors, preprocessing differences,
metrics and latency as JSON + Markdown + self-contained HTML (`zooport report`), and the index
across models with a release tarball (`make reports`).

Data flows one way: model.py (collect, from the parity machinery) -> schema.json (checked) ->
document.py (blocks) -> markdown.py / html.py / plots.py -> files.py; index.py reads the JSONs."""
from __future__ import annotations

from pathlib import Path


def report(model: str, out_dir: str | Path = "reports", **kwargs) -> dict[str, Path]:
    """Collect and write MODEL's report into ``out_dir``; ``kwargs`` go to model.collect."""
    from .files import write
    from .model import collect
    return write(collect(model, **kwargs), out_dir)
