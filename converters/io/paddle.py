"""Readers for PaddlePaddle checkpoints, written against numpy only (no paddle import).

* ``.pdparams`` (dygraph ``paddle.save``): a pickle of ``{name: ndarray}``, read through
  :mod:`.safe_pickle`. Paddle adds bookkeeping entries ending in ``@@``
  (``StructuredToParameterName@@``, ``UnpackBigParamInfor@@``); they are removed, and big
  parameters split by protocol 2/3 are joined back.
* ``.pdmodel``: a serialised ``ProgramDesc`` protobuf. Only the fields needed here are decoded by a
  small wire-format reader (field numbers from Paddle's ``framework.proto``):

      ProgramDesc  1: blocks (BlockDesc)
      BlockDesc    1: idx  2: parent_idx  3: vars (VarDesc)  4: ops (OpDesc)
      VarDesc      1: name  2: type (VarType)  3: persistable
      VarType      1: type enum  3: dense_tensor (DenseTensorDesc)
      DenseTensorDesc  1: tensor (TensorDesc)  2: lod_level
      TensorDesc   1: data_type enum  2: dims (repeated int64)
      OpDesc       3: type  1: inputs (Var)  2: outputs (Var)  4: attrs (Attr)
      OpDesc.Var   1: parameter  2: arguments (repeated string)
      OpDesc.Attr  1: name  2: type enum  then one value field per type (see _ATTR_FIELDS)

* ``.pdiparams`` (``save_combine``): the persistable variables of the program, sorted by name,
  each as one tensor record; legacy fluid checkpoints hold one record per file. A record
  (little-endian; checked by hexdumping files written by paddle 3.3.1):

      u32 version (0) | u64 lod levels | per level: u64 byte count, that many bytes of u64 offsets
      | u32 tensor version (0) | i32 desc length | TensorDesc protobuf | raw data (C order)

Every length in a file is untrusted: each is checked against the bytes left before anything is
allocated, and errors are one line naming the file and the tensor.
"""
from __future__ import annotations

import math
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ReaderError
from . import safe_pickle
from .mxnet_params import BFLOAT16, Stream

# VarType.Type data types -> numpy (raw little-endian bytes). bfloat16 is the structured dtype
# the MXNet reader also uses, so a caller can tell it from uint16.
DTYPES: dict[int, np.dtype] = {
    0: np.dtype("?"), 1: np.dtype("<i2"), 2: np.dtype("<i4"), 3: np.dtype("<i8"),
    4: np.dtype("<f2"), 5: np.dtype("<f4"), 6: np.dtype("<f8"), 19: np.dtype("<u8"),
    20: np.dtype("u1"), 21: np.dtype("i1"), 22: BFLOAT16, 23: np.dtype("<c8"),
    24: np.dtype("<c16"), 36: np.dtype("<u2"), 37: np.dtype("<u4"), 38: np.dtype("<u8"),
}
DENSE_TENSOR, FEED_MINIBATCH, FETCH_LIST, READER = 7, 9, 10, 15
_NOT_SAVED = (FEED_MINIBATCH, FETCH_LIST, READER)  # persistable, but never in a params file
MAX_NDIM = 64
MAX_DESC_BYTES = 1 << 16  # a TensorDesc is a type and a few dims: tens of bytes
MAX_LOD_LEVELS = 16
PROGRAM_MAX_BYTES = 1 << 30
PARAMS_INFO_SUFFIX = ".info"  # jit.save's "<prefix>.pdiparams.info" beside the params


# --- protobuf wire format -----------------------------------------------------------------------

class _ProtoError(Exception):
    """Malformed protobuf; the caller adds the file and the place."""


def _varint(buf: memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    for _ in range(10):
        if pos >= len(buf):
            raise _ProtoError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7
    raise _ProtoError("varint longer than 10 bytes")


def _signed(v: int) -> int:
    """int32/int64 fields: negative values are sign-extended to 64 bits on the wire."""
    return v - (1 << 64) if v >= 1 << 63 else v


def _fields(buf: memoryview) -> Iterator[tuple[int, int, Any]]:
    """(field number, wire type, value): int for varint/fixed, memoryview for length-delimited."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        num, wire = key >> 3, key & 7
        if num == 0:
            raise _ProtoError("field number 0")
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire in (1, 5):
            width = 8 if wire == 1 else 4
            if pos + width > len(buf):
                raise _ProtoError(f"truncated fixed{width * 8} field {num}")
            value = int.from_bytes(buf[pos:pos + width], "little")
            pos += width
        elif wire == 2:
            length, pos = _varint(buf, pos)
            if length > len(buf) - pos:
                raise _ProtoError(f"field {num} declares {length} bytes, only "
                                  f"{len(buf) - pos} left")
            value = buf[pos:pos + length]
            pos += length
        else:  # groups (3, 4) are not used by framework.proto; 6 and 7 do not exist
            raise _ProtoError(f"unsupported wire type {wire} (field {num})")
        yield num, wire, value


def _text(value: Any) -> str:
    if not isinstance(value, memoryview):
        raise _ProtoError("string field is not length-delimited")
    try:
        return bytes(value).decode("utf-8")
    except UnicodeDecodeError:
        raise _ProtoError("string field is not valid UTF-8") from None


def _msg(value: Any) -> memoryview:
    if not isinstance(value, memoryview):
        raise _ProtoError("message field is not length-delimited")
    return value


def _repeated(wire: int, value: Any, kind: str) -> list:
    """A repeated scalar occurrence: one value, or a packed run of them."""
    if wire != 2:
        return [_scalar(wire, value, kind)]
    out, pos = [], 0
    if kind in ("f", "d"):
        width = 4 if kind == "f" else 8
        if len(value) % width:
            raise _ProtoError("packed floats with a partial element")
        return list(struct.unpack(f"<{len(value) // width}{kind}", value))
    while pos < len(value):
        v, pos = _varint(value, pos)
        out.append(_scalar(0, v, kind))
    return out


def _scalar(wire: int, value: Any, kind: str) -> Any:
    if kind == "f":
        if wire != 5:
            raise _ProtoError("float field with the wrong wire type")
        return struct.unpack("<f", value.to_bytes(4, "little"))[0]
    if kind == "d":
        if wire != 1:
            raise _ProtoError("double field with the wrong wire type")
        return struct.unpack("<d", value.to_bytes(8, "little"))[0]
    if wire != 0:
        raise _ProtoError("integer field with the wrong wire type")
    return bool(value) if kind == "b" else _signed(value)


# --- the program --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Var:
    name: str
    type: int  # VarType.Type: 7 is a dense tensor
    persistable: bool
    data_type: int | None = None  # VarType.Type of the elements, for tensors
    shape: tuple[int, ...] | None = None  # -1 marks a dimension known only at run time
    lod_level: int = 0

    @property
    def dtype(self) -> np.dtype | None:
        return None if self.data_type is None else DTYPES.get(self.data_type)


@dataclass(frozen=True)
class Op:
    type: str
    inputs: dict[str, list[str]]
    outputs: dict[str, list[str]]
    attrs: dict[str, Any]


@dataclass(frozen=True)
class Block:
    idx: int
    parent_idx: int
    vars: dict[str, Var]
    ops: list[Op]


@dataclass(frozen=True)
class Program:
    blocks: list[Block] = field(default_factory=list)

    @property
    def vars(self) -> dict[str, Var]:
        return self.blocks[0].vars if self.blocks else {}

    @property
    def ops(self) -> list[Op]:
        return self.blocks[0].ops if self.blocks else []

    def saved_names(self) -> list[str]:
        """The variables ``save_combine`` writes, in its order: persistable ones of every block
        minus feed/fetch/reader plumbing, sorted by name (byte order, as Paddle's C++ sorts)."""
        names = {v.name for b in self.blocks for v in b.vars.values()
                 if v.persistable and v.type not in _NOT_SAVED}
        return sorted(names, key=lambda n: n.encode("utf-8"))


# Attr type -> (field number, kind, repeated). Kinds: i integer, f float, d double, b bool, s str.
_ATTR_FIELDS: dict[int, tuple[int, str, bool]] = {
    0: (3, "i", False), 1: (4, "f", False), 2: (5, "s", False), 3: (6, "i", True),
    4: (7, "f", True), 5: (8, "s", True), 6: (10, "b", False), 7: (11, "b", True),
    8: (12, "i", False), 9: (13, "i", False), 10: (14, "i", True), 11: (15, "i", True),
    12: (16, "d", True), 13: (17, "s", False), 14: (18, "s", True), 15: (19, "d", False),
}  # 16/17 (SCALAR/SCALARS) are nested messages no reader here needs: they come back as None


def _tensor_desc(buf: memoryview) -> tuple[int, tuple[int, ...]]:
    data_type, dims = None, []
    for num, wire, value in _fields(buf):
        if num == 1:
            data_type = _scalar(wire, value, "i")
        elif num == 2:
            dims.extend(_repeated(wire, value, "i"))
    if data_type is None:
        raise _ProtoError("TensorDesc without a data_type")
    return data_type, tuple(dims)


def _var(buf: memoryview) -> Var:
    name, vtype, persistable = None, None, False
    data_type = shape = None
    lod = 0
    for num, wire, value in _fields(buf):
        if num == 1:
            name = _text(value)
        elif num == 3:
            persistable = _scalar(wire, value, "b")
        elif num == 2:
            for tnum, twire, tvalue in _fields(_msg(value)):
                if tnum == 1:
                    vtype = _scalar(twire, tvalue, "i")
                elif tnum == 3:  # dense_tensor
                    for dnum, dwire, dvalue in _fields(_msg(tvalue)):
                        if dnum == 1:
                            data_type, shape = _tensor_desc(_msg(dvalue))
                        elif dnum == 2:
                            lod = _scalar(dwire, dvalue, "i")
    if name is None or vtype is None:
        raise _ProtoError(f"VarDesc {name!r} without a name or a type")
    return Var(name, vtype, persistable, data_type, shape, lod)


def _op(buf: memoryview) -> Op:
    optype, inputs, outputs, attrs = None, {}, {}, {}
    for num, wire, value in _fields(buf):
        if num == 3:
            optype = _text(value)
        elif num in (1, 2):
            param, args = None, []
            for vnum, _, vvalue in _fields(_msg(value)):
                if vnum == 1:
                    param = _text(vvalue)
                elif vnum == 2:
                    args.append(_text(vvalue))
            if param is None:
                raise _ProtoError("op argument without a parameter name")
            (inputs if num == 1 else outputs)[param] = args
        elif num == 4:
            name, _, found = _attr(_msg(value))
            attrs[name] = found
    if optype is None:
        raise _ProtoError("OpDesc without a type")
    return Op(optype, inputs, outputs, attrs)


def _attr(buf: memoryview) -> tuple[str, int, Any]:
    entries = list(_fields(buf))
    name = next((_text(v) for n, _, v in entries if n == 1), None)
    atype = next((_scalar(w, v, "i") for n, w, v in entries if n == 2), None)
    if name is None or atype is None:
        raise _ProtoError("op attribute without a name or a type")
    spec = _ATTR_FIELDS.get(atype)
    if spec is None:
        return name, atype, None
    num, kind, repeated = spec
    values: list = []
    for n, w, v in entries:
        if n != num:
            continue
        if kind == "s":
            values.append(_text(v))
        elif repeated:
            values.extend(_repeated(w, v, kind))
        else:
            values.append(_scalar(w, v, kind))
    if repeated:
        return name, atype, values
    default = {"s": "", "b": False, "f": 0.0, "d": 0.0}.get(kind, 0)
    return name, atype, values[-1] if values else default  # proto: the last occurrence wins


def _block(buf: memoryview) -> Block:
    idx, parent, variables, ops = 0, -1, {}, []
    for num, wire, value in _fields(buf):
        if num == 1:
            idx = _scalar(wire, value, "i")
        elif num == 2:
            parent = _scalar(wire, value, "i")
        elif num == 3:
            var = _var(_msg(value))
            if var.name in variables:
                raise _ProtoError(f"variable {var.name!r} declared twice in one block")
            variables[var.name] = var
        elif num == 4:
            ops.append(_op(_msg(value)))
    return Block(idx, parent, variables, ops)


def parse_program(data: bytes, path: str | os.PathLike[str] = "<bytes>") -> Program:
    """A ``ProgramDesc`` from its serialised bytes (the content of a ``.pdmodel``/``__model__``)."""
    try:
        blocks = [_block(_msg(v)) for n, _, v in _fields(memoryview(data)) if n == 1]
    except _ProtoError as exc:
        raise ReaderError(path, f"not a Paddle program (ProgramDesc protobuf): {exc}") from None
    if not blocks:
        raise ReaderError(path, "not a Paddle program: no blocks")
    return Program(blocks)


def read_program(path: str | os.PathLike[str]) -> Program:
    """The program of a ``.pdmodel`` (inference format) or a fluid ``__model__`` file."""
    return parse_program(_read_bytes(path, PROGRAM_MAX_BYTES, "program"), path)


def _read_bytes(path: str | os.PathLike[str], limit: int, what: str) -> bytes:
    try:
        with open(Path(path), "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size > limit:
                raise ReaderError(path, f"{size} bytes is too large for a {what} file")
            return f.read()
    except OSError as exc:
        raise ReaderError(path, f"cannot open: {exc.strerror or exc}") from exc


# --- tensor records -----------------------------------------------------------------------------

def _expect_version(s: Stream, what: str) -> None:
    at = s.pos
    version = s.one("<I", what)
    if version != 0:
        raise s.fail(f"unsupported {what} {version} (expected 0)", at)


def _read_tensor(s: Stream) -> np.ndarray:
    _expect_version(s, "tensor record version")
    levels_at = s.pos
    levels = s.one("<Q", "LoD level count")
    if levels > MAX_LOD_LEVELS:
        raise s.fail(f"{levels} LoD levels (at most {MAX_LOD_LEVELS} expected)", levels_at)
    for _ in range(levels):  # sequence offsets: meaningless for parameters, skipped
        nbytes_at = s.pos
        nbytes = s.one("<Q", "LoD level size")
        if nbytes % 8:
            raise s.fail(f"LoD level of {nbytes} bytes is not a whole number of u64 offsets",
                         nbytes_at)
        s.skip(nbytes, "LoD offsets")
    _expect_version(s, "tensor version")
    at = s.pos
    desc_len = s.one("<i", "TensorDesc length")
    if not 0 < desc_len <= MAX_DESC_BYTES:
        raise s.fail(f"TensorDesc length {desc_len} out of range 1..{MAX_DESC_BYTES}", at)
    desc_at = s.pos
    try:
        data_type, shape = _tensor_desc(memoryview(s.take(desc_len, "TensorDesc")))
    except _ProtoError as exc:
        raise s.fail(f"bad TensorDesc: {exc}", desc_at) from None
    dtype = DTYPES.get(data_type)
    if dtype is None:
        raise s.fail(f"unsupported data type {data_type}", desc_at)
    if len(shape) > MAX_NDIM or any(d < 0 for d in shape):
        raise s.fail(f"bad shape {shape}", desc_at)
    return s.array(shape, dtype)


def _open_stream(path: str | os.PathLike[str]):
    try:
        f = open(Path(path), "rb")
    except OSError as exc:
        raise ReaderError(path, f"cannot open: {exc.strerror or exc}") from exc
    return f, Stream(str(path), f, os.fstat(f.fileno()).st_size)


def read_tensor_file(path: str | os.PathLike[str], name: str | None = None) -> np.ndarray:
    """One tensor record filling a whole file (a legacy fluid per-variable file)."""
    f, s = _open_stream(path)
    with f:
        s.where = f"tensor {name or Path(path).name!r}"
        arr = _read_tensor(s)
        if s.remaining:
            raise s.fail(f"{s.remaining} unexpected trailing bytes after the tensor")
    return arr


def read_combined(path: str | os.PathLike[str], names: list[str],
                  program: Program | None = None) -> dict[str, np.ndarray]:
    """The ``save_combine`` stream of ``names`` (in that order), checked against ``program``'s
    declared dtype and shape when given."""
    f, s = _open_stream(path)
    out: dict[str, np.ndarray] = {}
    with f:
        for i, name in enumerate(names):
            s.where = f"tensor {name!r} (#{i} of {len(names)})"
            if not s.remaining:
                raise s.fail(f"file ends after {i} of the program's {len(names)} "
                             "persistable variables")
            start = s.pos
            arr = _read_tensor(s)
            var = _find_var(program, name)
            if var is not None:
                _check_declared(s, var, arr, start)
            out[name] = arr
        s.where = None
        if s.remaining:
            raise s.fail(f"{s.remaining} trailing bytes after the {len(names)} variables the "
                         "program declares (params file of another model?)")
    return out


def _find_var(program: Program | None, name: str) -> Var | None:
    if program is None:
        return None
    return next((b.vars[name] for b in program.blocks if name in b.vars), None)


def _check_declared(s: Stream, var: Var, arr: np.ndarray, start: int) -> None:
    if var.dtype is not None and var.dtype != arr.dtype:
        raise s.fail(f"stored as {arr.dtype} but the program declares {var.dtype}: the files "
                     "do not belong together", start)
    if var.shape is not None and all(d >= 0 for d in var.shape) and var.shape != arr.shape:
        raise s.fail(f"stored shape {arr.shape} but the program declares {var.shape}: the files "
                     "do not belong together", start)


def read_inference(pdmodel: str | os.PathLike[str],
                   pdiparams: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Every saved parameter of an inference-format model, by variable name, in file order.
    A ``.pdiparams.info`` beside the params is checked too (:func:`read_params_info`)."""
    info = Path(str(pdiparams) + PARAMS_INFO_SUFFIX)
    if info.is_file():  # first: a hostile sidecar refuses the model before anything else is read
        read_params_info(info)
    program = read_program(pdmodel)
    return read_combined(pdiparams, program.saved_names(), program)


def read_fluid_dir(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """A legacy fluid checkpoint directory. With a ``__model__`` program, its persistable
    variables are read from ``__params__`` (combined) or one file each; without one, every
    regular non-hidden file, subdirectories included, is one variable named by its relative path."""
    root = Path(path)
    if not root.is_dir():
        raise ReaderError(path, "not a directory (a fluid checkpoint is one file per variable)")
    model = root / "__model__"
    if model.is_file():
        program = read_program(model)
        names = program.saved_names()
        if (root / "__params__").is_file():
            return read_combined(root / "__params__", names, program)
        out = {}
        for name in names:
            file = root / name
            if not file.is_file():
                raise ReaderError(file, "missing: the program declares this variable",
                                  tensor=name)
            out[name] = read_tensor_file(file, name)
            var = _find_var(program, name)
            if var is not None and var.shape is not None and all(d >= 0 for d in var.shape) \
                    and var.shape != out[name].shape:
                raise ReaderError(file, f"shape {out[name].shape} but the program declares "
                                  f"{var.shape}", tensor=name)
        return out
    if (root / "__params__").is_file():
        raise ReaderError(root / "__params__", "a combined parameter file needs its program "
                          "(__model__) for the variable names, and there is none beside it")
    # a variable named with "/" (PaddleClas's Xception*_deeplab: "xception_41/entry_flow/conv1/
    # weights") is a file in subdirectories, as Paddle's save op writes it and paddle.load walks it
    files = sorted(p for p in root.rglob("*") if p.is_file()
                   and not any(part.startswith(".") for part in p.relative_to(root).parts))
    if not files:
        raise ReaderError(path, "empty directory: no variable files")
    names = {p.relative_to(root).as_posix(): p for p in files}
    return {name: read_tensor_file(p, name) for name, p in names.items()}


# --- dygraph .pdparams --------------------------------------------------------------------------

STRUCTURED_NAMES = "StructuredToParameterName@@"
BIG_PARAM_INFO = "UnpackBigParamInfor@@"  # sic: Paddle's spelling


def read_pdparams(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """A ``paddle.save`` state dict: ``{structured name: ndarray}`` in file order. The
    ``StructuredToParameterName@@`` table is dropped (:func:`read_pdparams_names` returns it);
    parameters split into slices by protocol 2/3 are joined back."""
    return _pdparams(path)[0]


def read_pdparams_names(path: str | os.PathLike[str]) -> dict[str, str]:
    """The ``StructuredToParameterName@@`` table (structured name -> static variable name), or
    an empty dict when the file has none."""
    return _pdparams(path)[1]


def _pdparams(path: str | os.PathLike[str]) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    obj = safe_pickle.load(path, encoding="latin1")
    if not isinstance(obj, dict):
        raise ReaderError(path, f"not a state dict: the pickle holds a {type(obj).__name__}")
    names = obj.pop(STRUCTURED_NAMES, {})
    if not (isinstance(names, dict)
            and all(isinstance(k, str) and isinstance(v, str) for k, v in names.items())):
        raise ReaderError(path, f"{STRUCTURED_NAMES} is not a table of names (str -> str)")
    big = obj.pop(BIG_PARAM_INFO, {})
    if not isinstance(big, dict):
        raise ReaderError(path, f"{BIG_PARAM_INFO} is a {type(big).__name__}, not a dict")
    out: dict[str, np.ndarray] = {}
    for key, value in obj.items():
        if not isinstance(key, str):
            raise ReaderError(path, f"non-string key {str(key)[:60]!r}: not a state dict")
        if isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], np.ndarray):
            value = value[1]  # paddle.save of a Tensor object: (tensor name, array)
        out[key] = _tensor_value(path, key, value)
    for key, info in big.items():
        if not isinstance(key, str):
            raise ReaderError(path, f"{BIG_PARAM_INFO} has a non-string key")
        out[key] = _join_slices(path, key, info, out)
    return out, names


def _tensor_value(path, key: str, value: Any) -> np.ndarray:
    """A pickled array as a tensor: numbers only, in native byte order."""
    if not isinstance(value, np.ndarray):
        raise ReaderError(path, f"value is a {type(value).__name__}, not an array", tensor=key)
    if value.dtype.kind not in "biufc":  # strings, void records, datetimes: not a parameter
        raise ReaderError(path, f"array of dtype {value.dtype} is not numeric", tensor=key)
    if not value.dtype.isnative:
        value = value.astype(value.dtype.newbyteorder("="))
    return value


def _join_slices(path, key: str, info: Any, out: dict[str, np.ndarray]) -> np.ndarray:
    try:
        shape, slices = tuple(info["OriginShape"]), list(info["slices"])
    except (TypeError, KeyError):
        raise ReaderError(path, f"malformed {BIG_PARAM_INFO} entry", tensor=key) from None
    if not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise ReaderError(path, f"split parameter with shape {str(shape)[:80]}", tensor=key)
    if not all(isinstance(s, str) for s in slices) or len(set(slices)) != len(slices):
        raise ReaderError(path, "split parameter whose slice names are not distinct strings",
                          tensor=key)
    missing = [s for s in slices if s not in out]
    if missing:
        raise ReaderError(path, f"slice {missing[0]!r} of a split parameter is missing", tensor=key)
    parts = [out.pop(s).reshape(-1) for s in slices]
    if len({p.dtype for p in parts}) > 1:
        raise ReaderError(path, "slices of one parameter have different dtypes", tensor=key)
    joined = np.concatenate(parts) if parts else np.empty(0, np.float32)
    if joined.size != math.prod(shape):
        raise ReaderError(path, f"slices hold {joined.size} elements, shape {shape} needs "
                          f"{math.prod(shape)}", tensor=key)
    return joined.reshape(shape)



def read_params_info(path: str | os.PathLike[str]) -> dict[str, str]:
    """``<prefix>.pdiparams.info`` (``paddle.jit.save``): a pickle of {static name:
    {"structured_name": ..., "stop_gradient": ..., "trainable": ...}} -> {static: structured}.
    Not needed to convert, but read through the restricted unpickler whenever it is present:
    ``paddle.jit.load`` unpickles it with plain pickle, so a hostile one would run code in the
    Paddle oracle of ``zooport verify``; such a model is refused here first."""
    obj = safe_pickle.load(path, encoding="latin1")
    if not isinstance(obj, dict):
        raise ReaderError(path, f"not a parameter info table: the pickle holds a {type(obj).__name__}")
    out = {}
    for key, info in obj.items():
        name = info.get("structured_name") if isinstance(info, dict) else None
        if not isinstance(key, str) or not isinstance(name, str):
            raise ReaderError(path, "not a parameter info table (expected {name: {'structured_name': "
                              "str, ...}})", tensor=key if isinstance(key, str) else None)
        out[key] = name
    return out


# --- what a user points at ----------------------------------------------------------------------

INFERENCE_STEMS = ("inference", "model", "__model__")  # PaddleOCR/PaddleX, jit.save, fluid


def inference_files(path: str | os.PathLike[str]) -> tuple[Path, Path]:
    """(program, params) of an inference-format model given as its directory or as a prefix
    (``dir/inference`` for ``dir/inference.pdmodel`` + ``dir/inference.pdiparams``)."""
    p = Path(path)
    if p.is_dir():
        for stem in INFERENCE_STEMS:
            if (p / f"{stem}.pdmodel").is_file():
                p = p / stem
                break
        else:
            raise ReaderError(path, "no inference.pdmodel (or model.pdmodel) in this directory")
    elif p.suffix in (".pdmodel", ".pdiparams"):
        p = p.with_suffix("")
    model, params = p.with_name(p.name + ".pdmodel"), p.with_name(p.name + ".pdiparams")
    for f in (model, params):
        if not f.is_file():
            raise ReaderError(f, "missing: an inference model is a .pdmodel and a .pdiparams "
                              "with one prefix")
    return model, params


def read_inference_path(path: str | os.PathLike[str]) -> tuple[dict[str, np.ndarray], str]:
    """Reader entry for the pipeline: an inference model's parameters, layout "inference"."""
    return read_inference(*inference_files(path)), "inference"


def read_checkpoint(path: str | os.PathLike[str]) -> tuple[dict[str, np.ndarray], str]:
    """Reader entry for the pipeline: a dygraph ``.pdparams`` file (layout "dygraph"), a legacy
    fluid checkpoint directory (layout "fluid") or an exported inference model (layout "inference":
    ``.pdmodel`` + ``.pdiparams``, given as either file, their prefix's directory)."""
    p = Path(path)
    if p.suffix in (".pdmodel", ".pdiparams") or (
            p.is_dir() and any((p / f"{stem}.pdmodel").is_file() for stem in INFERENCE_STEMS)):
        return read_inference_path(p)  # an exported program: layout "inference"
    if p.is_dir():
        return read_fluid_dir(p), "fluid"
    if not p.is_file():
        raise ReaderError(path, "does not exist (expected a .pdparams file or a fluid checkpoint directory)")
    return read_pdparams(p), "dygraph"
