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

The opcodes run on Python's pure-Python unpickler (same speed on checkpoints: their time goes into
a few large byte strings), because its steps can be checked one by one where the C one cannot:

* EXT1/2/4 (a global named by a number from ``copyreg``'s registry) are refused: CPython resolves a
  code it has seen before from a process-wide cache without calling ``find_class``;
* NEWOBJ/NEWOBJ_EX are refused (nothing admitted is built that way), BUILD applies only to the
  array placeholder and to dtypes, SETITEM(S)/ADDITEMS/APPEND(S) only to dicts, sets and lists;
* every declared length is bounded by the file: the C unpickler allocates a BINBYTES/BYTEARRAY8
  of the size the file declares before reading it (13 bytes asked for 16 GiB), and sizes its memo
  table by the largest index a PUT names (9 bytes cost 256 MiB); here the memo is a dict and the
  one preallocating opcode (BYTEARRAY8) is checked;
* at most :data:`MAX_HASHED` dict keys and set members that are not str/bytes per file: int, float
  and tuple hashes are not randomised, so a file can make every key collide and turn a 1 MB dict
  into minutes of CPU (20,000 colliding ints took 3 s, 100,000 take minutes).
"""
from __future__ import annotations

import _codecs
import _compat_pickle
import collections
import io
import math
import os
import pickle
import reprlib
import struct
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from ..errors import ReaderError

MAX_BYTES = 8 << 30  # refuse larger pickle files outright: no checkpoint we read comes close
MAX_HASHED = 4096  # non-str/bytes dict keys and set members per file (4096 colliding ints: 0.15 s)
_SHORT = reprlib.Repr()  # error messages show a bounded repr of what the file held
_SHORT.maxstring = _SHORT.maxother = 60


class _NDArrayToken:
    """Stands for ``numpy.ndarray`` inside a pickle; only :func:`_reconstruct` accepts it."""

    def __repr__(self) -> str:
        return "numpy.ndarray"


_NDARRAY = _NDArrayToken()


class Refused(Exception):
    """Raised by a stand-in while loading (also by the ``admit``/``persistent`` callables a
    caller passes to :func:`loads`); :func:`loads` turns it into a ReaderError."""


_Refused = Refused


def _clean(dtype: Any) -> np.dtype:
    """``dtype`` if it is a plain data dtype whose flags are what numpy itself would give it."""
    if not isinstance(dtype, np.dtype):
        raise _Refused(f"{type(dtype).__name__} where a numpy dtype belongs")
    plain = dtype.fields is None and dtype.subdtype is None
    fresh = np.dtype(dtype.str) if plain else np.dtype(dtype.descr)
    if dtype.hasobject or fresh.hasobject:
        raise _Refused(f"object dtype {_SHORT.repr(dtype)} (an object array is not a tensor)")
    if fresh != dtype or fresh.flags != dtype.flags or fresh.itemsize != dtype.itemsize:
        raise _Refused(f"dtype {_SHORT.repr(dtype)} with forged state (flags {dtype.flags})")
    return fresh


def _dtype(obj: Any, align: bool = False, copy: bool = False) -> np.dtype:
    dt = np.dtype(obj, align, copy)
    if dt.hasobject:
        raise _Refused(f"object dtype {_SHORT.repr(dt)} (an object array is not a tensor)")
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
            raise _Refused(f"ndarray shape {_SHORT.repr(shape)}")
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
        raise _Refused(f"numpy _reconstruct of {_SHORT.repr(cls)} (only numpy.ndarray is admitted)")
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
        raise _Refused(f"numpy _frombuffer shape {_SHORT.repr(shape)}")
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
        raise _Refused(f"_codecs.encode with encoding {_SHORT.repr(encoding)} (only latin1 stores bytes)")
    return _codecs.encode(text, encoding)


def _no_size(kind: type) -> Any:
    """bytes/bytearray minus the ``bytes(n)`` form."""
    def make(*args: Any) -> Any:
        if args and isinstance(args[0], int):
            raise _Refused(f"{kind.__name__}({_SHORT.repr(args[0])}) (sized allocation)")
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
    # Plain data; ``tuple`` is how paddle.save stores a Tensor outside a state dict: (name, array).
    # set, frozenset and OrderedDict are admitted through _HASHING (their keys are counted).
    ("builtins", "tuple"): tuple,
    ("builtins", "list"): list,
    ("builtins", "bytes"): _no_size(bytes),  # protocols 0-2 write b"" as bytes()
    ("builtins", "bytearray"): _no_size(bytearray),
    ("builtins", "complex"): complex,
}
# numpy 2 names the same functions under numpy._core.
_ALIASES = {"numpy._core.multiarray": "numpy.core.multiarray",
            "numpy._core.numeric": "numpy.core.numeric"}


class _Exact(io.BytesIO):
    """The pickle's bytes; a read the data cannot satisfy is a truncated (or lying) file, where
    Python's unpickler would carry on with the short result."""

    def read(self, n: int | None = -1) -> bytes:
        at = self.tell()
        data = super().read(n)
        if n is not None and 0 <= n != len(data):
            raise pickle.UnpicklingError(f"truncated: {n} byte(s) needed at offset {at}, "
                                         f"{len(data)} left")
        return data


class _Restricted(pickle._Unpickler):  # noqa: SLF001 - the pure-Python one (module docstring)
    dispatch = dict(pickle._Unpickler.dispatch)  # noqa: SLF001

    def __init__(self, data: bytes, path: str, encoding: str, admit: Mapping[tuple[str, str], Any],
                 persistent: Callable[[Any], Any] | None):
        super().__init__(_Exact(data), encoding=encoding, fix_imports=True)
        self.path, self.size, self.hashed = path, len(data), 0
        self.admit, self.persistent = admit, persistent

    def find_class(self, module: str, name: str) -> Any:
        # Python-2 names (__builtin__.set, copy_reg...) -> Python 3, as pickle's fix_imports does.
        module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        key = (_ALIASES.get(module, module), name)
        if key in _HASHING:  # builds a hashed container: its keys count against MAX_HASHED
            return self._hashing(_HASHING[key])
        if key in _ALLOWED:
            return _ALLOWED[key]
        if key in self.admit:
            return self.admit[key]
        raise ReaderError(self.path, f"pickle refers to the global {_SHORT.repr(module)[1:-1]}."
                          f"{_SHORT.repr(name)[1:-1]}, which is not plain data (numpy arrays and "
                          "containers only); refusing to load it")

    def persistent_load(self, pid: Any) -> Any:
        if self.persistent is not None:
            return self.persistent(pid)
        raise ReaderError(self.path, f"pickle uses a persistent id {_SHORT.repr(pid)}; "
                          "refusing to load it")

    def get_extension(self, code: int) -> Any:  # EXT1/EXT2/EXT4
        import copyreg
        key = copyreg._inverted_registry.get(code)  # noqa: SLF001 - only to name it
        named = f" ({key[0]}.{key[1]})" if key else ""
        raise ReaderError(self.path, f"pickle names a global by extension code {code}{named}; "
                          "refusing to load it")

    # -- opcodes checked before they run -----------------------------------------------------

    def _count(self, keys: list) -> None:
        """Count the non-str/bytes keys about to be hashed; refuse past MAX_HASHED."""
        self.hashed += sum(not isinstance(k, (str, bytes)) for k in keys)
        if self.hashed > MAX_HASHED:
            raise _Refused(f"more than {MAX_HASHED} dict keys or set members that are not "
                           "strings (their hashes are predictable: a collision flood?)")

    def _hashing(self, kind: type) -> Any:
        """set/frozenset/OrderedDict called by REDUCE: one iterable argument, keys counted."""
        def make(*args: Any) -> Any:
            if len(args) > 1:
                raise _Refused(f"{kind.__name__} called with {len(args)} arguments")
            if not args:
                return kind()
            items = list(args[0].items()) if isinstance(args[0], dict) else list(args[0])
            if kind is collections.OrderedDict:  # pairs; any other 2-item iterable counts as one key
                self._count([p[0] if isinstance(p, (tuple, list)) and p else p for p in items])
            else:
                self._count(items)
            return kind(items)
        return make

    def _target(self, kinds: tuple[type, ...], opcode: str) -> Any:
        obj = self.stack[-1] if self.stack else None
        if not isinstance(obj, kinds):
            raise _Refused(f"{opcode} on a {type(obj).__name__}")
        return obj

    def load_setitem(self) -> None:
        value, key = self.stack.pop(), self.stack.pop()
        self._count([key])
        self._target((dict,), "SETITEM")[key] = value

    def load_setitems(self) -> None:
        items = self.pop_mark()
        self._count(items[0::2])
        self._target((dict,), "SETITEMS").update(zip(items[0::2], items[1::2]))

    def load_dict(self) -> None:
        items = self.pop_mark()
        self._count(items[0::2])
        self.append(dict(zip(items[0::2], items[1::2])))

    def load_additems(self) -> None:
        items = self.pop_mark()
        self._count(items)
        self._target((set,), "ADDITEMS").update(items)

    def load_frozenset(self) -> None:
        items = self.pop_mark()
        self._count(items)
        self.append(frozenset(items))

    def load_append(self) -> None:
        value = self.stack.pop()
        self._target((list,), "APPEND").append(value)

    def load_appends(self) -> None:
        items = self.pop_mark()
        self._target((list,), "APPENDS").extend(items)

    def load_build(self) -> None:
        state = self.stack.pop()
        self._target((_ArrayProxy, np.dtype), "BUILD").__setstate__(state)

    def load_newobj(self) -> None:
        raise _Refused("NEWOBJ (object construction by class): no admitted type is built that way")

    def load_bytearray8(self) -> None:
        (size,) = struct.unpack("<Q", self.read(8))
        if size > self.size:  # bytearray(size) below would allocate it before reading
            raise _Refused(f"BYTEARRAY8 declares {size} bytes in a {self.size}-byte file")
        self.append(bytearray(self.read(size)))

    for _code, _fn in ((pickle.SETITEM, load_setitem), (pickle.SETITEMS, load_setitems),
                       (pickle.DICT, load_dict), (pickle.ADDITEMS, load_additems),
                       (pickle.FROZENSET, load_frozenset), (pickle.APPEND, load_append),
                       (pickle.APPENDS, load_appends), (pickle.BUILD, load_build),
                       (pickle.NEWOBJ, load_newobj), (pickle.NEWOBJ_EX, load_newobj),
                       (pickle.BYTEARRAY8, load_bytearray8)):
        dispatch[_code[0]] = _fn
    del _code, _fn


# builtins that hash what they are given: (module, name) -> the container type
_HASHING: dict[tuple[str, str], type] = {
    ("builtins", "set"): set, ("builtins", "frozenset"): frozenset,
    ("collections", "OrderedDict"): collections.OrderedDict,
}


def loads(data: bytes, path: str | os.PathLike[str] = "<bytes>", *, encoding: str = "ASCII",
          admit: Mapping[tuple[str, str], Any] | None = None,
          persistent: Callable[[Any], Any] | None = None) -> Any:
    """Unpickle ``data`` allowing only numpy arrays and plain containers. ``encoding`` is how
    Python-2 ``str`` objects decode: ``"latin1"`` for Python-2 pickles holding numpy arrays.
    A caller reading a container format may ``admit`` more (module, name) globals, mapped to its
    own checked stand-ins, and resolve persistent ids with ``persistent``; both raise
    :class:`Refused` to reject the file."""
    shown = str(path)
    try:
        unpickler = _Restricted(bytes(data), shown, encoding, admit or {}, persistent)
        return _resolve(unpickler.load(), {})
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
