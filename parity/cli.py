"""The `zooport` command: converters' list/convert plus `verify`."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from converters.cli import Init, app, console, fail, out
from converters.errors import ZooportError


@app.command()
def verify(model: str = typer.Argument(..., help="model name (see `zooport list`)"),
           weights: Optional[Path] = typer.Option(None, "--weights", help="source checkpoint file"),
           init: Optional[Init] = typer.Option(None, "--init", help="'random': seeded source weights"),
           seed: int = typer.Option(0, "--seed"),
           images: int = typer.Option(0, "--images", help="use only the first N sample photographs"),
           save_runs: Optional[Path] = typer.Option(None, "--save-runs", help="write per-image HDF5 runs here"),
           size: Optional[str] = typer.Option(None, "--size", help="network input HxW instead of the preset's, e.g. 608x608"),
           as_json: bool = typer.Option(False, "--json", help="print the full report as JSON")) -> None:
    """Run MODEL in the source framework and in torch on real photographs; compare every layer."""
    from converters.samples import sample_photos
    from .verify import verify as run
    try:
        with console.status(f"verifying {model} against its source framework"):
            photos = sample_photos()[: images or None]
            report = run(model, weights=weights, init=init.value if init else None, seed=seed,
                         images=photos, save_runs=save_runs, size=_size(size))
    except ZooportError as exc:
        fail(exc)
    if as_json:
        out.print_json(json.dumps(report.to_dict(), default=float))
    else:
        _print(report)
    if not report.passed:
        raise typer.Exit(1)


def _size(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ZooportError(f"--size {text!r}: expected HxW, e.g. 608x608") from None
    return h, w


def _print(report) -> None:
    table = Table("layer (torch)", "source", "shape", "max abs", "needed", "allowed", "fp32 floor", "cosine", "",
                  title=f"{report.model}: {len(report.layers.diffs)} layer pairs on {len(report.images)} photographs")
    for d in report.layers.diffs + report.outputs:
        table.add_row(d.name, d.source, "x".join(map(str, d.shape)), f"{d.max_abs:.2e}", f"{d.needed:.1e}",
                      f"{d.allowed:.1e}", f"{d.floor:.1e}", f"{d.cosine:.7f}",
                      "[green]ok[/]" if d.passed else f"[red]FAIL[/] {d.error or ''}")
    out.print(table)
    first = report.layers.first_divergent
    out.print(f"first divergent layer: {first.name if first is not None else 'none'}")
    if report.replayed:
        out.print(f"continued from the source's output at: {', '.join(report.replayed)} "
                  "(layers after it compared on identical inputs)")
    if report.topk:
        t = report.topk
        out.print(f"top-{t['k']} identical on {t['identical']}/{t['images']} images, {t['tie_explained']} differing "
                  f"only inside logit ties (<= {t['tie_tol']:.1e}), {t['unexplained']} unexplained")
    if report.detections is not None:
        d, tol = report.detections, report.detection_tol
        out.print(f"detections: {d.identical}/{d.reference} identical, {d.tie_explained} in score ties, "
                  f"{d.unexplained} unexplained (score tol {tol['score']:.1e}, box tol {tol['box']:.1e} px)")
    if report.nms_variants:
        for name, v in report.nms_variants.items():
            out.print(f"  nms={name}: changes {v['changed']} of {v['reference']} MXNet detections "
                      f"({v['identical']} identical, {v['converted']} kept)")
    if report.argmax:
        a = report.argmax
        out.print(f"argmax per {a['unit']}: {a['identical']}/{a['count']} identical, {a['tie_explained']} differing "
                  f"only inside ties (<= {a['tie_tol']:.1e}), {a['unexplained']} unexplained")
    out.print("[bold green]PASS[/]" if report.passed else "[bold red]FAIL[/]")


def main() -> None:
    app()
