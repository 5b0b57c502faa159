"""The conversion pipeline: source file -> reader -> rules -> target module -> written outputs."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from . import __version__, integrity, registry
from .engine import MappingRow, load_into, map_tensors
from .errors import MappingError, ZooportError
from .io import detectron_pkl
from .io import paddle as paddle_io
from .io.mxnet_params import read_checkpoint
from .io.writer import write_outputs
from .registry import ModelSpec
from .rules import digest
from .sources import ROOT, resolve, source_sha256

# source format -> reader returning (tensors, source layout); the layout picks the rule table
READERS: Mapping[str, Callable[[Path], tuple[dict[str, np.ndarray], str]]] = {
    "mxnet-params": read_checkpoint,
    "paddle-checkpoint": paddle_io.read_checkpoint,  # .pdparams (dygraph) or a fluid directory
    "paddle-inference": paddle_io.read_inference_path,  # .pdmodel + .pdiparams
    "detectron-pkl": detectron_pkl.read_checkpoint,  # Detectron's Python-2 weight pickles
}
FORMATS = {"safetensors": ".safetensors", "pth": ".pth"}


@dataclass
class ConversionResult:
    spec: ModelSpec
    module: nn.Module
    state_dict: dict[str, torch.Tensor]
    mapping: list[MappingRow]
    source: Path
    layout: str
    rules: Sequence = ()  # the rule table that decided (derived ones included), for the report
    seed: int | None = None  # set when the source was a seeded random checkpoint
    manifest: dict = field(default_factory=dict)

    def write(self, out_dir: str | Path, fmt: str = "safetensors") -> tuple[Path, Path]:
        """Write ``<out>/<model><ext>`` and ``<out>/<model>.json`` as one unit (each atomic,
        reloaded and compared; the manifest, which holds the weights' sha256, renamed last)."""
        if fmt not in FORMATS:
            raise ZooportError(f"unknown output format {fmt!r} (use safetensors or pth)")
        out_dir = Path(out_dir)
        weights = out_dir / f"{self.spec.name}{FORMATS[fmt]}"
        manifest = out_dir / f"{self.spec.name}.json"
        meta = {k: str(v) for k, v in self.manifest["metadata"].items()}

        def describe(digest_hex: str) -> dict:
            self.manifest["output"] = {"file": weights.name, "format": fmt, "sha256": digest_hex}
            return self.manifest

        write_outputs(weights, self.state_dict, meta, fmt, manifest, describe)
        return weights, manifest


def source_file(spec: ModelSpec, weights: str | Path | None, init: str | None, seed: int,
                download: bool = True) -> Path:
    """Where the source checkpoint is: an explicit/cached/downloaded file, or a seeded one."""
    if init is None:
        path = resolve(spec.weights(), weights, download=download)
        if weights is not None:
            integrity.check_published(spec.weights(), path)
        return path
    if init != "random":
        raise ZooportError(f"unknown --init {init!r} (only 'random' is supported)")
    if weights is not None:
        raise ZooportError("give either --weights or --init random, not both")
    from .seeding import seeded_source
    return seeded_source(spec, seed)


def convert(name: str, weights: str | Path | None = None, init: str | None = None, seed: int = 0,
            *, download: bool = True, dtype: str = "keep", allow_nonfinite: bool = False) -> ConversionResult:
    """``dtype``: "keep" (each tensor in its source dtype) or float32/float16/bfloat16 for every
    floating tensor. NaN/Inf in a source tensor is an error unless ``allow_nonfinite``."""
    spec = registry.get(name)
    if dtype not in integrity.DTYPES:
        raise ZooportError(f"unknown --dtype {dtype!r} (use {', '.join(integrity.DTYPES)})")
    path = source_file(spec, weights, init, seed, download)
    tensors, layout = READERS[spec.source_format](path)
    tensors, bf16 = integrity.numeric_sources(path, tensors)
    bad = integrity.nonfinite(tensors)
    if bad and not allow_nonfinite:
        raise integrity.nonfinite_error(path, bad)
    layout = _pickled_fluid(spec, tensors, layout)
    if layout not in layouts(spec):
        raise MappingError(name, [f"{path.name}: source layout {layout!r} has no rules "
                                  f"(supported: {', '.join(layouts(spec))})"])
    rules = rules_for(spec, layout, path)
    # only shape-derived (pruned) targets need the renamed shapes; the engine renames again anyway
    shapes = target_shapes(tensors, rules) if spec.build_from_shapes else {}
    module = build_target(spec, shapes, spec.numerics.get(layout))
    state, rows = map_tensors(name, tensors, module, rules, spec.fixups, spec.defaults)
    state, rows, made = integrity.output_dtypes(state, module.state_dict(), rows, tensors, bf16, dtype, path,
                                                allow_nonfinite)
    load_into(module, state)
    result = ConversionResult(spec, module, state, rows, path, layout, rules, seed if init else None)
    result.manifest = _manifest(result, source_sha256(path))
    _integrity_manifest(result.manifest, dtype, bad, made, rows)
    return result


def _integrity_manifest(manifest: dict, dtype: str, bad: dict, made: dict, rows) -> None:
    """Options that changed the output, recorded so that `verify --weights` can redo it; allowed
    non-finite values listed per tensor. Nothing is added when neither applies (same bytes)."""
    meta = manifest["metadata"]
    if dtype != "keep":
        meta["dtype"] = dtype
    if bad or made:
        meta["allow_nonfinite"] = "true"
        target = {r.source: r.target for r in rows}
        manifest["nonfinite"] = ([{"tensor": n, "target": target.get(n), **c} for n, c in bad.items()]
                                 + [{"tensor": None, "target": n, "cast_to": dtype, **c} for n, c in made.items()])


def _manifest(r: ConversionResult, source_sha256: str) -> dict:
    rules_digest = digest([*r.rules, *r.spec.defaults], [f.name for f in r.spec.fixups])
    counts = {s: sum(row.status == s for row in r.mapping) for s in ("mapped", "ignored", "default")}
    meta = {"model": r.spec.name, "source_sha256": source_sha256, "converter_version": __version__,
            "rules_digest": rules_digest, "source_layout": r.layout,
            "seeded": "true" if r.seed is not None else "false"}
    if r.layout in r.spec.numerics:
        meta["numerics"] = r.spec.numerics[r.layout]
    if r.seed is not None:
        meta["seed"] = str(r.seed)
    return {"metadata": meta, "family": r.spec.family, "framework": r.spec.framework,
            "source": {"file": r.source.name, "sha256": source_sha256, "layout": r.layout,
                       "seed": r.seed},
            "counts": counts, "mapping": [row.to_dict() for row in r.mapping]}


def _pickled_fluid(spec: ModelSpec, tensors: Mapping[str, np.ndarray], layout: str) -> str:
    """A pickled state dict reads as "dygraph"; it is a ``fluid.save`` pickle (PaddleX 1.x
    ``model.pdparams``, PaddleDetection 0.x ``.pdparams`` links) when the fluid rules name every
    tensor and the dygraph rules do not."""
    rules = spec.rules
    if layout != "dygraph" or not isinstance(rules.get("fluid"), (list, tuple)) or not tensors:
        return layout

    def named(table) -> bool:
        return all(any(r.apply(k) for r in table) for k in tensors)
    return "fluid" if named(rules["fluid"]) and not named(rules.get("dygraph", ())) else layout


def layouts(spec: ModelSpec) -> list[str]:
    """Source layouts ``spec`` converts from. Every Paddle checkpoint model also converts from an
    exported program: its rules are derived by aligning the program's op graph with the target."""
    out = list(spec.rules)
    if spec.source_format == "paddle-checkpoint" and "inference" not in out:
        out.append("inference")
    return out


def rules_for(spec: ModelSpec, layout: str, path: Path) -> Sequence:
    """The layout's rule table; a derived table (a function of the source) is built here."""
    rules = spec.rules.get(layout)
    if rules is None and layout == "inference" and layout in layouts(spec):
        from .paddle.program import program_rules
        rules = program_rules(spec.build, (1, 3, *spec.preprocess.size))
    return list(rules(path)) if callable(rules) else rules


def target_shapes(tensors: Mapping[str, np.ndarray], rules) -> dict[str, tuple[int, ...]]:
    """{target name: source shape} by the rename rules alone (unmatched names are left to the
    engine, which reports them); what a shape-derived builder needs before any module exists."""
    out = {}
    for name, arr in tensors.items():
        for entry in rules:
            hit = entry.apply(name)
            if hit:
                if isinstance(hit, str):
                    out[hit] = tuple(arr.shape)
                break
    return out


def build_target(spec: ModelSpec, shapes: Mapping[str, tuple[int, ...]], numerics: str | None = None) -> nn.Module:
    module = spec.build_from_shapes(shapes) if spec.build_from_shapes else spec.build()
    if numerics is not None:
        module.set_numerics(numerics)
    return module


def load(name: str, path: str | Path, target: str = "zooport", nms: str | None = None) -> nn.Module:
    """A converted file -> an eval-mode module (strict: every tensor must be present).
    ``target="torchvision"`` returns the equal torchvision.models module where one exists.
    ``nms`` (detectors): post-processing variant, "mxnet" (exact, default), "torchvision" or "naive"."""
    from .io.writer import read_weights
    spec = registry.get(name)
    state, meta = read_weights(Path(path))
    if meta.get("model", name) != name:
        raise ZooportError(f"{path}: holds weights for {meta['model']!r}, not {name!r}")
    if target == "zooport":
        shapes = {k: tuple(v.shape) for k, v in state.items()}
        module = load_into(build_target(spec, shapes, meta.get("numerics")), state)
        if nms is not None:
            from .arch.nms import set_nms
            try:
                set_nms(module, nms)
            except ValueError as exc:
                raise ZooportError(f"{name}: {exc}") from None
        return module
    if target != "torchvision":
        raise ZooportError(f"unknown target {target!r} (use 'zooport' or 'torchvision')")
    if nms is not None:
        raise ZooportError("--nms applies to zooport detector modules only")
    if spec.torchvision is None:
        raise ZooportError(f"{name} has no torchvision equivalent (its architecture differs)")
    rename = spec.torchvision_key or (lambda k: k)
    return load_into(spec.torchvision(), {rename(k): v for k, v in state.items()})


def default_out_dir() -> Path:
    return Path(os.environ.get("ZOOPORT_OUT_DIR", ROOT / "weights"))
