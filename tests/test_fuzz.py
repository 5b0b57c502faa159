"""Fuzzing every reader with hypothesis: mutations of valid seed files (bit flips, byte edits,
truncations, splices, deletions, insertions, and edits aimed at the seeds' size and count fields)
and structured generation (files built from random field values, random pickled data).

Per input: only zooport's typed errors (converters.errors) may escape; a SIGALRM after 5 s stops a
hang in Python code and faulthandler kills the process after 15 s if C code never returns; the
peak of traced allocations must stay within a bound set by the file's size (the readers check
declared sizes before allocating). Structured inputs that are valid must read back exactly.

CI runs ZOOPORT_FUZZ_EXAMPLES (default 300) inputs per format, derandomised; `make fuzz` runs
10,000 per format with fresh randomness and writes reports/fuzz.json (counts, time per format,
the slowest input, the largest allocation per input byte).
"""
from __future__ import annotations

import faulthandler
import hashlib
import json
import math
import os
import pickle
import signal
import struct
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from converters.errors import ZooportError
from converters.io import detectron_pkl, mxnet_params, safe_pickle
from converters.io import paddle as paddle_io
from tests import fuzz_seeds as fs

EXAMPLES = int(os.environ.get("ZOOPORT_FUZZ_EXAMPLES", "300"))
FULL = "ZOOPORT_FUZZ_EXAMPLES" in os.environ  # `make fuzz`: fresh randomness, a report
REPORT = os.environ.get("ZOOPORT_FUZZ_REPORT")
HANG_S = 5.0
# Allocation bound per input: the binary readers allocate at most the file's bytes again (one
# array at a time); a pickle builds Python objects, up to ~200 bytes per opcode byte (an empty set
# is 216 bytes), so pickle-based formats get that factor.
SLACK = 256 << 10
FACTOR = {"pickle": 256, "binary": 4}

pytestmark = [pytest.mark.timeout(3600, method="thread")]  # SIGALRM is the per-input watchdog

SETTINGS = settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=not FULL,
                    suppress_health_check=list(HealthCheck), print_blob=True)


# --- the targets --------------------------------------------------------------------------------

@dataclass
class Target:
    name: str
    kind: str  # "pickle" or "binary": which allocation factor applies
    seeds: Callable[[], list[fs.Seed]]
    place: Callable[[Path, bytes], Path]  # write the input where the reader expects it
    read: Callable[[Path], object]


def _as(name: str):
    def place(tmp: Path, data: bytes) -> Path:
        (tmp / name).write_bytes(data)
        return tmp / name
    return place


def _inference(which: str):
    """The mutated file with a valid partner (.pdmodel with .pdiparams or the reverse)."""
    def place(tmp: Path, data: bytes) -> Path:
        other = "pdiparams" if which == "pdmodel" else "pdmodel"
        partner = fs.pdiparams_seed() if other == "pdiparams" else fs.pdmodel_seed()
        (tmp / f"inference.{which}").write_bytes(data)
        partner_path = tmp / f"inference.{other}"
        if not partner_path.exists():
            partner_path.write_bytes(partner.data)
        return tmp / "inference"
    return place


def _fluid_dir(tmp: Path, data: bytes) -> Path:
    root = tmp / "fluid"
    root.mkdir(exist_ok=True)
    (root / "conv2d_0.w_0").write_bytes(data)
    return root


TARGETS = {t.name: t for t in [
    Target("params", "binary", lambda: [fs.params_seed()], _as("model.params"),
           lambda p: mxnet_params.read_checkpoint(p)[0]),
    Target("pdparams", "pickle", lambda: [fs.pdparams_seed(p) for p in (2, 3, 4)],
           _as("model.pdparams"), paddle_io.read_checkpoint),
    Target("pdmodel", "binary", lambda: [fs.pdmodel_seed()], _inference("pdmodel"),
           paddle_io.read_inference_path),
    Target("pdiparams", "binary", lambda: [fs.pdiparams_seed()], _inference("pdiparams"),
           paddle_io.read_inference_path),
    Target("fluid", "binary", lambda: [fs.fluid_var_seed()], _fluid_dir, paddle_io.read_fluid_dir),
    Target("pkl", "pickle", lambda: [fs.pkl_py2_seed(), fs.pkl_seed(2), fs.pkl_seed(4)],
           _as("model_final.pkl"), detectron_pkl.read_pkl),
    Target("pdiparams.info", "pickle", lambda: [fs.info_seed()], _as("inference.pdiparams.info"),
           paddle_io.read_params_info),
]}


# --- one input ----------------------------------------------------------------------------------

class Hang(Exception):
    pass


def _alarm(signum, frame):
    raise Hang(f"no result after {HANG_S} s")


@dataclass
class Stats:
    inputs: int = 0
    typed_errors: int = 0
    seconds: float = 0.0
    slowest_s: float = 0.0
    slowest: bytes = b""
    peak_bytes: int = 0  # largest traced peak of one input
    peak_over_size: float = 0.0  # largest peak / max(input bytes, 4 KiB)
    errors: dict[str, int] = field(default_factory=dict)


STATS: dict[str, Stats] = {}


def run_one(target: Target, data: bytes, tmp: Path) -> object | None:
    """Read ``data`` as ``target``: the value, or None after a typed error. Anything else raises."""
    stats = STATS.setdefault(target.name, Stats())
    value, typed, elapsed, peak = _read(target, data, tmp, stats)
    limit = SLACK + FACTOR[target.kind] * len(data)
    if peak > limit:  # once more: a first use can import a module (numpy's dtype printing: 1.9 MB)
        peak = min(peak, _read(target, data, tmp, Stats())[3])
    stats.inputs += 1
    stats.typed_errors += typed
    stats.seconds += elapsed
    if elapsed > stats.slowest_s:
        stats.slowest_s, stats.slowest = elapsed, data
    stats.peak_bytes = max(stats.peak_bytes, peak)
    stats.peak_over_size = max(stats.peak_over_size, peak / max(len(data), 4096))
    assert peak <= limit, f"{target.name}: {peak} bytes traced for a {len(data)}-byte input"
    assert elapsed <= HANG_S, f"{target.name}: {elapsed:.1f} s for one input"
    return None if typed else value


def _read(target: Target, data: bytes, tmp: Path, stats: Stats) -> tuple[object, bool, float, int]:
    path = target.place(tmp, data)
    previous = signal.signal(signal.SIGALRM, _alarm)
    faulthandler.dump_traceback_later(3 * HANG_S, exit=True)  # C code that never returns
    tracemalloc.start()
    t0 = time.perf_counter()
    value, typed = None, False
    try:
        signal.setitimer(signal.ITIMER_REAL, HANG_S)
        try:
            value = target.read(path)
        except ZooportError as exc:
            typed = True
            key = str(exc).split(": ", 1)[-1].split(" (")[0][:60]
            stats.errors[key] = stats.errors.get(key, 0) + 1
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
    finally:
        elapsed = time.perf_counter() - t0
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        faulthandler.cancel_dump_traceback_later()
        signal.signal(signal.SIGALRM, previous)
    return value, typed, elapsed, peak


# --- mutations ----------------------------------------------------------------------------------

INTERESTING = [0, 1, 2, 3, 7, 8, 0x7F, 0x80, 0xFF, 0x100, 0x7FFF, 0x8000, 0xFFFF, 2**31 - 1, 2**31,
               2**32 - 1, 2**32, 2**40, 2**48, 2**62, 2**63 - 1, 2**63, 2**64 - 1]


@st.composite
def mutated(draw, seeds: list[fs.Seed]) -> bytes:
    seed = draw(st.sampled_from(seeds))
    data = bytearray(seed.data)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "byte", "truncate", "splice", "delete", "insert",
                                   "field", "field", "field", "repeat"]))
        n = len(data)
        if op == "flip" and n:
            pos = draw(st.integers(0, n - 1))
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "byte" and n:
            pos = draw(st.integers(0, n - 1))
            data[pos] = draw(st.sampled_from([0, 1, 0x7F, 0x80, 0xFF]) | st.integers(0, 255))
        elif op == "truncate":
            del data[draw(st.integers(0, n)):]
        elif op == "splice":  # a chunk of any seed over or into this one
            donor = draw(st.sampled_from(seeds)).data
            start = draw(st.integers(0, len(donor) - 1))
            chunk = donor[start:start + draw(st.integers(1, 64))]
            pos = draw(st.integers(0, n))
            end = pos + (len(chunk) if draw(st.booleans()) else 0)
            data[pos:end] = chunk
        elif op == "delete" and n:
            pos = draw(st.integers(0, n - 1))
            del data[pos:pos + draw(st.integers(1, 32))]
        elif op == "insert":
            pos = draw(st.integers(0, n))
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        elif op == "repeat" and n:
            pos = draw(st.integers(0, n - 1))
            chunk = data[pos:pos + draw(st.integers(1, 32))]
            data[pos:pos] = chunk * draw(st.integers(1, 64))
        elif op == "field" and seed.fields:
            off, width, kind = draw(st.sampled_from(seed.fields))
            if off + width > len(data):
                continue
            old = int.from_bytes(data[off:off + width], "little")
            value = draw(st.sampled_from(INTERESTING + [n, n + 1, old + 1, max(old - 1, 0), old * 2])
                         | st.integers(0, 2**64 - 1))
            if kind == "le":
                data[off:off + width] = (value % (1 << 8 * width)).to_bytes(width, "little")
            else:
                data[off:off + width] = fs.varint(value)
    return bytes(data)


def test_seeds_read_back(tmp_path):
    """Every seed is a valid file of its format (else the mutations would start from garbage)."""
    for target in TARGETS.values():
        for i, seed in enumerate(target.seeds()):
            work = tmp_path / f"{target.name}{i}"
            work.mkdir()
            assert run_one(target, seed.data, work) is not None, target.name


@pytest.mark.parametrize("name", list(TARGETS))
def test_mutated_inputs(name, tmp_path):
    target = TARGETS[name]
    seeds = target.seeds()
    work = tmp_path / "work"
    work.mkdir()
    before = STATS.get(name, Stats()).inputs

    @SETTINGS
    @given(mutated(seeds))
    def check(data: bytes) -> None:
        run_one(target, data, work)

    check()
    assert STATS[name].inputs - before >= EXAMPLES


# --- structured generation: MXNet records from random field values -----------------------------

@st.composite
def mx_records(draw):
    """(file bytes, the arrays when every field is consistent, else None)."""
    valid = True
    records, arrays = [], {}
    count = draw(st.integers(0, 4))
    for i in range(count):
        magic = draw(st.sampled_from([mxnet_params.V1_MAGIC, mxnet_params.V2_MAGIC,
                                      mxnet_params.V3_MAGIC, None, 0xDEADBEEF]))
        shape = draw(st.lists(st.integers(0, 5), max_size=4))
        if draw(st.integers(0, 9)) == 0:  # an absurd dimension or rank
            shape = draw(st.lists(st.sampled_from([-1, 2**31, 2**40, 2**62, 2**63 - 1]), min_size=1,
                                  max_size=3))
        dtype = draw(st.sampled_from(sorted(fs.MX_FLAGS, key=str)))
        flag = fs.MX_FLAGS[dtype] if draw(st.integers(0, 9)) else draw(st.integers(-3, 40))
        n = math.prod(shape) * dtype.itemsize if all(0 <= d < 2**31 for d in shape) else 0
        raw = draw(st.binary(min_size=n, max_size=n)) if n <= 1 << 12 else b""
        if draw(st.integers(0, 9)) == 0:
            raw = raw[: draw(st.integers(0, len(raw)))]
        ok = (magic != 0xDEADBEEF and flag == fs.MX_FLAGS[dtype] and n <= 1 << 12
              and len(raw) == n and all(0 <= d < 2**31 for d in shape)
              and (len(shape) > 0 or magic == mxnet_params.V3_MAGIC))
        valid &= ok
        head = _mx_head(magic, shape, draw(st.sampled_from([0, 0, 0, 1, 2, -1])) if magic in (
            mxnet_params.V2_MAGIC, mxnet_params.V3_MAGIC) else 0)
        records.append(head + struct.pack("<iii", 1, 0, flag) + raw)
        if ok:
            arrays[f"p{i}"] = np.frombuffer(raw, dtype).reshape(shape)
    names = [f"p{i}".encode() for i in range(count)]
    if draw(st.integers(0, 9)) == 0:
        names = draw(st.lists(st.binary(max_size=8), max_size=5))
        valid = False
    data = struct.pack("<QQQ", 0x112, 0, count) + b"".join(records) + struct.pack("<Q", len(names))
    data += b"".join(struct.pack("<Q", len(n)) + n for n in names)
    return data, (arrays if valid and not _bad_stype(records) else None)


def _mx_head(magic, shape, stype) -> bytes:
    if magic is None:
        return struct.pack(f"<I{len(shape)}I", len(shape), *[d % 2**32 for d in shape])
    head = struct.pack("<I", magic)
    if magic in (mxnet_params.V2_MAGIC, mxnet_params.V3_MAGIC):
        head += struct.pack("<i", stype)
    return head + struct.pack(f"<i{len(shape)}q", len(shape), *[max(min(d, 2**63 - 1), -2**63) for d in shape])


def _bad_stype(records: list[bytes]) -> bool:
    return any(r[:4] in (struct.pack("<I", mxnet_params.V2_MAGIC), struct.pack("<I", mxnet_params.V3_MAGIC))
               and r[4:8] != b"\0\0\0\0" for r in records)


def _same(got: dict, want: dict) -> None:
    assert list(got) == list(want)
    for k, v in want.items():
        assert got[k].dtype == v.dtype and got[k].shape == v.shape and got[k].tobytes() == v.tobytes(), k


def _reads_back(target: Target, files, tmp_path: Path) -> None:
    """Generated (bytes, the tensors when every field is consistent, else None): a consistent
    file reads back exactly, any other gives a typed error or a value."""
    @SETTINGS
    @given(files)
    def check(case) -> None:
        data, want = case
        got = run_one(target, data, tmp_path)
        if want is not None:
            assert got is not None, "a consistent file was refused"
            _same(got, want)

    check()


def test_structured_params(tmp_path):
    _reads_back(TARGETS["params"], mx_records(), tmp_path)


# --- structured generation: Paddle tensor records -----------------------------------------------

@st.composite
def pd_record(draw):
    """(a fluid variable file, {its name: the array} when consistent, else None)."""
    dtype = draw(st.sampled_from(sorted(fs.PD_CODES, key=str)))
    shape = draw(st.lists(st.integers(0, 5), max_size=4))
    code = fs.PD_CODES[dtype]
    valid = True
    if draw(st.integers(0, 7)) == 0:
        shape = draw(st.lists(st.sampled_from([-1, 2**31, 2**40, 2**62, 2**63 - 1, -2**63]), min_size=1,
                              max_size=3))
        valid = False
    if draw(st.integers(0, 9)) == 0:
        code = draw(st.integers(-1, 60))
        valid &= code == fs.PD_CODES[dtype]
    n = math.prod(shape) * dtype.itemsize if valid else draw(st.integers(0, 64))
    raw = draw(st.binary(min_size=n, max_size=n))
    lod = draw(st.lists(st.lists(st.integers(0, 2**64 - 1), max_size=3), max_size=2))
    versions = (0, 0)
    if draw(st.integers(0, 19)) == 0:
        versions = (draw(st.integers(0, 2**32 - 1)), draw(st.integers(0, 2**32 - 1)))
        valid &= versions == (0, 0)
    desc = fs.pb_field(1, code) + b"".join(fs.pb_field(2, d) for d in shape)
    out = struct.pack("<IQ", versions[0], len(lod))
    out += b"".join(struct.pack("<Q", 8 * len(lv)) + struct.pack(f"<{len(lv)}Q", *lv) for lv in lod)
    out += struct.pack("<Ii", versions[1], len(desc)) + desc + raw
    return out, ({"conv2d_0.w_0": np.frombuffer(raw, dtype).reshape(shape)} if valid else None)


def test_structured_fluid_records(tmp_path):
    _reads_back(TARGETS["fluid"], pd_record(), tmp_path)


# --- structured generation: programs ------------------------------------------------------------

@st.composite
def protobuf(draw, depth: int = 0):
    """Random protobuf wire data: any field numbers, valid wire encodings, nested messages."""
    parts = []
    for _ in range(draw(st.integers(0, 6))):
        num = draw(st.integers(1, 20))
        wire = draw(st.sampled_from([0, 1, 2, 5] if depth < 4 else [0, 1, 5]))
        if wire == 0:
            parts.append(fs.varint(num << 3) + fs.varint(draw(st.integers(0, 2**64 - 1))))
        elif wire in (1, 5):
            parts.append(fs.varint(num << 3 | wire) + draw(st.binary(min_size=8 if wire == 1 else 4,
                                                                      max_size=8 if wire == 1 else 4)))
        else:
            body = draw(protobuf(depth + 1) | st.binary(max_size=12) | st.text(max_size=8).map(str.encode))
            parts.append(fs.varint(num << 3 | 2) + fs.varint(len(body)) + body)
    return b"".join(parts)


@st.composite
def programs(draw):
    """A program of random variables (names, dtypes, dims incl. -1) and ops with random attrs."""
    names = draw(st.lists(st.text(st.characters(min_codepoint=33, max_codepoint=0x2FF), min_size=1,
                                  max_size=6), min_size=1, max_size=5, unique=True))
    block = fs.pb_field(1, 0) + fs.pb_field(2, -1)
    declared = {}
    for name in names:
        dims = draw(st.lists(st.integers(-1, 2**40), max_size=4))
        code = draw(st.sampled_from(list(fs.PD_CODES.values())))
        desc = fs.pb_field(1, code) + b"".join(fs.pb_field(2, d) for d in dims)
        vtype = fs.pb_field(1, 7) + fs.pb_field(3, fs.pb_field(1, desc))
        persistable = draw(st.booleans())
        block += fs.pb_field(3, fs.pb_field(1, name) + fs.pb_field(2, vtype) + fs.pb_field(3, int(persistable)))
        declared[name] = (tuple(dims), persistable)
    attrs = draw(st.dictionaries(st.text(min_size=1, max_size=5),
                                 st.integers(-2**62, 2**62) | st.text(max_size=5) | st.booleans()
                                 | st.lists(st.integers(0, 2**40), max_size=4), max_size=4))
    block += fs.pb_field(4, fs.op_desc(draw(st.text(min_size=1, max_size=8)), {"X": names[:1]},
                                       {"Out": names[-1:]}, attrs))
    return fs.pb_field(1, block), declared


def test_structured_programs(tmp_path):
    path = tmp_path / "model.pdmodel"

    @SETTINGS
    @given(programs(), protobuf())
    def check(program, noise) -> None:
        data, declared = program
        path.write_bytes(data)
        prog = paddle_io.read_program(path)
        assert {n: (v.shape, v.persistable) for n, v in prog.vars.items()} == declared
        assert prog.saved_names() == sorted((n for n, (_, p) in declared.items() if p),
                                            key=lambda n: n.encode())
        path.write_bytes(noise)  # random wire data: a program, or a typed error
        stats_target = Target("pdmodel-noise", "binary", list, _as("model.pdmodel"), paddle_io.read_program)
        run_one(stats_target, noise, tmp_path)

    check()


# --- structured generation: pickles -------------------------------------------------------------

_DTYPES = ["<f4", "<f8", "<f2", "<i8", "<i4", "i1", "u1", "?", "<c8", ">f4", "<u2"]
arrays = st.builds(
    lambda dt, shape, seed, fortran: _array(dt, shape, seed, fortran),
    st.sampled_from(_DTYPES), st.lists(st.integers(0, 4), max_size=3), st.integers(0, 2**16), st.booleans())


def _array(dt: str, shape: list[int], seed: int, fortran: bool) -> np.ndarray:
    raw = np.random.default_rng(seed).integers(0, 256, size=math.prod(shape) * np.dtype(dt).itemsize,
                                                dtype=np.uint8).tobytes()
    arr = np.frombuffer(raw, dt).reshape(shape).copy()
    return np.asfortranarray(arr) if fortran else arr


plain = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False)
    | st.text(max_size=8) | st.binary(max_size=8) | arrays,
    lambda inner: st.lists(inner, max_size=4) | st.tuples(inner, inner)
    | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    | st.frozensets(st.integers(-5, 5), max_size=3),
    max_leaves=12)


def _equal(a, b) -> bool:
    if isinstance(a, np.ndarray):
        return (isinstance(b, np.ndarray) and a.dtype == b.dtype and a.shape == b.shape
                and a.tobytes(order="A") == b.tobytes(order="A"))
    if isinstance(a, dict):
        return isinstance(b, dict) and list(a) == list(b) and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def test_structured_pickles_round_trip():
    """Plain data pickled under any protocol reads back identical through the restricted reader."""
    @SETTINGS
    @given(plain, st.integers(0, pickle.HIGHEST_PROTOCOL))
    def check(obj, protocol) -> None:
        got = safe_pickle.loads(pickle.dumps(obj, protocol=protocol), "gen.pkl", encoding="latin1")
        assert _equal(obj, got)

    check()


_OPCODES = [op for op in __import__("pickletools").opcodes]


@st.composite
def opcode_streams(draw):
    """Random opcode sequences with well-formed arguments (any semantics)."""
    out = bytearray(b"\x80" + bytes([draw(st.integers(0, 5))]))
    for _ in range(draw(st.integers(0, 30))):
        op = draw(st.sampled_from(_OPCODES))
        out += op.code.encode("latin1")
        arg = op.arg
        if arg is None:
            continue
        if arg.n > 0:
            out += draw(st.binary(min_size=arg.n, max_size=arg.n))
        elif arg.n == -1:  # up to a newline
            text = draw(st.sampled_from([b"0", b"1", b"-7", b"3.5", b"'x'", b"os", b"numpy", b"system",
                                         b"builtins", b"_reconstruct", b"L", b"99999999999"]))
            out += text + b"\n"
            if op.name in ("GLOBAL", "INST"):
                out += draw(st.sampled_from([b"system", b"ndarray", b"dtype", b"OrderedDict", b"list"])) + b"\n"
        else:  # counted: 1, 4 (signed), 4, 8 byte length then the bytes
            width = {-2: 1, -3: 4, -4: 4, -5: 8}[arg.n]
            body = draw(st.binary(max_size=12))
            length = len(body) if draw(st.integers(0, 5)) else draw(st.sampled_from(INTERESTING))
            out += (length % (1 << 8 * width)).to_bytes(width, "little") + body
    if draw(st.booleans()):
        out += b"."
    return bytes(out)


def test_structured_opcode_streams(tmp_path):
    target = TARGETS["pkl"]

    @SETTINGS
    @given(opcode_streams())
    def check(data) -> None:
        run_one(target, data, tmp_path)

    check()


# --- the report ---------------------------------------------------------------------------------

@pytest.fixture(scope="module", autouse=True)
def report():
    yield
    rows = {}
    for name, s in sorted(STATS.items()):
        rows[name] = {"inputs": s.inputs, "typed_errors": s.typed_errors, "seconds": round(s.seconds, 2),
                      "ms_per_input": round(1e3 * s.seconds / max(s.inputs, 1), 3),
                      "slowest_ms": round(1e3 * s.slowest_s, 2), "slowest_bytes": len(s.slowest),
                      "slowest_sha256": hashlib.sha256(s.slowest).hexdigest(),
                      "max_traced_peak_bytes": s.peak_bytes,
                      "max_peak_over_input_size": round(s.peak_over_size, 2),
                      "top_errors": dict(sorted(s.errors.items(), key=lambda kv: -kv[1])[:8])}
    print("\nfuzz: format, inputs, typed errors, seconds, slowest ms, max traced peak KiB, "
          "max peak / max(size, 4 KiB)")
    for name, r in rows.items():
        print(f"  {name:16s} {r['inputs']:7d} {r['typed_errors']:7d} {r['seconds']:8.1f} "
              f"{r['slowest_ms']:8.1f} {r['max_traced_peak_bytes'] / 1024:8.1f} "
              f"{r['max_peak_over_input_size']:6.2f}")
    if REPORT and rows:
        out = Path(REPORT)
        out.parent.mkdir(parents=True, exist_ok=True)
        for name, s in STATS.items():  # the slowest input of each format, for replay
            (out.parent / f"fuzz-slowest-{name}.bin").write_bytes(s.slowest)
        out.write_text(json.dumps({"examples_per_test": EXAMPLES, "hang_limit_s": HANG_S,
                                   "formats": rows}, indent=2) + "\n")


# --- declared sizes far beyond the file ---------------------------------------------------------

def _pth(numel: int, size: tuple[int, ...], record: bytes) -> bytes:
    """A torch zip .pth of one float tensor whose storage declares ``numel`` elements."""
    import collections
    import io
    import zipfile

    import torch

    class Reduce:
        def __reduce__(self):
            stride = tuple(math.prod(size[i + 1:]) for i in range(len(size)))  # C order
            return torch._utils._rebuild_tensor_v2, (STORE, 0, size, stride, False, collections.OrderedDict())

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            return ("storage", torch.FloatStorage, "0", "cpu", numel) if obj is STORE else None

    STORE = object()
    buf = io.BytesIO()
    Pickler(buf, protocol=2).dump({"state_dict": {"w": Reduce()}, "metadata": {"model": "m"}})
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as zf:
        for name, body in (("archive/data.pkl", buf.getvalue()), ("archive/byteorder", b"little"),
                           ("archive/data/0", record), ("archive/version", b"3\n")):
            zf.writestr(name, body)
    return out.getvalue()


def _program_with(field: bytes) -> bytes:
    return fs.pb_field(1, fs.pb_field(1, 0) + field)


def _record(dims: list[int], *, lod_bytes: int | None = None, desc_len: int | None = None) -> bytes:
    desc = fs.pb_field(1, 5) + b"".join(fs.pb_field(2, d) for d in dims)
    lod = b"" if lod_bytes is None else struct.pack("<Q", lod_bytes)
    return (struct.pack("<IQ", 0, 0 if lod_bytes is None else 1) + lod
            + struct.pack("<Ii", 0, len(desc) if desc_len is None else desc_len) + desc + b"\0" * 16)


HUGE = [  # (label, format, file bytes, fragment of the expected error)
    ("params: array count 2**60", "params",
     struct.pack("<QQQ", 0x112, 0, 2**60) + b"\0" * 64, "declares 1152921504606846976 arrays"),
    ("params: name length 2**63", "params", fs.mx_file({"w": (np.ones(2, np.float32), mxnet_params.V2_MAGIC)})
     .data[:-9] + struct.pack("<Q", 2**63) + b"w", "name length"),
    ("fluid: dims [2**40]", "fluid", _record([2**40]), "needs 4398046511104 data bytes"),
    ("fluid: dims [0, 2**62, 2**62]", "fluid", _record([0, 2**62, 2**62]), "too large to represent"),
    ("fluid: LoD level of 2**60 bytes", "fluid", _record([4], lod_bytes=2**60), "LoD offsets needs"),
    ("fluid: TensorDesc of 2**31-1 bytes", "fluid", _record([4], desc_len=2**31 - 1), "TensorDesc length"),
    ("pdmodel: a field of 2**40 bytes", "pdmodel", _program_with(b"\x1a" + fs.varint(2**40) + b"x"),
     "declares 1099511627776 bytes"),
    ("pdmodel: packed dims of 2**40 bytes", "pdmodel",
     _program_with(fs.pb_field(3, fs.pb_field(1, "w") + fs.pb_field(2, fs.pb_field(1, 7) + b"\x1a"
                                                                    + fs.varint(2**40)))), "declares"),
    ("pdparams: BINBYTES8 of 16 GiB", "pdparams", b"\x80\x04\x8e" + struct.pack("<Q", 1 << 34) + b"xx.",
     "truncated"),
    ("pdparams: memo slot 2**31-1", "pdparams", b"\x80\x02}r" + struct.pack("<I", 2**31 - 1)
     + b"X\x01\x00\x00\x00wj\xff\xff\xff\x7fs.", "value is a dict"),  # harmless once the memo is a dict
    ("pdparams: ndarray shape 2**40", "pdparams", b"\x80\x02}X\x01\x00\x00\x00w"
     + __import__("tests.hostile_pickles", fromlist=["_array_stream"])._array_stream((1 << 40,), b"\0" * 4)[2:-1]
     + b"s.", "does not fit shape"),
    ("pth: storage of 2**40 floats over 4 bytes", "pth", _pth(2**40, (2**40,), b"\0" * 4),
     "declares 1099511627776 elements"),
    ("pth: tensor (2**40,) on a 1-float storage", "pth", _pth(1, (2**40,), b"\0" * 4), "runs past its storage"),
]


def _read_pth(path: Path):
    from converters.io.writer import read_weights
    return read_weights(path)


def test_declared_sizes_fail_before_allocating(tmp_path):
    """Files declaring terabytes: a typed error naming the problem, with < 1 MiB traced and no
    resident-set growth (what tracemalloc cannot see, a C allocation, would show there)."""
    import resource
    ok = _pth(6, (2, 3), np.arange(6, dtype=np.float32).tobytes())  # the crafted .pth is well-formed
    (tmp_path / "ok.pth").write_bytes(ok)
    assert _read_pth(tmp_path / "ok.pth")[0]["w"].tolist() == [[0, 1, 2], [3, 4, 5]]
    readers = {"pth": Target("pth", "binary", list, _as("model.pth"), _read_pth), **TARGETS}
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for label, fmt, data, fragment in HUGE:
        target = readers[fmt]
        path = target.place(tmp_path, data)
        tracemalloc.start()
        with pytest.raises(ZooportError, match=fragment.replace("*", r"\*")) as info:
            target.read(path)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert "\n" not in str(info.value), label
        assert peak < 1 << 20, (label, peak)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0 < 64 << 10  # KiB: < 64 MiB
