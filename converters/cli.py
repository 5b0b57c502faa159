"""`zooport list` and `zooport convert` (parity/cli.py adds `verify` and builds the one app)."""
from __future__ import annotations

import json
import sys
from enum import Enum
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from . import registry
from .errors import ZooportError

_WIDTH = None if sys.stdout.isatty() else 200  # rich folds at 80 columns when piped
console = Console(stderr=True, width=_WIDTH)
out = Console(width=_WIDTH)
app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Port MXNet/Gluon checkpoints to PyTorch and prove the port faithful.")


class Init(str, Enum):
    random = "random"


class Fmt(str, Enum):
    safetensors = "safetensors"
    pth = "pth"


class Dtype(str, Enum):
    keep = "keep"
    float32 = "float32"
    float16 = "float16"
    bfloat16 = "bfloat16"


def fail(exc: ZooportError) -> None:
    """One line, plus a hint line, non-zero exit."""
    console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
    if exc.hint:
        console.print(f"[yellow]hint:[/] {exc.hint}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)


@app.command("list")
def list_models(as_json: bool = typer.Option(False, "--json", help="machine-readable output")) -> None:
    """The registered models with family, task and input size."""
    from .pipeline import layouts
    specs = registry.specs()
    if as_json:
        out.print_json(json.dumps([{"name": s.name, "family": s.family, "task": s.task,
                                    "input": list(s.preprocess.size), "layouts": layouts(s),
                                    "metrics": {m.name: m.value for m in s.metrics}} for s in specs]))
        return
    table = Table("model", "family", "task", "input", "source layouts", "published")
    for s in specs:
        table.add_row(s.name, s.family, s.task, "x".join(map(str, s.preprocess.size)), ", ".join(layouts(s)),
                      ", ".join(f"{m.name} {m.value}" for m in s.metrics))
    out.print(table)


@app.command()
def convert(model: str = typer.Argument(..., help="model name (see `zooport list`)"),
            weights: Optional[Path] = typer.Option(None, "--weights", help="source checkpoint file"),
            init: Optional[Init] = typer.Option(None, "--init", help="'random': seeded source weights built by the source framework"),
            seed: int = typer.Option(0, "--seed", help="seed for --init random"),
            out_dir: Optional[Path] = typer.Option(None, "--out", help="output directory [default: weights/]"),
            fmt: Fmt = typer.Option(Fmt.safetensors, "--format", help="output format"),
            download: bool = typer.Option(True, "--download/--no-download", help="allow fetching from the model store"),
            dtype: Dtype = typer.Option(Dtype.keep, "--dtype", help="floating tensors: keep each source dtype, or cast all"),
            allow_nonfinite: bool = typer.Option(False, "--allow-nonfinite", help="convert sources holding NaN/Inf (listed in the manifest)")) -> None:
    """Convert MODEL; writes OUT/MODEL.safetensors (or .pth) and OUT/MODEL.json."""
    from .pipeline import convert as run, default_out_dir
    try:
        with console.status(f"converting {model}"):
            result = run(model, weights=weights, init=init.value if init else None, seed=seed, download=download,
                         dtype=dtype.value, allow_nonfinite=allow_nonfinite)
            wpath, mpath = result.write(out_dir or default_out_dir(), fmt.value)
    except ZooportError as exc:
        fail(exc)
    counts = result.manifest["counts"]
    console.print(f"[green]converted[/] {model} from {result.source.name} ({result.layout} layout): "
                  f"{counts['mapped']} mapped, {counts['ignored']} ignored, {counts['default']} defaulted")
    for row in result.manifest.get("nonfinite", []):
        console.print(f"[yellow]warning:[/] non-finite values allowed in {row['tensor'] or row['target']}: "
                      + ", ".join(f"{row[k]} {k}" for k in ("nan", "posinf", "neginf") if row.get(k)), highlight=False)
    out.print(f"{wpath}\tsha256:{result.manifest['output']['sha256']}")
    out.print(str(mpath))


OCR_MODELS = ("ppocrv4_det", "ppocr_mobile_v2_cls", "ppocrv4_rec")


@app.command()
def ocr(image: Path = typer.Argument(..., help="an image file (anything OpenCV decodes)"),
        weights_dir: Optional[Path] = typer.Option(None, "--weights-dir", help="converted PP-OCR models [default: weights/]; missing ones are converted from the installed wheel"),
        direction: bool = typer.Option(True, "--cls/--no-cls", help="run the 0/180-degree direction classifier"),
        as_json: bool = typer.Option(False, "--json", help="machine-readable output")) -> None:
    """Read the text in IMAGE with the converted PP-OCRv4 det -> cls -> rec models, in torch alone."""
    import cv2
    from .ocr import OCR
    from .paddle.ppocr import charset_path
    from .pipeline import convert as run, default_out_dir
    try:
        bgr = cv2.imread(str(image), cv2.IMREAD_COLOR)
        if bgr is None:
            raise ZooportError(f"{image}: not an image OpenCV can decode (missing or corrupt?)")
        folder = weights_dir or default_out_dir()
        files = {}
        for name in OCR_MODELS:
            files[name] = folder / f"{name}.safetensors"
            if not files[name].is_file():
                with console.status(f"converting {name} from the installed wheel"):
                    run(name).write(folder)
        engine = OCR.load(files["ppocrv4_det"], files["ppocrv4_rec"], charset_path(),
                          files["ppocr_mobile_v2_cls"] if direction else None)
        lines = engine(bgr[..., ::-1].copy())
    except ZooportError as exc:
        fail(exc)
    if as_json:
        out.print_json(json.dumps([line.__dict__ for line in lines]))
        return
    for line in lines:
        box = " ".join(f"{x},{y}" for x, y in line.box)
        typer.echo(f"{box}\t{line.confidence:.3f}\t{line.text}")  # tab-separated: rich would expand tabs
    console.print(f"{len(lines)} text line(s)")


def main() -> None:  # pragma: no cover - the parity app is the real entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
