"""Torch-side activation capture (forward hooks) and HDF5 storage of runs, so two environments
can be compared later (``save_run`` on one machine, ``load_run`` on another)."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import nn

Captured = dict[str, np.ndarray | tuple[np.ndarray, ...]]
INPUT_MARK = "#"  # "<module>#in" captures the module's first input instead of its output


def to_numpy(value: Any) -> np.ndarray | tuple[np.ndarray, ...]:
    if isinstance(value, (tuple, list)):
        return tuple(to_numpy(v) for v in value)  # type: ignore[misc]
    return value.detach().cpu().numpy().copy()  # own the data: a later in-place op would rewrite it


def run_torch(module: nn.Module, x: np.ndarray, points: Sequence[str],
              replace: Mapping[str, Any] | None = None) -> tuple[Any, Captured, list[str]]:
    """Forward ``x`` through ``module`` capturing the outputs (or ``#in`` inputs) of submodules.
    ``replace``: {submodule: arrays} whose outputs are swapped for these (in the module's dtype)
    after they are captured. Returns (outputs, captures, the points in the order they fired)."""
    captured: Captured = {}
    order: list[str] = []
    handles = []
    def keep(point: str, value: Any) -> None:  # hooks must return None, or they replace tensors
        captured[point] = to_numpy(value)
        order.append(point)

    for point in dict.fromkeys(points):
        path, _, which = point.partition(INPUT_MARK)
        sub = module.get_submodule(path)
        if which == "in":  # before the module runs: an in-place module rewrites its input
            handles.append(sub.register_forward_pre_hook(lambda _m, inp, p=point: keep(p, inp[0])))
        else:
            handles.append(sub.register_forward_hook(lambda _m, _i, out, p=point: keep(p, out)))
    for path, value in (replace or {}).items():  # registered last: fires after the capture above
        handles.append(module.get_submodule(path).register_forward_hook(
            lambda _m, _i, out, v=value: _like(v, out)))
    try:
        with torch.inference_mode():
            out = module(torch.from_numpy(np.ascontiguousarray(x)))
    finally:
        for h in handles:
            h.remove()
    return to_numpy(out), captured, order


def _like(value: Any, out: Any) -> Any:
    """Arrays shaped as a module's output, as tensors of that output's dtype and device."""
    if isinstance(out, (tuple, list)):
        return type(out)(_like(v, o) for v, o in zip(value, out))
    t = torch.as_tensor(np.asarray(value)).to(dtype=out.dtype, device=out.device)
    if t.shape != out.shape:
        raise ValueError(f"replayed output has shape {tuple(t.shape)}, the module returns {tuple(out.shape)}")
    return t


def save_run(path: str | Path, captures: Mapping[str, Any], meta: Mapping[str, Any]) -> Path:
    """Write one run (named arrays, tuples as name[i]) to HDF5, atomically."""
    import h5py
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        with h5py.File(tmp, "w") as f:
            f.attrs["meta"] = json.dumps(dict(meta), sort_keys=True, default=str)
            for name, value in captures.items():
                for key, arr in _flatten(name, value):
                    f.create_dataset(key.replace("/", "|"), data=arr)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def load_run(path: str | Path) -> tuple[dict[str, np.ndarray], dict]:
    import h5py
    with h5py.File(path, "r") as f:
        arrays = {k.replace("|", "/"): f[k][()] for k in f.keys()}
        return arrays, json.loads(f.attrs["meta"])


def _flatten(name: str, value: Any):
    if isinstance(value, tuple):
        for i, v in enumerate(value):
            yield from _flatten(f"{name}[{i}]", v)
    else:
        yield name, np.asarray(value)
