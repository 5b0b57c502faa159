"""Atomic, verified, deterministic output files.

Every file is written to a temp file in the target's directory, fsynced, read back and compared
bit for bit, and only then renamed over the target. A failure at any point (including Ctrl-C)
removes the temp file and leaves an existing target untouched; a kill leaves only a hidden temp,
removed by the next write (see "the atomic write" below, which also commits a weights file and
its manifest as a pair, and serialises concurrent writers into one directory).

Determinism: the same tensors and metadata give byte-identical files, whatever the target's name
and whatever order the metadata was given in.

* safetensors: the library orders tensors itself, but stores ``__metadata__`` in a Rust HashMap,
  so with two or more entries its order (and so the bytes) changes from call to call. We rewrite
  the header with the metadata sorted; tensor entries and data are left exactly as the library
  wrote them.
* pth: ``torch.save`` is byte-deterministic for the same dict, except that when given a *path* it
  names the zip's root folder after the file's stem. We always pass an open file, so the root is
  the fixed ``archive/``. Tensors are stored in the caller's key order; metadata sorted.
"""
from __future__ import annotations

import contextlib
import errno
import glob
import hashlib
import json
import math
import os
import pickle
import signal
import tempfile
import time
import zipfile
import zlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as st_save

from ..errors import OutputError, ReaderError, ZooportError

try:
    import fcntl
except ImportError:  # Windows: no directory locks; writes stay atomic, concurrent ones race
    fcntl = None

FORMATS = ("safetensors", "pth")

# Failures of the disk or of the serializers; anything else is a bug and propagates unchanged.
_IO_ERRORS = (OSError, RuntimeError, SafetensorError, ZooportError, pickle.UnpicklingError, EOFError)


def write_weights(path: Path, state_dict: Mapping[str, torch.Tensor], metadata: Mapping[str, str],
                  fmt: str = "safetensors") -> str:
    """Write atomically, reload and compare, return the sha256 hex of the final file."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown output format {fmt!r}; expected one of {FORMATS}")
    path = Path(path)
    tensors, meta = _prepare(state_dict), _check_metadata(metadata)
    return _atomic_write(path, lambda fh: _serialize(fh, tensors, meta, fmt),
                         lambda tmp: _verify(path, tmp, tensors, meta))


def write_json(path: Path, obj: Any) -> str:
    """Write ``obj`` as JSON (sorted keys, indent 2, trailing newline) atomically; return sha256."""
    path = Path(path)
    data = _json_bytes(obj)
    return _atomic_write(path, lambda fh: fh.write(data), _same_bytes(path, data))


def read_weights(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read a file written by :func:`write_weights` (either format, told apart by content)."""
    path = Path(path)
    try:
        if _sniff(path) == "safetensors":
            return _read_safetensors(path)
        return _read_pth(path)
    except ReaderError:
        raise
    except Exception as exc:  # noqa: BLE001 - the only input is the file: a corrupt one raises anything
        raise ReaderError(path, f"cannot read weights ({_describe(exc)})") from exc


# -- preparing the input -------------------------------------------------------------------------

def _prepare(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for name, tensor in state_dict.items():
        if not isinstance(name, str) or not isinstance(tensor, torch.Tensor):
            raise TypeError(f"state_dict must map str to Tensor, got {name!r}: {type(tensor).__name__}")
        if tensor.layout != torch.strided:
            raise TypeError(f"tensor {name!r} has layout {tensor.layout}; only dense tensors are supported")
        t = tensor.detach().cpu().contiguous()
        storage = t.untyped_storage()
        # safetensors refuses tensors sharing memory, and torch.save would write a view's whole
        # storage: give every tensor a storage of exactly its own size.
        if storage.data_ptr() in seen or t.storage_offset() != 0 or storage.nbytes() != t.nbytes:
            t = t.clone()
        seen.add(t.untyped_storage().data_ptr())
        out[name] = t
    return out


def _check_metadata(metadata: Mapping[str, str]) -> dict[str, str]:
    bad = [k for k, v in metadata.items() if not isinstance(k, str) or not isinstance(v, str)]
    if bad:
        raise TypeError(f"metadata keys and values must be str; offending keys: {bad!r}")
    return dict(sorted(metadata.items()))  # sorted: input order must not change the bytes


# -- serializing ---------------------------------------------------------------------------------

def _serialize(fh: IO[bytes], tensors: dict[str, torch.Tensor], meta: dict[str, str], fmt: str) -> None:
    if fmt == "safetensors":
        blob = st_save(tensors, metadata=meta)
        n = int.from_bytes(blob[:8], "little")
        header = _canonical_header(blob[8:8 + n])
        fh.write(len(header).to_bytes(8, "little"))
        fh.write(header)
        fh.write(memoryview(blob)[8 + n:])  # memoryview: no copy of the tensor data
    else:
        # A file object, not a path: with a path torch names the zip root after the file.
        torch.save({"state_dict": tensors, "metadata": meta}, fh)


def _canonical_header(raw: bytes) -> bytes:
    """The safetensors JSON header with ``__metadata__`` sorted, padded to 8 bytes like the library."""
    header = json.loads(raw)
    out = {"__metadata__": dict(sorted(header.pop("__metadata__").items()))} if "__metadata__" in header else {}
    out.update(header)  # tensor entries keep the library's order and offsets
    text = json.dumps(out, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return text + b" " * (-len(text) % 8)


# -- reading -------------------------------------------------------------------------------------

def _sniff(path: Path) -> str:
    with open(path, "rb") as fh:
        head = fh.read(9)
    # safetensors: u64 little-endian header length, then the JSON header's "{".
    return "safetensors" if len(head) == 9 and head[8:9] == b"{" else "pth"


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    with safe_open(str(path), framework="pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})


def _read_pth(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    _check_pth(path)  # our restricted unpickler first; then torch's own allow-list builds tensors
    obj = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(obj, dict) or set(obj) != {"state_dict", "metadata"}:
        raise ReaderError(path, "not a zooport .pth (expected a dict with 'state_dict' and 'metadata')")
    sd, meta = obj["state_dict"], obj["metadata"]
    if not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in sd.items()):
        raise ReaderError(path, "'state_dict' must map str to Tensor")
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items()):
        raise ReaderError(path, "'metadata' must map str to str")
    return dict(sd), dict(meta)


# torch.save's storage classes -> bytes per element (what a persistent id's numel counts)
_STORAGES = {"FloatStorage": 4, "DoubleStorage": 8, "HalfStorage": 2, "BFloat16Storage": 2,
             "LongStorage": 8, "IntStorage": 4, "ShortStorage": 2, "CharStorage": 1, "ByteStorage": 1,
             "BoolStorage": 1, "ComplexFloatStorage": 8, "ComplexDoubleStorage": 16}
MAX_PTH_PICKLE = 64 << 20  # the pickle inside a .pth holds names and shapes, never tensor data


class _Token:
    """What the structure check builds instead of storages and tensors."""

    def __init__(self, kind: str, size: int = 0):
        self.kind, self.size = kind, size


def _check_pth(path: Path) -> None:
    """Read the .pth's ``data.pkl`` through :mod:`.safe_pickle` (zooport's allow-list, with
    stand-ins for torch's storages and ``_rebuild_tensor_v2``) before ``torch.load`` sees it, and
    check it is what :func:`write_weights` writes: ``{"state_dict": {str: tensor}, "metadata":
    {str: str}}``, every storage as large as its zip record, every tensor inside its storage.
    torch's weights_only unpickler alone spent 37 s on a 700 kB dict of hash-colliding keys."""
    from . import safe_pickle

    def refuse(msg: str) -> ReaderError:
        return ReaderError(path, f"not a zooport .pth: {msg}")

    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
            pkls = [i for i in infos if i.filename.endswith("/data.pkl") and i.filename.count("/") == 1]
            if len(pkls) != 1 or pkls[0].file_size > MAX_PTH_PICKLE:
                raise refuse("expected one archive/data.pkl of at most 64 MiB")
            root = pkls[0].filename[: -len("data.pkl")]
            data = zf.read(pkls[0])
    except (zipfile.BadZipFile, zlib.error, OSError, NotImplementedError, EOFError) as exc:
        raise refuse(f"not a torch zip archive ({_describe(exc)})") from None
    records = {i.filename[len(root) + 5:]: i.file_size for i in infos if i.filename.startswith(root + "data/")}

    def storage(pid: Any) -> _Token:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"
                and isinstance(pid[1], _Token) and pid[1].kind == "storage type"
                and isinstance(pid[2], str) and type(pid[4]) is int):
            raise safe_pickle.Refused(f"persistent id {str(pid)[:80]} is not a torch storage")
        if records.get(pid[2]) != pid[4] * pid[1].size:
            raise safe_pickle.Refused(f"storage {pid[2]!r} declares {pid[4]} elements; its record "
                                      f"holds {records.get(pid[2])} bytes")
        return _Token("storage", pid[4])

    def rebuild(store: Any, offset: Any, size: Any, stride: Any, *_: Any) -> _Token:
        dims = (offset, *size, *stride) if isinstance(size, tuple) and isinstance(stride, tuple) else ()
        if not (isinstance(store, _Token) and store.kind == "storage" and dims
                and all(type(d) is int and d >= 0 for d in dims) and len(size) == len(stride)):
            raise safe_pickle.Refused("malformed tensor record")
        if math.prod(size) and offset + sum((n - 1) * st for n, st in zip(size, stride)) >= store.size:
            raise safe_pickle.Refused(f"tensor of size {size} runs past its storage")
        return _Token("tensor")

    admit = {("torch._utils", "_rebuild_tensor_v2"): rebuild,
             **{("torch", name): _Token("storage type", n) for name, n in _STORAGES.items()}}
    obj = safe_pickle.loads(data, f"{path} (data.pkl)", admit=admit, persistent=storage)
    if not isinstance(obj, dict) or set(obj) != {"state_dict", "metadata"}:
        raise ReaderError(path, "not a zooport .pth (expected a dict with 'state_dict' and 'metadata')")
    sd, meta = obj["state_dict"], obj["metadata"]
    if not (isinstance(sd, dict) and all(isinstance(k, str) and isinstance(v, _Token) and v.kind == "tensor"
                                         for k, v in sd.items())):
        raise ReaderError(path, "'state_dict' must map str to Tensor")
    if not (isinstance(meta, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items())):
        raise ReaderError(path, "'metadata' must map str to str")


def _reload(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    return read_weights(path)


def _verify(target: Path, tmp: Path, tensors: dict[str, torch.Tensor], meta: dict[str, str]) -> None:
    got, got_meta = _reload(tmp)
    if set(got) != set(tensors):
        diff = sorted(set(got) ^ set(tensors))[:5]
        raise OutputError(f"{target}: reloaded file has different tensor names (e.g. {diff})")
    for name, want in tensors.items():
        if not _same_bits(want, got[name]):
            raise OutputError(f"{target}: tensor {name!r} differs after reload")
    if got_meta != meta:
        raise OutputError(f"{target}: metadata differs after reload")


def _same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    # Compare raw bytes: torch.equal on floats says NaN != NaN and -0.0 == 0.0.
    return torch.equal(a.reshape(-1).view(torch.uint8), b.contiguous().reshape(-1).view(torch.uint8))


# -- the atomic write ----------------------------------------------------------------------------
#
# Every output is staged as a hidden temp file (".<name>.<random>.tmp") in its directory, written,
# fsynced and verified, and only then renamed over its name, all under an exclusive lock on the
# directory. A writer killed at any moment (SIGKILL included) leaves at most hidden temps, which
# never carry an output's name; the next writer of that name, holding the lock, removes them (no
# live writer can own one: writers keep their temps only while they hold the lock).
# write_outputs commits a weights file and its manifest as a pair: the old manifest is removed
# first, the weights renamed, the new manifest renamed last. Whatever instant a kill lands on, a
# manifest present always describes the weights beside it (its sha256 matches); weights without a
# manifest are an unfinished conversion. Concurrent writers into one directory commit in turn.

FAULT_ENV = "ZOOPORT_FAULT"  # "<point>=kill" or "<point>=sleep:<seconds>" (fault-injection tests)


def fault(point: str) -> None:
    """The fault-injection hook of the tests: SIGKILL this process, or sleep, at a named point."""
    spec = os.environ.get(FAULT_ENV, "")
    for item in filter(None, spec.split(",")):
        name, _, action = item.partition("=")
        if name != point:
            continue
        if action == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        elif action.startswith("sleep:"):
            time.sleep(float(action[len("sleep:"):]))


def write_outputs(weights: Path, state_dict: Mapping[str, torch.Tensor], metadata: Mapping[str, str],
                  fmt: str, manifest: Path, describe: Callable[[str], Any]) -> str:
    """Write ``weights`` and its JSON ``manifest`` (``describe(sha256 of the weights)``) as one
    unit (see above); return the weights' sha256."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown output format {fmt!r}; expected one of {FORMATS}")
    weights, manifest = Path(weights), Path(manifest)
    tensors, meta = _prepare(state_dict), _check_metadata(metadata)
    where = [weights]  # the file being written, for the error message
    with _committing(where) as temps, _locked(weights.parent, (weights.name, manifest.name)):
        w_tmp, digest = _stage(weights, lambda fh: _serialize(fh, tensors, meta, fmt),
                               lambda tmp: _verify(weights, tmp, tensors, meta), temps)
        fault("weights-staged")
        where[0] = manifest
        data = _json_bytes(describe(digest))
        m_tmp, _ = _stage(manifest, lambda fh: fh.write(data), _same_bytes(manifest, data), temps)
        fault("manifest-staged")
        manifest.unlink(missing_ok=True)  # never a manifest describing weights it did not see
        fault("manifest-removed")
        where[0] = weights
        os.replace(w_tmp, weights)
        fault("weights-renamed")
        where[0] = manifest
        os.replace(m_tmp, manifest)
        temps.clear()
        _fsync_dir(weights.parent)
        fault("committed")
    return digest


@contextlib.contextmanager
def _committing(where: list[Path]):
    """Disk and serializer failures as one-line OutputErrors naming ``where[0]``; the temps the
    body lists are removed whatever happens (KeyboardInterrupt too)."""
    temps: list[Path] = []
    try:
        yield temps
    except OutputError:
        raise
    except _IO_ERRORS as exc:
        raise OutputError(f"{where[0]}: cannot write ({_describe(exc)})") from exc
    finally:
        for tmp in temps:
            _unlink_quietly(tmp)


def _json_bytes(obj: Any) -> bytes:
    # Strict JSON: NaN/Infinity would make files other tools cannot parse.
    return (json.dumps(obj, sort_keys=True, indent=2, allow_nan=False) + "\n").encode("utf-8")


def _same_bytes(path: Path, data: bytes) -> Callable[[Path], None]:
    def verify(tmp: Path) -> None:
        if tmp.read_bytes() != data:
            raise OutputError(f"{path}: reloaded JSON differs from what was written")
    return verify


def _atomic_write(path: Path, produce: Callable[[IO[bytes]], object], verify: Callable[[Path], None]) -> str:
    with _committing([path]) as temps, _locked(path.parent, (path.name,)):
        tmp, digest = _stage(path, produce, verify, temps)
        os.replace(tmp, path)  # atomic on POSIX: readers see the old file or the new, never a mix
        temps.clear()
        _fsync_dir(path.parent)
    return digest


def _stage(path: Path, produce: Callable[[IO[bytes]], object], verify: Callable[[Path], None],
           temps: list[Path]) -> tuple[Path, str]:
    """Write a verified, fsynced hidden temp beside ``path``; (its path, its sha256)."""
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, "is a directory")
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp",
                                     delete=False) as fh:
        tmp = Path(fh.name)
        temps.append(tmp)
        produce(fh)
        fault("written")
        fh.flush()
        os.fsync(fh.fileno())
    os.chmod(tmp, _file_mode())
    verify(tmp)
    return tmp, _sha256(tmp)


@contextlib.contextmanager
def _locked(directory: Path, names: tuple[str, ...]):
    """Exclusive lock on ``directory`` (created if missing), with stale temps of ``names``
    removed once it is held."""
    directory.mkdir(parents=True, exist_ok=True)
    fd = os.open(directory, os.O_RDONLY)
    try:
        locked = False
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)  # released when fd closes, also if the process dies
                locked = True
            except OSError as exc:  # NFS emulates flock with POSIX locks, which a read-only fd cannot take
                if exc.errno not in (errno.ENOLCK, errno.EBADF, errno.EINVAL, errno.EOPNOTSUPP):
                    raise
        for name in names if locked else ():  # unlocked, a temp may be a live writer's
            for stale in directory.glob(f".{glob.escape(name)}.*.tmp"):
                _unlink_quietly(stale)
        yield
    finally:
        os.close(fd)


def _file_mode() -> int:
    """The mode ``open()`` would give a new file; NamedTemporaryFile makes it 0600."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o644


def _fsync_dir(directory: Path) -> None:
    """Make the rename itself durable; some filesystems (and Windows) cannot fsync a directory."""
    if os.name == "nt":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)


def _sha256(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _unlink_quietly(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass


def _describe(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")
