"""converters.io.safe_pickle: data round-trips under every protocol; hostile pickles are refused
with a one-line ReaderError naming the file and the global, and their code never runs (a canary
file that each payload would create stays absent)."""
from __future__ import annotations

import builtins
import collections
import copyreg
import os
import pickle
import subprocess
from pathlib import Path

import numpy as np
import pytest

from converters.errors import ReaderError
from converters.io import safe_pickle

pytestmark = pytest.mark.timeout(60)
PROTOCOLS = range(pickle.HIGHEST_PROTOCOL + 1)


def data_object() -> dict:
    rng = np.random.default_rng(0)
    return {
        "w": rng.standard_normal((3, 4)).astype(np.float32),
        "fortran": np.asfortranarray(rng.standard_normal((2, 5))),
        "i64": np.array([-1, 2**40], dtype=np.int64),
        "f16": np.array([0.5, -2.0], dtype=np.float16),
        "empty": np.zeros((0, 3), dtype=np.int8),
        "scalar_arr": np.array(3.5, dtype=np.float64),
        "np_scalar": np.int32(-7),
        "ordered": collections.OrderedDict([("b", 1), ("a", [1.5, "x"])]),
        "containers": ({1, 2}, frozenset({"z"}), (None, True), b"raw\x00\xff", b"",
                       bytearray(b"ba"), 1 + 2j),
    }


def assert_same(got, want) -> None:
    assert type(got) is type(want)
    if isinstance(want, np.ndarray):
        assert got.dtype == want.dtype and got.shape == want.shape
        assert got.tobytes(order="A") == want.tobytes(order="A")
        assert got.flags.f_contiguous == want.flags.f_contiguous and got.flags.writeable
    elif isinstance(want, dict):
        assert list(got) == list(want)
        for key in want:
            assert_same(got[key], want[key])
    elif isinstance(want, (list, tuple)):
        assert len(got) == len(want)
        for a, b in zip(got, want):
            assert_same(a, b)
    else:
        assert got == want


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_round_trip_every_protocol(tmp_path, protocol):
    obj = data_object()
    path = tmp_path / "ok.pkl"
    path.write_bytes(pickle.dumps(obj, protocol=protocol))
    assert_same(safe_pickle.load(path), obj)


def test_python2_style_latin1_strings():
    # A Python-2 pickle stores array data as a str; with encoding="latin1" numpy takes it back.
    # Hand-written protocol-2 stream, as Python 2's cPickle writes it (str = SHORT_BINSTRING).
    arr = np.array([1.0, -2.0], dtype="<f4")
    raw = arr.tobytes()
    stream = (b"\x80\x02cnumpy.core.multiarray\n_reconstruct\nq\x00cnumpy\nndarray\nq\x01"
              b"K\x00\x85U\x01b\x87R(K\x01K\x02\x85cnumpy\ndtype\nU\x02f4K\x00K\x01\x87R"
              b"(K\x03U\x01<NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb\x89U"
              + bytes([len(raw)]) + raw + b"tb.")
    got = safe_pickle.loads(stream, "py2.pkl", encoding="latin1")
    assert got.dtype == arr.dtype and got.tobytes() == raw
    with pytest.raises(ReaderError, match="py2.pkl"):  # the default ASCII cannot decode it
        safe_pickle.loads(stream, "py2.pkl")


# --- hostile payloads ---------------------------------------------------------------------------

class _Reduce:
    """Pickles as ``func(*args)``: the classic code-execution gadget."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def _payloads(canary: Path) -> dict[str, object]:
    touch = f"touch {canary}"
    write = f"open({str(canary)!r}, 'w').write('x')"
    return {
        "os.system": _Reduce(os.system, touch),
        "subprocess.call": _Reduce(subprocess.call, ["touch", str(canary)]),
        "subprocess.Popen": _Reduce(subprocess.Popen, ["touch", str(canary)]),
        "eval": _Reduce(builtins.eval, write),
        "exec": _Reduce(builtins.exec, write),
        "getattr chain": _Reduce(builtins.getattr, _Reduce(builtins.__import__, "os"), "system"),
        # an admitted callable wrapping a forbidden one: refusal must happen at the inner global
        "nested in tuple": _Reduce(tuple, [_Reduce(os.system, touch)]),
        "nested in dict": {"w": np.zeros(2), "x": [_Reduce(builtins.eval, write)]},
        "numpy.load": _Reduce(np.load, str(canary)),
        "np.testing runner": _Reduce(np.testing.assert_equal, 1, 1),
    }


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_hostile_payloads_never_run(tmp_path, protocol):
    canary = tmp_path / "canary"
    for label, payload in _payloads(canary).items():
        path = tmp_path / f"evil_{protocol}.pkl"
        path.write_bytes(pickle.dumps(payload, protocol=protocol))
        with pytest.raises(ReaderError) as info:
            safe_pickle.load(path)
        msg = str(info.value)
        assert str(path) in msg and "\n" not in msg and "global" in msg, (label, msg)
        assert not canary.exists(), label
    # the gadget itself works: the test would notice if the payloads were harmless
    pickle.loads(pickle.dumps(_payloads(canary)["os.system"], protocol=protocol))
    assert canary.exists()


def test_refusal_names_the_global(tmp_path):
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps(_Reduce(os.system, "true"), protocol=2))
    with pytest.raises(ReaderError, match=r"global (posix|os|nt)\.system"):
        safe_pickle.load(path)


def test_extension_registry_goes_through_the_allow_list(tmp_path):
    canary = tmp_path / "canary"
    module = os.system.__module__  # posix
    copyreg.add_extension(module, "system", 0x7A31)  # registered while writing and reading
    try:
        data = pickle.dumps(_Reduce(os.system, f"touch {canary}"), protocol=2)
        assert data.startswith(b"\x80\x02\x83\x31\x7a")  # EXT2 opcode, no GLOBAL
        with pytest.raises(ReaderError, match=f"{module}.system"):
            safe_pickle.loads(data, "ext.pkl")
    finally:
        copyreg.remove_extension(module, "system", 0x7A31)
    assert not canary.exists()


@pytest.mark.parametrize("stream, fragment", [
    # ndarray called directly with a forged huge shape: an allocation the file chose
    (b"\x80\x02cnumpy\nndarray\n\x8a\x06\x00\x00\x00\x00\x00\x01\x85\x85R.", "not callable"),
    # _reconstruct with a huge placeholder shape and no state: nothing allocated, refused
    (b"\x80\x02cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n"
     b"\x8a\x06\x00\x00\x00\x00\x00\x01\x85C\x01b\x87R.", "never received its data"),
    # _reconstruct of something other than ndarray
    (b"\x80\x02cnumpy.core.multiarray\n_reconstruct\ncbuiltins\nlist\nK\x00\x85C\x01b\x87R.",
     "only numpy.ndarray"),
    # object dtype: the elements would be arbitrary objects
    (b"\x80\x02cnumpy\ndtype\nX\x01\x00\x00\x00O\x85R.", "object dtype"),
    # bytes(n): n zero bytes allocated
    (b"\x80\x02cbuiltins\nbytes\n\x8a\x05\x00\x00\x00\x00\x10\x85R.", "sized allocation"),
    # _codecs.encode with a codec other than latin1
    (b"\x80\x02c_codecs\nencode\nX\x01\x00\x00\x00aX\x05\x00\x00\x00rot13\x86R.", "latin1"),
    # NEWOBJ on the ndarray token
    (b"\x80\x02cnumpy\nndarray\n)\x81.", "NEWOBJ"),
    (b"\x80\x02X\x01\x00\x00\x00p\x94Q.", "persistent id"),  # BINPERSID
    (b"\x80\x04\x95", "not a valid"),  # truncated frame
    (b"", "not a valid"),
    (b"\x80\x02]q\x00(K\x01", "not a valid"),  # no STOP
])
def test_malformed_and_forged_streams(stream, fragment):
    with pytest.raises(ReaderError) as info:
        safe_pickle.loads(stream, "forged.pkl")
    msg = str(info.value)
    assert msg.startswith("forged.pkl: ") and "\n" not in msg and fragment in msg, msg


def _forged_dtype_array(flags: int, *, scalar: bool = False) -> bytes:
    """A pickled V8 array (or numpy scalar) whose dtype state claims ``flags``. numpy accepts such
    flags; 0x01 ("items are object pointers") over raw bytes would make numpy dereference them."""
    stream = pickle.dumps(np.float64(1.0) if scalar else np.zeros(2, dtype="V8"), protocol=2)
    assert stream.count(b"K\x00tq") == 1, stream  # the dtype state ends (..., flags=0)
    return stream.replace(b"K\x00tq", b"K" + bytes([flags]) + b"tq")


@pytest.mark.parametrize("flags", [0x01, 0x03, 0x3F])
@pytest.mark.parametrize("scalar", [False, True])
def test_dtype_with_forged_flags(flags, scalar):
    stream = _forged_dtype_array(flags, scalar=scalar)
    with pytest.raises(ReaderError, match="forged state|object dtype") as info:
        safe_pickle.loads(stream, "flags.pkl")
    assert "\n" not in str(info.value)
    safe_pickle.loads(_forged_dtype_array(0, scalar=scalar), "flags.pkl")  # unforged: loads


def test_shared_arrays_stay_shared():
    arr = np.arange(3.0)
    got = safe_pickle.loads(pickle.dumps({"a": arr, "b": [arr, (arr,)]}, protocol=4))
    assert got["a"] is got["b"][0] is got["b"][1][0]


def test_missing_file(tmp_path):
    with pytest.raises(ReaderError, match="cannot open"):
        safe_pickle.load(tmp_path / "absent.pkl")


def test_hashed_keys_are_counted_whatever_builds_the_container():
    """OrderedDict(iterable) takes any 2-item iterable as a pair: 2-element arrays give numpy-scalar
    keys, whose hashes an attacker chooses like ints'; they count against MAX_HASHED too."""
    def ordered_dict_of(pairs: list) -> bytes:  # OrderedDict(pairs) by REDUCE; protocol 5 arrays
        import pickletools                      # are real ndarrays while loading (_frombuffer)
        data = pickle.dumps(pairs, protocol=5)
        ops = list(pickletools.genops(data))
        ends = [pos for _, _, pos in ops[1:]] + [len(data)]
        body = b"".join(data[pos:end] for (op, _, pos), end in zip(ops, ends)
                        if op.name not in ("PROTO", "FRAME", "STOP"))
        return b"\x80\x05ccollections\nOrderedDict\n(" + body + b"tR."

    pairs = [np.array([float(i), 0.0]) for i in range(safe_pickle.MAX_HASHED + 1)]
    assert list(safe_pickle.loads(ordered_dict_of(pairs[:10])).values()) == [0.0] * 10
    with pytest.raises(ReaderError, match="more than 4096 dict keys"):
        safe_pickle.loads(ordered_dict_of(pairs), "pairs.pkl")
    ok = {f"k{i}": i for i in range(3 * safe_pickle.MAX_HASHED)}  # string keys: no limit
    assert safe_pickle.loads(pickle.dumps(ok, protocol=4)) == ok
