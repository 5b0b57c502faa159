"""The one restricted unpickler every pickle reader uses (``.pdparams``, Detectron ``.pkl``).

A pickle runs code by naming a global (GLOBAL/STACK_GLOBAL/INST/OBJ/EXT opcodes) and then calling
it. Every such name passes through :meth:`_Restricted.find_class`, so an allow-list there stops a
hostile file before any of its code runs. The list admits numpy arrays, dtypes and scalars and a
few plain containers. Several entries come back as small checked stand-ins, not the real thing:

* numpy arrays are never built by numpy's own ``__setstate__``: a dtype's state may carry forged
  flags (say "items are object pointers" on raw bytes), which numpy accepts and would later
  dereference. ``_reconstruct`` returns an :class:`_ArrayProxy` whose ``__setstate__`` checks
  the dtype against a clean copy and the data size against the shape; :func:`loads` then swaps
  every proxy for its array. ``numpy.ndarray`` itself is only a token ``_reconstruct`` accepts
  (called directly it would allocate any shape the file names);
* ``numpy.dtype`` refuses object dtypes (an object array is not a tensor);
* ``bytes(n)``/``bytearray(n)`` (an allocation the file chose) are refused;
* ``_codecs.encode`` (how protocol 0-2 pickles written by Python 3 store bytes) admits only latin-1;
* ``numpy.core.numeric._frombuffer`` (protocol 5) checks the buffer size against the shape.

Pickles written under numpy 2 name ``numpy._core``; those names map onto numpy 1's ``numpy.core``.
"""
from __future__ import annotations

import _codecs
import _compat_pickle
import collections
import io
import math
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
from numpy.core import multiarray as _multiarray

from ..errors import ReaderError

MAX_BYTES = 8 << 30  # refuse larger pickle files outright: no checkpoint we read comes close


class _NDArrayToken:
    """Stands for ``numpy.ndarray`` inside a pickle; only :func:`_reconstruct` accepts it."""

    def __repr__(self) -> str:
        return "numpy.ndarray"


_NDARRAY = _NDArrayToken()


class _Refused(Exception):
    """Raised by a stand-in while loading; :func:`loads` turns it into a ReaderError."""


def _clean(dtype: Any) -> np.dtype:
    """``dtype`` if it is a plain data dtype whose flags are what numpy itself would give it."""
    if not isinstance(dtype, np.dtype):
        raise _Refused(f"{type(dtype).__name__} where a numpy dtype belongs")
    plain = dtype.fields is None and dtype.subdtype is None
    fresh = np.dtype(dtype.str) if plain else np.dtype(dtype.descr)
    if dtype.hasobject or fresh.hasobject:
        raise _Refused(f"object dtype {dtype!r} (an object array is not a tensor)")
    if fresh != dtype or fresh.flags != dtype.flags or fresh.itemsize != dtype.itemsize:
        raise _Refused(f"dtype {dtype!r} with forged state (flags {dtype.flags})")
    return fresh


def _dtype(obj: Any, align: bool = False, copy: bool = False) -> np.dtype:
    dt = np.dtype(obj, align, copy)
    if dt.hasobject:
        raise _Refused(f"object dtype {dt!r} (an object array is not a tensor)")
    return dt


class _ArrayProxy:
    """Placeholder for an ndarray until its state arrives (see the module docstring)."""

    __slots__ = ("array",)

    def __init__(self) -> None:
        self.array: np.ndarray | None = None

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise _Refused("ndarray state is not a 4- or 5-tuple")
        shape, dtype, fortran, raw = state[-4:]  # 5-tuples lead with a version number
        dtype = _clean(dtype)
        if not (isinstance(shape, tuple) and all(isinstance(d, int) and d >= 0 for d in shape)):
            raise _Refused(f"ndarray shape {shape!r}")
        if isinstance(raw, str):  # a Python-2 str, decoded with encoding="latin1"
            raw = raw.encode("latin1")
        if not isinstance(raw, (bytes, bytearray)):
            raise _Refused(f"ndarray data is a {type(raw).__name__}, not bytes")
        if math.prod(shape) * dtype.itemsize != len(raw):
            raise _Refused(f"ndarray data of {len(raw)} bytes does not fit shape {shape} of "
                           f"{dtype}")
        arr = np.frombuffer(raw, dtype).reshape(shape, order="F" if fortran else "C")
        self.array = arr.copy(order="A")  # owned and writable; keeps the Fortran layout


def _reconstruct(cls: Any, shape: Any, dtype_code: Any) -> _ArrayProxy:
    if cls is not _NDARRAY:
        raise _Refused(f"numpy _reconstruct of {cls!r} (only numpy.ndarray is admitted)")
    return _ArrayProxy()


def _scalar(dtype: Any, data: Any = None) -> Any:
    dtype = _clean(dtype)
    if isinstance(data, str):  # Python-2 pickles
        data = data.encode("latin1")
    if not isinstance(data, bytes) or len(data) != dtype.itemsize:
        raise _Refused(f"numpy scalar of {dtype} with {type(data).__name__} data")
    return np.frombuffer(data, dtype)[0].copy()


def _frombuffer(buf: Any, dtype: Any, shape: Any, order: str) -> np.ndarray:
    dtype = _clean(dtype)
    if not (isinstance(shape, tuple) and all(isinstance(d, int) and d >= 0 for d in shape)):
        raise _Refused(f"numpy _frombuffer shape {shape!r}")
    data = memoryview(buf).cast("B")
    if math.prod(shape) * dtype.itemsize != data.nbytes:
        raise _Refused(f"numpy _frombuffer: shape {shape} of {dtype} does not match "
                       f"{data.nbytes} buffer bytes")
    arr = np.frombuffer(data, dtype).reshape(shape, order="F" if order == "F" else "C")
    return arr.copy(order="A")  # the buffer may be read-only bytes: callers get owned arrays


def _resolve(obj: Any, seen: dict[int, Any]) -> Any:
    """Swap every :class:`_ArrayProxy` for its array, keeping shared references shared."""
    key = id(obj)
    if key in seen:
        return seen[key]
    if isinstance(obj, _ArrayProxy):
        if obj.array is None:
            raise _Refused("ndarray placeholder never received its data")
        out: Any = obj.array
    elif isinstance(obj, dict):  # OrderedDict too: same type back, keys resolved as well
        out = type(obj)()
        seen[key] = out
        for k, v in obj.items():
            out[_resolve(k, seen)] = _resolve(v, seen)
        return out
    elif isinstance(obj, list):
        out = []
        seen[key] = out
        out.extend(_resolve(v, seen) for v in obj)
        return out
    elif isinstance(obj, (tuple, set, frozenset)):
        out = type(obj)(_resolve(v, seen) for v in obj)
    else:
        return obj
    seen[key] = out
    return out


def _encode(text: Any, encoding: str = "utf-8") -> bytes:
    if not isinstance(text, str) or encoding.replace("-", "").replace("_", "").lower() not in (
            "latin1", "iso88591"):
        raise _Refused(f"_codecs.encode with encoding {encoding!r} (only latin1 stores bytes)")
    return _codecs.encode(text, encoding)


def _no_size(kind: type) -> Any:
    """bytes/bytearray minus the ``bytes(n)`` form."""
    def make(*args: Any) -> Any:
        if args and isinstance(args[0], int):
            raise _Refused(f"{kind.__name__}({args[0]!r}) (sized allocation)")
        return kind(*args)
    return make


# (module, name) -> what the pickle gets. Anything absent is refused before it can be called.
_ALLOWED: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy.core.multiarray", "scalar"): _scalar,
    ("numpy.core.numeric", "_frombuffer"): _frombuffer,
    ("numpy", "ndarray"): _NDARRAY,
    ("numpy", "dtype"): _dtype,
    ("_codecs", "encode"): _encode,
    ("collections", "OrderedDict"): collections.OrderedDict,
    # Plain data; ``tuple`` is how paddle.save stores a Tensor outside a state dict: (name, array).
    ("builtins", "tuple"): tuple,
    ("builtins", "list"): list,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "bytes"): _no_size(bytes),  # protocols 0-2 write b"" as bytes()
    ("builtins", "bytearray"): _no_size(bytearray),
    ("builtins", "complex"): complex,
}
# numpy 2 names the same functions under numpy._core.
_ALIASES = {"numpy._core.multiarray": "numpy.core.multiarray",
            "numpy._core.numeric": "numpy.core.numeric"}


class _Restricted(pickle.Unpickler):
    def __init__(self, file: io.BufferedIOBase, path: str, encoding: str):
        super().__init__(file, encoding=encoding, fix_imports=True)
        self.path = path

    def find_class(self, module: str, name: str) -> Any:
        # Python-2 names (__builtin__.set, copy_reg...) -> Python 3, as pickle's fix_imports does.
        module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        key = (_ALIASES.get(module, module), name)
        if key in _ALLOWED:
            return _ALLOWED[key]
        raise ReaderError(self.path, f"pickle refers to the global {module}.{name}, which is not "
                          "plain data (numpy arrays and containers only); refusing to load it")

    def persistent_load(self, pid: Any) -> Any:
        raise ReaderError(self.path, f"pickle uses a persistent id {str(pid)[:60]!r}; "
                          "refusing to load it")


def loads(data: bytes, path: str | os.PathLike[str] = "<bytes>", *,
          encoding: str = "ASCII") -> Any:
    """Unpickle ``data`` allowing only numpy arrays and plain containers. ``encoding`` is how
    Python-2 ``str`` objects decode: ``"latin1"`` for Python-2 pickles holding numpy arrays."""
    shown = str(path)
    try:
        return _resolve(_Restricted(io.BytesIO(data), shown, encoding).load(), {})
    except ReaderError:
        raise
    except _Refused as exc:
        raise ReaderError(shown, f"pickle refused: {exc}") from None
    except RecursionError:
        raise ReaderError(shown, "pickle nests too deeply") from None
    except MemoryError:
        raise ReaderError(shown, "pickle asks for more memory than is available") from None
    except Exception as exc:  # noqa: BLE001 - any failure of a malformed stream is a bad file
        msg = " ".join(str(exc).split())[:200]
        raise ReaderError(shown, f"not a valid pickle ({type(exc).__name__}: {msg})") from None


def load(path: str | os.PathLike[str], *, encoding: str = "ASCII") -> Any:
    """:func:`loads` of a file, refusing files over :data:`MAX_BYTES` before reading them."""
    shown = str(path)
    try:
        with open(Path(path), "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size > MAX_BYTES:
                raise ReaderError(shown, f"{size} bytes is larger than any pickle checkpoint "
                                  f"this reader accepts ({MAX_BYTES})")
            data = f.read()
    except OSError as exc:
        raise ReaderError(shown, f"cannot open: {exc.strerror or exc}") from exc
    return loads(data, shown, encoding=encoding)
