"""Integrity of a conversion: finite source values, the output dtype, and the checks behind
`zooport verify --weights FILE` (a converted file against its manifest and its source; a source
checkpoint against its published hash).

* NaN/Inf in a source tensor is an error naming the file and every such tensor, unless the caller
  allows it (``--allow-nonfinite``); then the manifest lists them.
* Output dtype: "keep" (default) writes each tensor in its source dtype (fp16 stays fp16, bf16
  stays bf16; defaulted tensors take the source's one float dtype); "float32", "float16" and
  "bfloat16" cast every floating tensor. A cast that turns finite values into Inf (fp16 overflow)
  is refused like a non-finite source.
* numpy has no bfloat16: the readers return it as a structured uint16 dtype; it is widened to
  float32 (exact) for mapping and narrowed back (exact) for "keep".
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch

from .errors import ReaderError, ZooportError
from .io.mxnet_params import BFLOAT16

DTYPES = ("keep", "float32", "float16", "bfloat16")
_TORCH = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


# --- source values --------------------------------------------------------------------------------

def numeric_sources(path: Path, tensors: Mapping[str, np.ndarray]) -> tuple[dict[str, np.ndarray], set[str]]:
    """(tensors with bfloat16 widened to float32, the names that were bfloat16); a dtype that is
    not a number is refused, naming the tensor."""
    out, bf16 = {}, set()
    for name, arr in tensors.items():
        if arr.dtype == BFLOAT16:
            wide = arr.view("<u2").astype("<u4") << 16  # bf16 is the top half of an fp32
            out[name], bf16 = wide.view("<f4"), bf16 | {name}
        elif arr.dtype.kind in "biufc":
            out[name] = arr
        else:
            raise ReaderError(path, f"dtype {arr.dtype} is not a number", tensor=name)
    return out, bf16


def nonfinite(tensors: Mapping[str, np.ndarray]) -> dict[str, dict[str, int]]:
    """{name: {"nan": n, "posinf": n, "neginf": n}} for every tensor holding any."""
    found = {}
    for name, arr in tensors.items():
        if arr.dtype.kind not in "fc" or arr.size == 0:
            continue
        parts = (arr.real, arr.imag) if arr.dtype.kind == "c" else (arr,)
        if all(np.isfinite(p).all() for p in parts):
            continue
        found[name] = {"nan": int(sum(np.isnan(p).sum() for p in parts)),
                       "posinf": int(sum(np.isposinf(p).sum() for p in parts)),
                       "neginf": int(sum(np.isneginf(p).sum() for p in parts))}
    return found


def nonfinite_error(path: Path, found: Mapping[str, Mapping[str, int]],
                    what: str = "hold NaN or Inf") -> ReaderError:
    shown = "; ".join(f"{name!r} ({', '.join(f'{n} {k}' for k, n in c.items() if n)})"
                      for name, c in list(found.items())[:5])
    more = f"; ... (+{len(found) - 5} more)" if len(found) > 5 else ""
    err = ReaderError(path, f"{len(found)} tensor(s) {what}: {shown}{more}", tensor=next(iter(found)))
    err.hint = "pass --allow-nonfinite to convert anyway (the manifest then lists these tensors)"
    return err


# --- output dtype ---------------------------------------------------------------------------------

def output_dtypes(state: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Tensor], rows: Sequence,
                  sources: Mapping[str, np.ndarray], bf16: set[str], dtype: str, path: Path,
                  allow_nonfinite: bool) -> tuple[dict[str, torch.Tensor], list, dict[str, dict[str, int]]]:
    """(state in the output dtypes, rows with bfloat16 sources named so, Inf made by the cast).
    Integers or booleans for a floating target are refused: loading would turn them into numbers
    silently (Paddle pickles bfloat16 as bare uint16 words, for one)."""
    if dtype not in DTYPES:
        raise ZooportError(f"unknown --dtype {dtype!r} (use {', '.join(DTYPES)})")
    origin = {r.target: r.source for r in rows if r.status == "mapped"}
    wrong = [(origin[n], t.dtype, n) for n, t in state.items()
             if n in origin and expected[n].is_floating_point() and not (t.is_floating_point() or t.is_complex())]
    if wrong:
        shown = "; ".join(f"{s!r} ({d}) -> {n!r}" for s, d, n in wrong[:3])
        raise ReaderError(path, f"{len(wrong)} integer tensor(s) for floating targets: {shown}",
                          tensor=wrong[0][0])
    floats = {str(a.dtype) for n, a in sources.items() if a.dtype.kind == "f" and n not in bf16}
    floats |= {"bfloat16"} if bf16 else set()
    common = _TORCH.get(floats.pop()) if len(floats) == 1 and list(floats)[0] != "float64" else None
    out, made = {}, {}
    for name, t in state.items():
        if not t.is_floating_point():
            out[name] = t
            continue
        if dtype != "keep":
            want = _TORCH[dtype]
        elif name in origin:
            want = torch.bfloat16 if origin[name] in bf16 else t.dtype
        else:  # a Default: the source's float dtype when it has exactly one
            want = common or t.dtype
        cast = t.to(want)
        if want != t.dtype and bool(torch.isfinite(t).all()) and not bool(torch.isfinite(cast).all()):
            made[name] = {"posinf": int(torch.isposinf(cast).sum()), "neginf": int(torch.isneginf(cast).sum())}
        out[name] = cast
    if made and not allow_nonfinite:
        raise nonfinite_error(path, made, f"overflow to Inf when cast to {dtype} (target names)")
    rows = [replace(r, dtype="bfloat16") if r.source in bf16 else r for r in rows]
    return out, rows, made


# --- zooport verify --weights FILE ----------------------------------------------------------------

def is_converted(path: Path) -> bool:
    """A zooport output (safetensors, or its .pth) rather than a source checkpoint."""
    if path.suffix in (".safetensors", ".pth"):
        return True
    try:
        with open(path, "rb") as fh:
            head = fh.read(9)
    except OSError:
        return False
    return len(head) == 9 and head[8:9] == b"{"


def manifest_of(path: Path, model: str) -> dict:
    """The manifest written with converted ``path``, checked against it: present beside it, naming
    this file and model, its sha256 equal to the file's, its metadata equal to the file's."""
    from .io.writer import read_weights
    manifest = path.with_suffix(".json")
    if not manifest.is_file():
        raise ZooportError(f"{path}: no manifest {manifest.name} beside it (the conversion that wrote "
                           "it did not finish, or the file was moved without it)",
                           hint="convert again, or keep MODEL.json next to MODEL.safetensors")
    try:
        info = json.loads(manifest.read_text(encoding="utf-8"))
        output, meta = info["output"], info["metadata"]
        named, want = output["file"], output["sha256"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ZooportError(f"{manifest}: not a zooport manifest ({type(exc).__name__}: {exc})") from None
    if named != path.name or meta.get("model") != model:
        raise ZooportError(f"{path}: its manifest {manifest.name} describes {named!r} of model "
                           f"{meta.get('model')!r}, not this file of {model!r}")
    with open(path, "rb") as fh:
        actual = hashlib.file_digest(fh, "sha256").hexdigest()
    if actual != want:
        raise ZooportError(f"{path}: sha256 {actual} does not match its manifest's {want} (the file "
                           "changed after conversion: a corrupt copy or an edit)",
                           hint="convert again from the source checkpoint")
    if read_weights(path)[1] != meta:
        raise ZooportError(f"{path}: the metadata inside the file differs from its manifest's")
    return info


def check_published(record, path: Path) -> None:
    """A source file carrying the published file's name must have the published hash."""
    if record.sha1 is None or not path.is_file() or path.name != record.filename:
        return
    with open(path, "rb") as fh:
        actual = hashlib.file_digest(fh, "sha1").hexdigest()
    if actual != record.sha1:
        raise ZooportError(f"{path}: sha1 {actual} does not match the published sha1 {record.sha1} "
                           f"of {record.filename} (a corrupt or altered download)",
                           hint="download it again, or rename it if it is your own checkpoint")


def reconvert(model: str, path: Path, *, download: bool = True):
    """The conversion that produced converted ``path``, redone from its source (the seeded
    checkpoint, or the registered one if its sha256 is the one recorded) and proven equal to
    the file tensor for tensor, bit for bit: a ConversionResult whose weights are the file's."""
    from .io.writer import _same_bits, read_weights
    from .pipeline import convert
    from .registry import get
    from .sources import resolve, source_sha256
    info = manifest_of(path, model)
    meta = info["metadata"]
    options = {"dtype": meta.get("dtype", "keep"), "allow_nonfinite": meta.get("allow_nonfinite") == "true"}
    if meta.get("seeded") == "true":
        result = convert(model, init="random", seed=int(meta["seed"]), download=download, **options)
    else:
        try:
            source = resolve(get(model).weights(), download=download)
        except ZooportError as exc:
            raise ZooportError(f"{path}: its source {info['source']['file']} is not available here "
                               f"({exc})", hint="pass the source checkpoint itself with --weights") from None
        if source_sha256(source) != meta["source_sha256"]:
            raise ZooportError(f"{path} was converted from {info['source']['file']} (sha256 "
                               f"{meta['source_sha256']}), not from the registered checkpoint {source}",
                               hint="pass that source checkpoint itself with --weights")
        result = convert(model, source, download=download, **options)
    tensors, _ = read_weights(path)
    differ = sorted(k for k in set(tensors) | set(result.state_dict)
                    if k not in tensors or k not in result.state_dict
                    or not _same_bits(tensors[k], result.state_dict[k]))
    if differ:
        raise ZooportError(f"{path}: {len(differ)} tensor(s) differ from a fresh conversion of its source "
                           f"(first: {differ[0]!r})")
    return result

