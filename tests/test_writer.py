"""Tests of the atomic, verified output writer."""
from __future__ import annotations

import errno
import hashlib
import json
import multiprocessing as mp
import os
from pathlib import Path

import pytest
import torch

from converters.errors import OutputError, ReaderError
from converters.io import writer
from converters.io.writer import read_weights, write_json, write_weights

FORMATS = ["safetensors", "pth"]
META = {"source": "gluon", "model": "resnet18_v1", "zooport": "0.1.0", "note": "a\nb \"q\" ünï"}


def _state_dict() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "conv.weight": torch.randn(4, 3, 3, 3, generator=g),
        "conv.bias": torch.randn(4, generator=g).half(),
        "bn.num_batches_tracked": torch.tensor(7, dtype=torch.int64),
        "ids": torch.arange(-5, 5, dtype=torch.int64),
        "bf": torch.randn(3, generator=g).to(torch.bfloat16),
        "mask": torch.tensor([True, False, True]),
        "empty": torch.zeros(0, 3),
        "nan": torch.tensor([float("nan"), -0.0, float("inf")]),
    }


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert list(sorted(a)) == list(sorted(b))
    for k in a:
        assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape, k
        assert torch.equal(a[k].reshape(-1).view(torch.uint8), b[k].reshape(-1).view(torch.uint8)), k


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


@pytest.mark.parametrize("fmt", FORMATS)
def test_round_trip(tmp_path: Path, fmt: str) -> None:
    sd = _state_dict()
    target = tmp_path / f"w.{fmt}"
    digest = write_weights(target, sd, META, fmt=fmt)
    assert digest == _sha(target)
    got, meta = read_weights(target)
    _assert_same(sd, got)
    assert meta == META
    assert got["conv.bias"].dtype == torch.float16 and got["ids"].dtype == torch.int64
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("fmt", FORMATS)
def test_byte_identical_regardless_of_name_and_metadata_order(tmp_path: Path, fmt: str) -> None:
    # Many keys: safetensors keeps metadata in a HashMap whose order changes between calls.
    meta = {f"key{i:02d}": f"value {i}" for i in range(40)}
    a = write_weights(tmp_path / f"a.{fmt}", _state_dict(), meta, fmt=fmt)
    b = write_weights(tmp_path / f"other_name.{fmt}", _state_dict(), dict(reversed(meta.items())), fmt=fmt)
    assert a == b
    assert (tmp_path / f"a.{fmt}").read_bytes() == (tmp_path / f"other_name.{fmt}").read_bytes()


@pytest.mark.parametrize("fmt", FORMATS)
def test_shared_storage_and_noncontiguous(tmp_path: Path, fmt: str) -> None:
    big = torch.arange(1_000_000, dtype=torch.float32)
    w = torch.randn(5, 6)
    sd = {"tied.a": w, "tied.b": w, "slice": big[10:20], "view": big.view(1000, 1000)[:2],
          "t": w.t(), "param": torch.nn.Parameter(torch.ones(2))}
    target = tmp_path / f"s.{fmt}"
    write_weights(target, sd, {}, fmt=fmt)
    got, meta = read_weights(target)
    _assert_same({k: v.detach().contiguous() for k, v in sd.items()}, got)
    assert meta == {}
    assert target.stat().st_size < 100_000  # the 4 MB storage behind the slices was not written


@pytest.mark.parametrize("fmt", FORMATS)
def test_reload_mismatch_is_caught(tmp_path: Path, fmt: str, monkeypatch: pytest.MonkeyPatch) -> None:
    def corrupted(path: Path):
        sd, meta = read_weights(path)
        sd["conv.weight"] = sd["conv.weight"].clone()
        sd["conv.weight"].view(-1)[0] += 1
        return sd, meta

    monkeypatch.setattr(writer, "_reload", corrupted)
    target = tmp_path / f"w.{fmt}"
    with pytest.raises(OutputError, match="conv.weight") as info:
        write_weights(target, _state_dict(), META, fmt=fmt)
    assert str(target) in str(info.value) and "\n" not in str(info.value)
    assert not target.exists() and _leftovers(tmp_path) == []


def test_metadata_mismatch_is_caught(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(writer, "_reload", lambda p: (read_weights(p)[0], {"other": "x"}))
    with pytest.raises(OutputError, match="metadata"):
        write_weights(tmp_path / "w.safetensors", _state_dict(), META)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("fmt", FORMATS)
def test_existing_target_survives_failed_write(tmp_path: Path, fmt: str,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / f"w.{fmt}"
    write_weights(target, {"old": torch.ones(3)}, {"v": "old"}, fmt=fmt)
    before = target.read_bytes()
    monkeypatch.setattr(writer, "_reload", lambda p: ({"old": torch.zeros(3)}, {}))
    with pytest.raises(OutputError):
        write_weights(target, {"old": torch.ones(3)}, {"v": "new"}, fmt=fmt)
    assert target.read_bytes() == before
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("fmt", FORMATS)
def test_keyboard_interrupt_leaves_no_temp(tmp_path: Path, fmt: str, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / f"w.{fmt}"
    target.write_bytes(b"previous")

    def interrupted(fh, *args) -> None:
        fh.write(b"half a file")
        raise KeyboardInterrupt

    monkeypatch.setattr(writer, "_serialize", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_weights(target, _state_dict(), META, fmt=fmt)
    assert target.read_bytes() == b"previous"
    assert _leftovers(tmp_path) == []


def test_disk_full_is_output_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def full(fh, *args) -> None:
        fh.write(b"x")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(writer, "_serialize", full)
    target = tmp_path / "w.safetensors"
    with pytest.raises(OutputError) as info:
        write_weights(target, _state_dict(), META)
    msg = str(info.value)
    assert str(target) in msg and os.strerror(errno.ENOSPC) in msg and "\n" not in msg
    assert isinstance(info.value.__cause__, OSError) and info.value.__cause__.errno == errno.ENOSPC
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root ignores directory permissions")
def test_unwritable_directory(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(OutputError) as info:
            write_weights(locked / "w.safetensors", _state_dict(), META)
        assert str(locked / "w.safetensors") in str(info.value) and "\n" not in str(info.value)
        with pytest.raises(OutputError):
            write_weights(locked / "sub" / "w.safetensors", _state_dict(), META)
    finally:
        locked.chmod(0o700)


def test_parent_is_a_file(tmp_path: Path) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("not a directory")
    for target in (blocker / "w.safetensors", blocker / "deeper" / "w.pth"):
        with pytest.raises(OutputError) as info:
            write_weights(target, _state_dict(), META, fmt=target.suffix.lstrip("."))
        assert str(target) in str(info.value) and "\n" not in str(info.value)
    assert blocker.read_text() == "not a directory"


def test_target_is_a_directory(tmp_path: Path) -> None:
    (tmp_path / "w.safetensors").mkdir()
    with pytest.raises(OutputError, match="w.safetensors"):
        write_weights(tmp_path / "w.safetensors", _state_dict(), META)
    assert _leftovers(tmp_path) == []


def test_creates_missing_parents(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "w.pth"
    write_weights(target, _state_dict(), META, fmt="pth")
    _assert_same(_state_dict(), read_weights(target)[0])


def test_file_mode_follows_umask(tmp_path: Path) -> None:
    old = os.umask(0o027)
    try:
        write_weights(tmp_path / "w.safetensors", _state_dict(), META)
        write_json(tmp_path / "r.json", {"a": 1})
    finally:
        os.umask(old)
    assert (tmp_path / "w.safetensors").stat().st_mode & 0o777 == 0o640
    assert (tmp_path / "r.json").stat().st_mode & 0o777 == 0o640


def test_programming_errors_are_not_output_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="format"):
        write_weights(tmp_path / "w.onnx", _state_dict(), META, fmt="onnx")
    with pytest.raises(TypeError, match="metadata"):
        write_weights(tmp_path / "w.safetensors", _state_dict(), {"epoch": 3})  # type: ignore[dict-item]
    with pytest.raises(TypeError, match="Tensor"):
        write_weights(tmp_path / "w.safetensors", {"w": [1.0]}, META)  # type: ignore[dict-item]
    assert list(tmp_path.iterdir()) == []


def test_read_weights_rejects_garbage(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"this is not a checkpoint at all")
    with pytest.raises(ReaderError, match="bad.pth"):
        read_weights(bad)
    plain = tmp_path / "plain.pth"
    torch.save({"w": torch.ones(1)}, plain)  # a bare state_dict, not written by zooport
    with pytest.raises(ReaderError, match="not a zooport"):
        read_weights(plain)


def test_write_json(tmp_path: Path) -> None:
    obj = {"b": [1, 2.5, None], "a": {"z": "ü", "y": True}}
    target = tmp_path / "report.json"
    digest = write_json(target, obj)
    text = target.read_text(encoding="utf-8")
    assert text == json.dumps(obj, sort_keys=True, indent=2) + "\n"
    assert text.index('"a"') < text.index('"b"') and text.endswith("}\n")
    assert digest == _sha(target) == write_json(tmp_path / "again.json", dict(reversed(obj.items())))
    assert _leftovers(tmp_path) == []


def test_write_json_failure_keeps_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "report.json"
    write_json(target, {"old": 1})
    before = target.read_bytes()
    with pytest.raises(TypeError):  # not serializable: a bug, raised before touching the disk
        write_json(target, {"x": object()})
    with pytest.raises(ValueError):  # NaN is not JSON
        write_json(target, {"x": float("nan")})

    def refuse(src, dst) -> None:
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))

    monkeypatch.setattr(writer.os, "replace", refuse)
    with pytest.raises(OutputError, match="report.json"):
        write_json(target, {"new": 2})
    assert target.read_bytes() == before
    assert _leftovers(tmp_path) == []


def _concurrent_writer(target: str, value: float, rounds: int, barrier) -> None:
    sd = {f"layer{i}.weight": torch.full((256, 256), value) for i in range(8)}
    barrier.wait()
    for _ in range(rounds):
        write_weights(Path(target), sd, {"writer": str(value)})


def test_concurrent_writers(tmp_path: Path) -> None:
    ctx = mp.get_context("spawn")
    target = tmp_path / "w.safetensors"
    barrier = ctx.Barrier(2)
    procs = [ctx.Process(target=_concurrent_writer, args=(str(target), v, 5, barrier)) for v in (1.0, 2.0)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=300)
    assert [p.exitcode for p in procs] == [0, 0]
    sd, meta = read_weights(target)
    value = float(meta["writer"])
    assert value in (1.0, 2.0) and len(sd) == 8
    assert all(torch.equal(t, torch.full((256, 256), value)) for t in sd.values())  # never a mix
    assert _leftovers(tmp_path) == []


def test_stale_temps_of_the_target_are_removed_once_locked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A temp left by a killed writer is removed by the next write of that name, other files kept;
    where the directory cannot be locked (NFS refuses flock on a read-only fd) nothing is removed,
    since a temp could then be a live writer's."""
    stale, other = tmp_path / ".w.safetensors.k3x9.tmp", tmp_path / ".x.safetensors.k3x9.tmp"
    for f in (stale, other):
        f.write_bytes(b"left by a SIGKILL")
    write_weights(tmp_path / "w.safetensors", _state_dict(), META)
    assert not stale.exists() and other.exists()
    stale.write_bytes(b"again")

    def no_lock(fd, op) -> None:
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(writer.fcntl, "flock", no_lock)
    write_weights(tmp_path / "w.safetensors", _state_dict(), META)
    assert stale.exists() and read_weights(tmp_path / "w.safetensors")[1] == META
