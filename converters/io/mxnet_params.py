"""Reader for MXNet's NDArray list container (``mx.nd.save``, Gluon ``save_parameters``,
``HybridBlock.export``'s ``-0000.params``), written against numpy only.

Layout (all little-endian; verified by hexdumping files written by mxnet 1.9.1):

    file  := u64 list magic 0x112 | u64 reserved | u64 count | count * array
             | u64 name count | name count * (u64 length | UTF-8 bytes)
    array := u32 magic | [i32 storage type]            (V2 0xF993FAC9, V3 0xF993FACA only)
             | i32 ndim | ndim * i64 dim               (V1 0xF993FAC8, V2, V3)
             | i32 dev_type | i32 dev_id | i32 type flag | raw data (C order)

Files older than V1 have no array magic: the first u32 *is* the ndim and the dims are u32.
V3 is written under numpy-shape semantics: there ``ndim == 0`` is a real scalar (one element).
Everywhere else ``ndim == 0`` marks an uninitialised "none" array that carries no context,
type or data; it is not a parameter, so it is refused. Zero-size dims are kept (no data bytes).

Decisions beyond what mxnet does (it is lenient; we read files downloaded from the internet):
trailing bytes after the name list, duplicate names, sparse storage, unnamed arrays and "none"
arrays are errors. bfloat16 (flag 12) comes back as :data:`BFLOAT16`, the same structured dtype
``mx.nd.load`` uses. Flags 8-11 (int16/uint16/uint32/uint64) are mxnet 2.x additions that mxnet
1.9.1 itself refuses to load; their widths are unambiguous, so they are read.
"""
from __future__ import annotations

import math
import os
import struct
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO, Literal

import numpy as np

from ..errors import ReaderError

LIST_MAGIC = 0x112
V1_MAGIC = 0xF993FAC8  # int64 dims, no storage type
V2_MAGIC = 0xF993FAC9  # adds the storage type
V3_MAGIC = 0xF993FACA  # V2 written under numpy-shape semantics
MAX_NDIM = 32  # numpy's own limit; also what tells a pre-V1 ndim from a bad magic
BFLOAT16 = np.dtype([("bfloat16", "<u2")])  # what mx.nd.load returns for bfloat16
EXPORT_PREFIXES = ("arg:", "aux:")

# mshadow type flags -> numpy dtypes (explicit little-endian: the payload is raw LE bytes).
_DTYPES: dict[int, np.dtype] = {
    0: np.dtype("<f4"), 1: np.dtype("<f8"), 2: np.dtype("<f2"), 3: np.dtype("u1"),
    4: np.dtype("<i4"), 5: np.dtype("i1"), 6: np.dtype("<i8"), 7: np.dtype("?"),
    8: np.dtype("<i2"), 9: np.dtype("<u2"), 10: np.dtype("<u4"), 11: np.dtype("<u8"),
    12: BFLOAT16,
}
_SPARSE = {1: "row_sparse", 2: "csr"}
_MAX_BYTES = 2**63 - 1  # numpy refuses larger arrays even when they are zero-size


class Stream:
    """Sequential reader that never reads past the end: every length in the file is untrusted,
    so each read is checked against the bytes actually left before anything is allocated."""

    def __init__(self, path: str, f: BinaryIO, size: int):
        self.path, self.f, self.size, self.pos = path, f, size, 0
        self.where: str | None = None  # e.g. "array #3": names are unknown while reading data

    @property
    def remaining(self) -> int:
        return self.size - self.pos

    def fail(self, message: str, offset: int | None = None) -> ReaderError:
        where = f"{self.where}: " if self.where else ""
        at = self.pos if offset is None else offset
        return ReaderError(self.path, where + message, offset=at)

    def _need(self, n: int, what: str) -> None:
        if n > self.remaining:
            raise self.fail(f"truncated: {what} needs {n} bytes, only {self.remaining} left")

    def take(self, n: int, what: str) -> bytes:
        self._need(n, what)
        data = self.f.read(n)
        if len(data) != n:  # the file shrank under us
            raise self.fail(f"short read of {what}")
        self.pos += n
        return data

    def skip(self, n: int, what: str) -> None:
        """Move past ``n`` bytes without reading them into memory."""
        self._need(n, what)
        self.f.seek(n, os.SEEK_CUR)
        self.pos += n

    def unpack(self, fmt: str, what: str) -> tuple[int, ...]:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt), what))

    def one(self, fmt: str, what: str) -> int:
        return self.unpack(fmt, what)[0]

    def fill(self, buf: np.ndarray, what: str) -> None:
        """Read straight into an owned array: one allocation, no intermediate bytes object."""
        self._need(buf.nbytes, what)
        if buf.nbytes and self.f.readinto(memoryview(buf)) != buf.nbytes:
            raise self.fail(f"short read of {what}")
        self.pos += buf.nbytes

    def array(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        """The C-order data of ``shape``, allocated only once the bytes are known to be there."""
        # Python ints: the products cannot overflow, so a forged shape cannot wrap to a small size.
        nbytes = math.prod(shape) * dtype.itemsize
        if nbytes > self.remaining:
            raise self.fail(f"shape {shape} of {_dtype_name(dtype)} needs {nbytes} data bytes, "
                            f"only {self.remaining} left")
        if math.prod(d for d in shape if d) * dtype.itemsize > _MAX_BYTES:  # zero-size, yet
            raise self.fail(f"shape {shape} is too large to represent")  # numpy refuses it
        arr = np.empty(shape, dtype)
        self.fill(arr.reshape(-1).view(np.uint8), "data")
        return arr


def _read_ndim(s: Stream) -> tuple[int, str, bool]:
    """Magic (and storage type) -> (ndim, struct code of a dim, whether ndim 0 is a scalar)."""
    at = s.pos
    magic = s.one("<I", "array magic")
    if magic in (V2_MAGIC, V3_MAGIC):
        stype_at = s.pos
        stype = s.one("<i", "storage type")
        if stype in _SPARSE:
            raise s.fail(f"sparse arrays are not supported ({_SPARSE[stype]} storage)", stype_at)
        if stype != 0:
            raise s.fail(f"unknown storage type {stype}", stype_at)
    if magic in (V1_MAGIC, V2_MAGIC, V3_MAGIC):
        return s.one("<i", "ndim"), "q", magic == V3_MAGIC
    if magic <= MAX_NDIM:  # pre-V1: no magic, this word was the ndim and dims are u32
        return magic, "I", False
    raise s.fail(f"bad array magic 0x{magic:08x} (expected 0x{V2_MAGIC:08x}, "
                 f"0x{V3_MAGIC:08x}, 0x{V1_MAGIC:08x} or a legacy ndim <= {MAX_NDIM})", at)


def _read_shape(s: Stream) -> tuple[int, ...]:
    ndim, dim_code, scalar_ok = _read_ndim(s)
    at = s.pos - 4
    if not 0 <= ndim <= MAX_NDIM:
        raise s.fail(f"ndim {ndim} out of range 0..{MAX_NDIM}", at)
    if ndim == 0 and not scalar_ok:
        raise s.fail("uninitialised ('none') array: no shape and no data", at)
    dims_at = s.pos
    shape = s.unpack(f"<{ndim}{dim_code}", f"shape of {ndim} dims")
    if any(d < 0 for d in shape):
        raise s.fail(f"negative dimension in shape {shape}", dims_at)
    return shape


def _read_array(s: Stream) -> np.ndarray:
    shape = _read_shape(s)
    s.unpack("<ii", "context")  # device type/id: ignored, mxnet itself loads onto the CPU
    flag_at = s.pos
    flag = s.one("<i", "type flag")
    dtype = _DTYPES.get(flag)
    if dtype is None:
        raise s.fail(f"unknown type flag {flag}", flag_at)
    return s.array(shape, dtype)


def _dtype_name(dtype: np.dtype) -> str:
    return "bfloat16" if dtype == BFLOAT16 else str(dtype)


def _read_arrays(s: Stream) -> list[np.ndarray]:
    magic = s.one("<Q", "list magic")
    if magic != LIST_MAGIC:
        raise s.fail(f"not an MXNet NDArray file (list magic 0x{magic:x}, expected 0x112)", 0)
    s.one("<Q", "reserved word")  # mxnet writes 0 and never checks it
    count_at = s.pos
    count = s.one("<Q", "array count")
    if count * 4 > s.remaining:  # every array takes at least a 4-byte word: bounds the loop
        raise s.fail(f"declares {count} arrays but only {s.remaining} bytes are left", count_at)
    arrays = []
    for i in range(count):
        s.where = f"array #{i} of {count}"
        arrays.append(_read_array(s))
    s.where = None
    return arrays


def _read_names(s: Stream, count: int) -> list[tuple[str, int]]:
    """-> [(name, offset of its length field)]; the offsets locate duplicate-name errors."""
    at = s.pos
    n = s.one("<Q", "name count")
    if n == 0 and count:
        raise s.fail(f"{count} array(s) saved without names (a list, not a dict): "
                     "not a parameter file", at)
    if n != count:
        raise s.fail(f"name count {n} does not match the array count {count}", at)
    names = []
    for i in range(n):
        s.where = f"name #{i} of {n}"
        start = s.pos
        names.append((_read_name(s), start))
    s.where = None
    return names


def _read_name(s: Stream) -> str:
    at = s.pos
    length = s.one("<Q", "name length")
    if length > s.remaining:
        raise s.fail(f"name length {length} runs past the end of the file "
                     f"({s.remaining} bytes left)", at)
    raw = s.take(length, "name")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise s.fail(f"name is not valid UTF-8 (bad byte 0x{raw[exc.start]:02x})",
                     at + 8 + exc.start) from None


def _pair(s: Stream, names: list[tuple[str, int]],
          arrays: list[np.ndarray]) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    index: dict[str, int] = {}
    for i, ((name, at), arr) in enumerate(zip(names, arrays)):
        if name in out:  # mxnet would silently keep the last one
            raise ReaderError(s.path, f"duplicate name (arrays #{index[name]} and #{i})",
                              offset=at, tensor=name)
        out[name], index[name] = arr, i
    return out


def read_ndarray_file(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Every named array of an MXNet NDArray file, names verbatim, in file order. Arrays are owned,
    writable and C-contiguous, with the dtype and shape mxnet stored."""
    shown = str(path)
    try:
        f = open(Path(path), "rb")
    except OSError as exc:
        raise ReaderError(shown, f"cannot open: {exc.strerror or exc}") from exc
    with f:
        s = Stream(shown, f, os.fstat(f.fileno()).st_size)
        arrays = _read_arrays(s)
        names = _read_names(s, len(arrays))
        if s.remaining:
            raise s.fail(f"{s.remaining} unexpected trailing bytes after the name list")
    return _pair(s, names, arrays)


def detect_layout(names: Iterable[str]) -> Literal["export", "gluon"]:
    """"export" when every name carries an ``arg:``/``aux:`` prefix (``HybridBlock.export``),
    else "gluon". A mixed or empty set is "gluon": stripping only some names could merge two
    naming schemes silently, so mixed files keep their names verbatim for the rules to judge."""
    names = list(names)
    if names and all(n.startswith(EXPORT_PREFIXES) for n in names):
        return "export"
    return "gluon"


def read_params(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """:func:`read_ndarray_file` minus the ``arg:``/``aux:`` prefixes of the export layout."""
    return read_checkpoint(path)[0]


def read_checkpoint(path: str | os.PathLike[str]) -> tuple[dict[str, np.ndarray], str]:
    """(tensors with export prefixes stripped, the layout detected on the names as stored)."""
    tensors = read_ndarray_file(path)
    if detect_layout(tensors) != "export":
        return tensors, "gluon"
    out: dict[str, np.ndarray] = {}
    origin: dict[str, str] = {}
    for name, arr in tensors.items():
        short = name[len("arg:"):]
        if short in out:
            raise ReaderError(path, f"{origin[short]!r} and {name!r} both become {short!r} once "
                              "the arg:/aux: prefix is stripped", tensor=name)
        out[short], origin[short] = arr, name
    return out, "export"
