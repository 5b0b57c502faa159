"""Fixtures for the PaddleClas family tests, written without paddle: synthetic checkpoints in both
source layouts of a family ("dygraph" .pdparams, "fluid" directory of per-variable tensor files),
with the same values, so a family's two rule tables can be checked to land on one state dict.
The helpers' own tests are at the end."""
from __future__ import annotations

import pickle
from pathlib import Path
from typing import Mapping

import numpy as np
import torch
from torch import nn

import converters
from converters import registry
from converters.engine import map_tensors
from converters.io import paddle as pio
from converters.registry import ModelSpec

FP32 = 5  # VarType.FP32


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def tensor_record(arr: np.ndarray) -> bytes:
    """One legacy tensor file (the ``save`` op's format, see converters/io/paddle.py): header words,
    TensorDesc{data_type: FP32, dims}, raw little-endian data."""
    arr = np.ascontiguousarray(arr, dtype="<f4")
    desc = b"\x08" + _varint(FP32) + b"".join(b"\x10" + _varint(d) for d in arr.shape)
    return (np.array([0], "<u4").tobytes() + np.array([0], "<u8").tobytes()
            + np.array([0, len(desc)], "<u4").tobytes() + desc + arr.tobytes())


def write_pdparams(path: Path, tensors: Mapping[str, np.ndarray]) -> Path:
    """What ``paddle.save(state_dict)`` writes, minus its name table: a pickle of name -> ndarray."""
    with open(path, "wb") as f:
        pickle.dump(dict(tensors), f, protocol=4)
    return path


def write_fluid_dir(path: Path, tensors: Mapping[str, np.ndarray]) -> Path:
    """One file per variable at its name, as Paddle's save op writes them ("a/b/w": folders a/b)."""
    for name, arr in tensors.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_bytes(tensor_record(arr))
    return path


def meta_target(spec: ModelSpec) -> nn.Module:
    """The target without storage (instant); built for real where a module reads a tensor's value
    while being constructed (paddle_ops.HardSigmoid rounds its slope through a float32 tensor)."""
    try:
        with torch.device("meta"):
            return spec.build()
    except RuntimeError:
        return spec.build()


def synthetic_source(spec: ModelSpec, keys, seed: int = 0) -> dict[str, np.ndarray]:
    """Random float32 tensors under the source names ``keys``, each shaped as the target tensor the
    layout's rules send it to (Linear weights [in, out], as Paddle stores them); variances positive."""
    target = meta_target(spec).state_dict()
    rules = spec.rules["dygraph"]
    rng = np.random.default_rng(seed)
    out = {}
    for key in keys:
        tname = next(hit for r in rules if (hit := r.apply(key)))
        shape = tuple(target[tname].shape)
        if any(f.name == "transpose_linear" for f in spec.fixups) and tname.endswith("weight") and len(shape) == 2:
            shape = shape[::-1]
        a = rng.standard_normal(shape).astype(np.float32)
        out[key] = np.abs(a) + 0.5 if key.endswith(("_variance", "variance")) else a
    return out


def convert_tensors(spec: ModelSpec, layout: str, tensors: Mapping[str, np.ndarray]):
    """(state dict, mapping rows) of ``tensors`` under ``layout``'s rules (the engine reads only the
    target's names, shapes and layer types: a storage-less target is enough)."""
    return map_tensors(spec.name, tensors, meta_target(spec), spec.rules[layout], spec.fixups, spec.defaults)


def assert_layouts_agree(spec: ModelSpec, table: Mapping[str, str]) -> None:
    """``table`` ({dygraph key: static name}) names one net twice: under both layouts every source
    tensor is matched by a rule, every target tensor is filled (the BN step counter by its default),
    and the two give one state dict for one set of values."""
    dygraph = synthetic_source(spec, table)
    got_d, rows_d = convert_tensors(spec, "dygraph", dygraph)
    got_f, rows_f = convert_tensors(spec, "fluid", {table[k]: v for k, v in dygraph.items()})
    for rows in (rows_d, rows_f):
        assert all(r.status in ("mapped", "default") for r in rows)
        assert {r.target for r in rows if r.status == "default"} == {k for k in got_d if k.endswith("num_batches_tracked")}
    assert got_d.keys() == got_f.keys() == meta_target(spec).state_dict().keys()
    mapped = [k for k in got_d if not k.endswith("num_batches_tracked")]  # defaults: meta tensors here
    assert all(torch.equal(got_d[k], got_f[k]) for k in mapped)


def convert_both_layouts(name: str, dygraph: Mapping[str, np.ndarray], fluid: Mapping[str, np.ndarray],
                         directory: Path, fluid_dir: str | None = None):
    """Through the readers and the pipeline: ``dygraph`` written as a ``.pdparams`` file and ``fluid``
    (the same values under static names, as the static layout stores them) as a fluid directory
    convert to one state dict. Returns (dygraph result, fluid result)."""
    a = converters.convert(name, weights=write_pdparams(directory / f"{name}.pdparams", dygraph))
    b = converters.convert(name, weights=write_fluid_dir(directory / (fluid_dir or f"{name}_pretrained"), fluid))
    assert (a.layout, b.layout) == ("dygraph", "fluid")
    assert a.state_dict.keys() == b.state_dict.keys()
    assert all(torch.equal(a.state_dict[k], b.state_dict[k]) for k in a.state_dict)
    return a, b


def convert_both_files(name: str, table: Mapping[str, str], directory: Path):
    """``convert_both_layouts`` on seeded synthetic values stored alike in both layouts. Returns
    (dygraph result, the dygraph tensors)."""
    dygraph = synthetic_source(registry.get(name), table)
    a, _ = convert_both_layouts(name, dygraph, {table[k]: v for k, v in dygraph.items()}, directory)
    return a, dygraph


# --------------------------------------------------------------------------- the helpers' own tests

def test_tensor_record_reads_back(tmp_path):
    a = np.random.default_rng(0).standard_normal((130, 3, 1, 2)).astype(np.float32)  # a dim > 127: 2-byte varint
    write_fluid_dir(tmp_path / "d", {"x_weights": a, "fc_0.b_0": a[:, 0, 0, 0]})
    got, layout = pio.read_checkpoint(tmp_path / "d")
    assert layout == "fluid" and sorted(got) == ["fc_0.b_0", "x_weights"]
    assert got["x_weights"].dtype == np.float32 and np.array_equal(got["x_weights"], a)
    assert np.array_equal(got["fc_0.b_0"], a[:, 0, 0, 0])


def test_pdparams_reads_back(tmp_path):
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    got, layout = pio.read_checkpoint(write_pdparams(tmp_path / "m.pdparams", {"fc.weight": a}))
    assert layout == "dygraph" and np.array_equal(got["fc.weight"], a)
