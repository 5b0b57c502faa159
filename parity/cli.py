"""The `zooport` command: converters' list/convert plus `verify`, `eval`, `explain` and `report`."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from converters.cli import Init, app, console, fail, out
from converters.errors import ZooportError


@app.command()
def verify(models: list[str] = typer.Argument(..., help="model name(s) (see `zooport list`)"),
           weights: Optional[Path] = typer.Option(None, "--weights", help="source checkpoint, or a converted "
                                                  "MODEL.safetensors/.pth beside its MODEL.json (sha256 checked, "
                                                  "conversion redone from its source and compared)"),
           init: Optional[Init] = typer.Option(None, "--init", help="'random': seeded source weights"),
           seed: int = typer.Option(0, "--seed"),
           images: int = typer.Option(0, "--images", help="use only the first N sample photographs"),
           save_runs: Optional[Path] = typer.Option(None, "--save-runs", help="write per-image HDF5 runs here"),
           size: Optional[str] = typer.Option(None, "--size", help="network input HxW instead of the preset's, e.g. 608x608"),
           as_json: bool = typer.Option(False, "--json", help="print the full report as JSON")) -> None:
    """Run MODEL(s) in the source framework and in torch on real inputs; compare every layer.
    With several models, a summary table follows the per-model reports."""
    from converters import registry
    from converters.samples import sample_photos
    from .verify import verify as run
    if len(models) > 1 and weights is not None:
        fail(ZooportError("--weights names one checkpoint: give one model with it"))
    reports = []
    for model in models:
        try:
            with console.status(f"verifying {model} against its source framework"):
                spec = registry.get(model)
                result = _converted(model, weights, init)  # --weights naming a zooport output
                pool = spec.samples() if spec.samples else sample_photos()  # the model's own inputs
                report = run(model, weights=None if result else weights, init=init.value if init else None,
                             seed=seed, images=pool[: images or None], save_runs=save_runs, size=_size(size),
                             result=result)
        except ZooportError as exc:
            fail(exc)
        if as_json:
            out.print_json(json.dumps(report.to_dict(), default=float))
        else:
            _print(report)
        reports.append(report)
    if len(reports) > 1 and not as_json:
        _summary(reports)
    if not all(r.passed for r in reports):
        raise typer.Exit(1)


def _converted(model: str, weights: Optional[Path], init):
    """For --weights naming a converted file: its manifest's sha256 checked, then the conversion
    redone from its source and proven equal to the file (that conversion is what parity runs).
    None for a source checkpoint (convert checks a published one's hash)."""
    from converters.integrity import is_converted, reconvert
    if weights is None or not is_converted(Path(weights)):
        return None
    if init is not None:
        raise ZooportError("give either --weights or --init random, not both")
    return reconvert(model, Path(weights))


def _summary(reports) -> None:
    from .summary import task_check
    table = Table("model", "source", "layer pairs", "worst needed/allowed", "first divergent", "task check", "verdict",
                  title="parity summary")
    for r in reports:
        diffs = r.layers.diffs + r.outputs
        ratio = max((d.needed / d.allowed for d in diffs if d.allowed), default=0.0)
        first = r.layers.first_divergent
        table.add_row(r.model, "seeded" if r.source.get("seeded") else r.source["file"], str(len(r.layers.diffs)),
                      f"{ratio:.2f}", first.name if first is not None else "none", task_check(r),
                      "[green]PASS[/]" if r.passed else "[red]FAIL[/]")
    out.print(table)


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
    if report.ocr and "boxes" in report.ocr:
        o = report.ocr
        out.print(f"DB boxes: identical on {o['identical_images']}/{o['images']} images ({o['boxes']} source boxes); "
                  f"{o['mask_flips']} binarisation flips, {o['mask_flips_unexplained']} outside ties (<= {o['tie_tol']:.1e})")
    elif report.ocr:
        o = report.ocr
        out.print(f"CTC strings: {o['identical']}/{o['lines']} identical, {o['tie_explained']} differing only inside "
                  f"ties, {o['unexplained']} unexplained; source read: {' | '.join(o['texts'])}")
    out.print("[bold green]PASS[/]" if report.passed else "[bold red]FAIL[/]")


@app.command("eval")
def eval_(model: str = typer.Argument(..., help="model name (see `zooport list`)"),
          data: Path = typer.Option(..., "--data", help="dataset root (ImageNet val, VOCdevkit, COCO, ADE20K, ...)"),
          preprocess: str = typer.Option("cv2-exact", "--preprocess",
                                         help="comma list of mxnet, cv2-exact, pil, torchvision"),
          framework: str = typer.Option("torch", "--framework", help="comma list of torch and the source framework (mxnet or paddle)"),
          nms: str = typer.Option("mxnet", "--nms", help="detectors: comma list of mxnet, torchvision, naive"),
          weights: Optional[Path] = typer.Option(None, "--weights", help="source checkpoint file"),
          init: Optional[Init] = typer.Option(None, "--init", help="'random': seeded source weights"),
          seed: int = typer.Option(0, "--seed"),
          limit: Optional[int] = typer.Option(None, "--limit", help="evaluate only the first N samples"),
          kind: Optional[str] = typer.Option(None, "--kind", help="dataset kind if not the model's own (e.g. folder)"),
          json_out: Optional[Path] = typer.Option(None, "--json", help="write the report here (JSON)")) -> None:
    """MODEL on a dataset: a metric row per framework x preprocessing x NMS (shards under torchrun)."""
    from .evaluate import evaluate
    try:
        report = evaluate(model, data, preprocess, framework, nms, weights=weights,
                          init=init.value if init else None, seed=seed, limit=limit, kind=kind)
        if report.rank == 0 and json_out is not None:
            report.write(json_out)
    except ZooportError as exc:
        fail(exc)
    if report.rank == 0:
        _print_eval(report)


@app.command()
def explain(model: str = typer.Argument(..., help="model name (see `zooport list`)"),
            data: Path = typer.Option(..., "--data", help="dataset root"),
            to: str = typer.Option("pil", "--to", help="the user's preprocessing variant: cv2-exact, pil, torchvision"),
            nms: str = typer.Option("torchvision", "--nms", help="the user's NMS variant (detectors)"),
            weights: Optional[Path] = typer.Option(None, "--weights", help="source checkpoint file"),
            init: Optional[Init] = typer.Option(None, "--init", help="'random': seeded source weights"),
            seed: int = typer.Option(0, "--seed"),
            limit: Optional[int] = typer.Option(None, "--limit", help="evaluate only the first N samples"),
            kind: Optional[str] = typer.Option(None, "--kind", help="dataset kind if not the model's own"),
            metric: Optional[str] = typer.Option(None, "--metric",
                                                 help="metric to attribute (default: the task's headline)"),
            json_out: Optional[Path] = typer.Option(None, "--json", help="write the ladder here (JSON)")) -> None:
    """The metric gap from the source pipeline to yours, stage by stage (framework, decoder, resize, crop, colour, NMS)."""
    from .explain import explain as run
    try:
        ladder = run(model, data, target=to, nms=nms, weights=weights, init=init.value if init else None,
                     seed=seed, limit=limit, kind=kind, metric=metric)
        if ladder.rank == 0 and json_out is not None:
            ladder.write(json_out)
    except ZooportError as exc:
        fail(exc)
    if ladder.rank == 0:
        _print_ladder(ladder)


@app.command()
def report(model: str = typer.Argument(..., help="model name (see `zooport list`)"),
           weights: Optional[Path] = typer.Option(None, "--weights", help="source checkpoint file"),
           init: Optional[Init] = typer.Option(None, "--init", help="'random': seeded source weights"),
           seed: int = typer.Option(0, "--seed"),
           data: Optional[Path] = typer.Option(None, "--data", help="dataset root: adds metrics per preprocessing "
                                               "variant and the gap-attribution ladder"),
           limit: Optional[int] = typer.Option(None, "--limit", help="with --data: only the first N samples"),
           out_dir: Path = typer.Option(Path("reports"), "--out", help="output directory"),
           images: int = typer.Option(0, "--images", help="parity photographs (default: the model's CI count)"),
           bench: bool = typer.Option(True, "--bench/--no-bench", help="measure latency and peak memory"),
           fallback_random: bool = typer.Option(False, "--fallback-random", help="without --weights/--init: seeded "
                                                "weights when the published file is not on disk (no download)")) -> None:
    """Write OUT/MODEL.json, OUT/MODEL.md and a self-contained OUT/MODEL.html: summary card, mapping,
    per-layer error along depth, preprocessing differences, metrics (with --data), latency and memory.
    Exits 1 when the parity verdict is fail (the report is written either way)."""
    from .report import report as run
    try:
        with console.status(f"building the report of {model}"):
            paths = run(model, out_dir, weights=weights, init=init.value if init else None, seed=seed, data=data,
                        limit=limit, images=images or None, bench=bench, fallback_random=fallback_random)
    except ZooportError as exc:
        fail(exc)
    for path in paths.values():
        out.print(str(path))
    verdict = json.loads(paths["json"].read_text())["card"]["verdict"]
    if verdict != "pass":
        console.print(f"[bold red]{model}: parity verdict FAIL[/] (see {paths['html']})")
        raise typer.Exit(1)


def _fmt(value, digits: int = 2) -> str:
    """Percentages as gluon-cv's tables print them; the JSON keeps full precision."""
    return "" if value is None else f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _scalars(metrics: dict) -> list[str]:
    return [k for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)]


def _samples(d: dict) -> str:
    size = d["dataset"]["size"]
    part = f"{d['n']} of {size} samples (--limit)" if d["n"] != size else f"all {size} samples"
    ranks = f", {d['world_size']} processes" if d["world_size"] > 1 else ""
    return f"{d['dataset']['kind']} at {d['dataset']['root']}: {part}{ranks}"


def _caption(d: dict) -> str:
    if d["source"]["seeded"]:
        return f"seeded random weights (seed {d['source']['seed']}): metrics compare pipelines, not accuracy"
    if not d["published"]:
        return "user-supplied checkpoint (not gluon-cv's published file): no published numbers to compare"
    return "published: " + "; ".join(f"{m['name']} {m['value']} ({m['dataset']})" for m in d["published"])


SECOND_METRICS = ("mask_", "keypoint_")  # COCODetectron's mask / keypoint stats: a table of their own


def _print_eval(report) -> None:
    d = report.to_dict()
    columns = list(dict.fromkeys(k for r in report.rows for k in _scalars(r.metrics)))
    groups = [[k for k in columns if not k.startswith(SECOND_METRICS)],
              *([k for k in columns if k.startswith(p)] for p in SECOND_METRICS)]
    groups = [g for g in groups if g] or [[]]  # 12 COCO stats a table: 24 columns do not fit a line
    detector = any(r.nms for r in report.rows)
    out.print(f"{report.model} ({report.task}) on {_samples(d)}")
    for i, group in enumerate(groups):
        table = Table("framework", "preprocess", *(["nms"] if detector else []), *group, "n", "seconds",
                      caption=_caption(d) if i == len(groups) - 1 else None)
        for r in report.rows:
            table.add_row(r.framework, r.preprocess, *([r.nms] if detector else []),
                          *(_fmt(r.metrics.get(k)) for k in group), str(r.n), f"{r.seconds:.1f}")
        out.print(table)
    for note in report.notes:
        out.print(f"note: {note}")


def _print_ladder(ladder) -> None:
    d = ladder.to_dict()
    out.print(f"{ladder.model}: where the {ladder.metric} gap comes from, on {_samples(d)}")
    table = Table("step", "change", "framework", "preprocess", "nms", ladder.metric, "delta", "n", "seconds",
                  caption=_caption(d))
    for s in ladder.steps:
        r = s.row
        table.add_row(s.stage, s.change, r.framework, r.preprocess, r.nms or "", _fmt(s.value, 3),
                      "" if s.stage == "source" else f"{s.delta:+.3f}", str(r.n), f"{r.seconds:.1f}")
    out.print(table)
    out.print(f"total gap in {ladder.metric}: {ladder.total_gap:+.6f} (source {ladder.steps[0].value:.6f} -> yours "
              f"{ladder.steps[-1].value:.6f}) = sum of the step deltas {ladder.sum_of_deltas:+.6f}")
    for note in ladder.notes:
        out.print(f"note: {note}")


def main() -> None:
    app()


if __name__ == "__main__":  # `torchrun --nproc_per_node N -m parity.cli eval ...`
    main()
