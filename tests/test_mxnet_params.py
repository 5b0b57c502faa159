"""converters.io.mxnet_params: byte-exact against mx.nd.load where mxnet is importable, and
ReaderError (never anything else) on every malformed file, built with a tiny writer below."""
from __future__ import annotations

import struct
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from converters.errors import ReaderError
from converters.io.mxnet_params import (BFLOAT16, V1_MAGIC, V2_MAGIC, V3_MAGIC, detect_layout,
                                        read_ndarray_file, read_params)

pytestmark = pytest.mark.timeout(120)

_FLAGS = {np.dtype("<f4"): 0, np.dtype("<f8"): 1, np.dtype("<f2"): 2, np.dtype("u1"): 3,
          np.dtype("<i4"): 4, np.dtype("i1"): 5, np.dtype("<i8"): 6, np.dtype("?"): 7,
          BFLOAT16: 12}


# --- a minimal writer of the container, independent of the reader -------------------------------

def enc_array(arr: np.ndarray, magic: int | None = V2_MAGIC, *, stype: int = 0,
              flag: int | None = None, dims: tuple[int, ...] | None = None) -> bytes:
    """One NDArray record. magic=None writes the pre-V1 layout (u32 ndim, u32 dims)."""
    dims = arr.shape if dims is None else dims
    if magic is None:
        head = struct.pack(f"<I{len(dims)}I", len(dims), *dims)
    else:
        head = struct.pack("<I", magic)
        if magic in (V2_MAGIC, V3_MAGIC):
            head += struct.pack("<i", stype)
        head += struct.pack(f"<i{len(dims)}q", len(dims), *dims)
    flag = _FLAGS[arr.dtype] if flag is None else flag
    return head + struct.pack("<iii", 1, 0, flag) + np.ascontiguousarray(arr).tobytes()


def enc_file(records: list[bytes], names: list[bytes | str], *, magic: int = 0x112) -> bytes:
    out = struct.pack("<QQQ", magic, 0, len(records)) + b"".join(records)
    out += struct.pack("<Q", len(names))
    for name in names:
        raw = name.encode() if isinstance(name, str) else name
        out += struct.pack("<Q", len(raw)) + raw
    return out


def small_file() -> bytes:
    return enc_file([enc_array(np.arange(6, dtype=np.float32).reshape(2, 3)),
                     enc_array(np.array([7, -8], dtype=np.int64))], ["w", "b"])


@pytest.fixture
def write(tmp_path):
    def _write(data: bytes, name: str = "model.params") -> Path:
        path = tmp_path / name
        path.write_bytes(data)
        return path
    return _write


def assert_exact(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> None:
    assert list(got) == list(want)
    for name, ref in want.items():
        arr = got[name]
        assert arr.dtype == ref.dtype and arr.shape == ref.shape, name
        assert arr.tobytes() == ref.tobytes(), name
        assert arr.flags.c_contiguous and arr.flags.owndata and arr.flags.writeable, name


def raises_reader(path: Path, fragment: str = "") -> ReaderError:
    with pytest.raises(ReaderError) as info:
        read_ndarray_file(path)
    err = info.value
    assert str(path) in str(err) and "offset" in str(err) and "\n" not in str(err)
    assert fragment in str(err)
    return err


# --- mxnet as the oracle -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def mx():
    pytest.importorskip("mxnet")
    from converters.frameworks import import_mxnet
    return import_mxnet()


def mx_load(mx, path: Path, np_shape: bool = False) -> dict[str, np.ndarray]:
    with mx.util.np_shape(np_shape):
        return {k: v.asnumpy() for k, v in mx.nd.load(str(path)).items()}


def build_block(mx):
    """conv + bn + dense, run once so every parameter (and BN's running stats) is materialised."""
    nn = mx.gluon.nn

    class Small(nn.HybridBlock):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2D(4, 3, in_channels=3)
            self.bn = nn.BatchNorm(in_channels=4)
            self.fc = nn.Dense(5, in_units=4)

        def hybrid_forward(self, F, x):
            return self.fc(F.mean(self.bn(self.conv(x)), axis=(2, 3)))

    mx.random.seed(0)
    net = Small()
    net.initialize(mx.init.Xavier())
    net.hybridize()
    with mx.autograd.record():  # training mode moves the BN running stats off 0/1
        net(mx.nd.random.uniform(shape=(2, 3, 8, 8)))
    return net


@pytest.fixture(scope="module")
def block_files(mx, tmp_path_factory):
    root = tmp_path_factory.mktemp("block")
    net = build_block(mx)
    net.save_parameters(str(root / "small.params"))
    net.export(str(root / "small"))
    return root / "small.params", root / "small-0000.params"


@pytest.mark.oracle
def test_gluon_save_parameters_matches_mx_load(mx, block_files):
    gluon, _ = block_files
    got = read_ndarray_file(gluon)
    assert_exact(got, mx_load(mx, gluon))
    assert "bn.running_var" in got and detect_layout(got) == "gluon"


@pytest.mark.oracle
def test_export_matches_mx_load(mx, block_files):
    _, export = block_files
    got = read_ndarray_file(export)
    assert_exact(got, mx_load(mx, export))
    assert "aux:batchnorm0_running_var" in got and detect_layout(got) == "export"


@pytest.mark.oracle
def test_read_params_strips_export_prefixes(mx, block_files):
    gluon, export = block_files
    stripped, plain = read_params(export), read_params(gluon)
    assert all(not n.startswith(("arg:", "aux:")) for n in stripped)
    assert list(stripped) == [n[4:] for n in read_ndarray_file(export)]
    assert read_params(gluon).keys() == read_ndarray_file(gluon).keys()  # gluon: verbatim
    # The two layouts name things differently but hold the same tensors in the same order.
    assert len(stripped) == len(plain)
    for a, b in zip(stripped.values(), plain.values()):
        np.testing.assert_array_equal(a, b)


@pytest.mark.oracle
def test_every_dtype_matches_mx_load(mx, tmp_path):
    rng = np.random.default_rng(0)
    src = {f"t_{d}": (rng.standard_normal((2, 3)) * 50).astype(d)
           for d in ("float16", "float32", "float64", "uint8", "int8", "int32", "int64")}
    arrays = {k: mx.nd.array(v, dtype=v.dtype) for k, v in src.items()}
    arrays["t_bool"] = mx.nd.array(np.array([[True, False, True]]), dtype="bool")
    arrays["t_bf16"] = mx.nd.amp_cast(mx.nd.array([1.5, -2.0, 3.25]), dtype=BFLOAT16)
    arrays["t_4d"] = mx.nd.arange(24, dtype="int32").reshape((1, 2, 3, 4))
    path = tmp_path / "dtypes.params"
    mx.nd.save(str(path), arrays)
    got = read_ndarray_file(path)
    assert_exact(got, mx_load(mx, path))
    assert got["t_bf16"].dtype == BFLOAT16 and got["t_bool"].dtype == np.bool_


@pytest.mark.oracle
def test_numpy_shape_semantics_scalar_and_zero_size(mx, tmp_path):
    """Under np-shape semantics mxnet writes V3 records; there ndim 0 is a real scalar."""
    path = tmp_path / "np.params"
    with mx.util.np_shape(True):
        mx.nd.save(str(path), {"scalar": mx.nd.array([2.5]).reshape(()),
                               "empty": mx.nd.zeros((0, 3)), "mid": mx.nd.zeros((2, 0, 4), dtype="int8"),
                               "x": mx.nd.ones((2,))})
    assert struct.unpack_from("<I", path.read_bytes(), 24)[0] == V3_MAGIC
    got = read_ndarray_file(path)
    assert_exact(got, mx_load(mx, path, np_shape=True))
    assert got["scalar"].shape == () and got["scalar"] == 2.5 and got["empty"].shape == (0, 3)


@pytest.mark.oracle
def test_legacy_and_v1_records_match_mx_load(mx, write):
    """Pre-V1 (no magic, u32 dims) and V1 (int64 dims, no storage type) still load in mxnet."""
    arr = np.arange(6, dtype=np.float32).reshape(2, 3)
    path = write(enc_file([enc_array(arr, None), enc_array(arr * 2, V1_MAGIC)], ["old", "v1"]))
    assert_exact(read_ndarray_file(path), mx_load(mx, path))


@pytest.mark.oracle
@pytest.mark.parametrize("kind", ["row_sparse", "csr"])
def test_sparse_written_by_mxnet_is_refused(mx, tmp_path, kind):
    path = tmp_path / "sparse.params"
    mx.nd.save(str(path), {"dense": mx.nd.ones((2,)), "s": mx.nd.ones((3, 2)).tostype(kind)})
    err = raises_reader(path, "sparse arrays are not supported")
    assert "array #1" in str(err) and kind in str(err)


@pytest.mark.oracle
def test_list_written_by_mxnet_is_refused(mx, tmp_path):
    path = tmp_path / "list.params"
    mx.nd.save(str(path), [mx.nd.ones((2,)), mx.nd.zeros((3,))])
    raises_reader(path, "without names")


# --- no mxnet needed -----------------------------------------------------------------------------

def test_reads_every_record_generation(write):
    arr = np.arange(6, dtype=np.int32).reshape(3, 2)
    records = [enc_array(arr, None), enc_array(arr, V1_MAGIC), enc_array(arr, V2_MAGIC),
               enc_array(arr, V3_MAGIC), enc_array(np.array(4.0, np.float64), V3_MAGIC),
               enc_array(np.zeros((0, 5), np.float16), V2_MAGIC)]
    names = ["legacy", "v1", "v2", "v3", "scalar", "zero"]
    got = read_ndarray_file(write(enc_file(records, names)))
    assert list(got) == names
    for name in names[:4]:
        np.testing.assert_array_equal(got[name], arr)
    assert got["scalar"].shape == () and got["scalar"].dtype == np.float64 and got["scalar"] == 4.0
    assert got["zero"].shape == (0, 5) and got["zero"].dtype == np.float16


def test_mxnet2_dtypes_and_names_verbatim(write):
    src = {"int16": np.array([-3, 4], "<i2"), "uint16": np.array([65535], "<u2"),
           "uint32": np.array([2**32 - 1], "<u4"), "uint64": np.array([2**64 - 1], "<u8")}
    flags = {"int16": 8, "uint16": 9, "uint32": 10, "uint64": 11}
    names = ["ünï côdé", "", "a.b", "arg:x"]
    records = [enc_array(v, flag=flags[k]) for k, v in src.items()]
    got = read_ndarray_file(write(enc_file(records, names)))
    assert list(got) == names
    for arr, ref in zip(got.values(), src.values()):
        assert arr.dtype == ref.dtype and arr.tobytes() == ref.tobytes()


def test_empty_dict_file(write):
    assert read_ndarray_file(write(enc_file([], []))) == {}


def test_detect_layout():
    assert detect_layout(["arg:w", "aux:m"]) == "export"
    assert detect_layout(["conv.weight"]) == "gluon"
    assert detect_layout(["arg:w", "conv.weight"]) == "gluon"  # mixed: nothing stripped
    assert detect_layout([]) == "gluon"


def test_read_params_mixed_keeps_names(write):
    one = enc_array(np.ones(2, np.float32))
    assert list(read_params(write(enc_file([one, one], ["arg:w", "w"])))) == ["arg:w", "w"]


def test_read_params_collision_names_both(write):
    one = enc_array(np.ones(2, np.float32))
    path = write(enc_file([one, one], ["arg:w", "aux:w"]))
    with pytest.raises(ReaderError) as info:
        read_params(path)
    assert "'arg:w'" in str(info.value) and "'aux:w'" in str(info.value)
    assert str(path) in str(info.value)


def test_wrong_list_magic(write):
    data = bytearray(small_file())
    data[0] = 0x13
    err = raises_reader(write(bytes(data)), "list magic")
    assert err.offset == 0


def test_not_even_a_header(write):
    raises_reader(write(b""), "truncated")
    raises_reader(write(b"PK\x03"), "truncated")
    raises_reader(write(b"PK\x03\x04 a zip file"), "not an MXNet NDArray file")


def test_bad_array_magic(write):
    data = bytearray(small_file())
    struct.pack_into("<I", data, 24, 0xDEADBEEF)
    err = raises_reader(write(bytes(data)), "bad array magic 0xdeadbeef")
    assert err.offset == 24 and "array #0" in str(err)


def test_truncation_at_every_offset(write, tmp_path):
    data = small_file()
    for cut in range(len(data)):
        path = tmp_path / f"cut{cut}.params"
        path.write_bytes(data[:cut])
        with pytest.raises(ReaderError) as info:
            read_ndarray_file(path)
        assert str(path) in str(info.value) and "offset" in str(info.value), cut
    assert list(read_ndarray_file(write(data))) == ["w", "b"]


@pytest.mark.parametrize("stype, fragment", [(1, "sparse arrays are not supported"),
                                             (2, "sparse arrays are not supported"),
                                             (-1, "unknown storage type")])
def test_non_dense_storage(write, stype, fragment):
    rec = enc_array(np.ones(2, np.float32), stype=stype)
    err = raises_reader(write(enc_file([rec], ["s"])), fragment)
    assert err.offset == 28 and "array #0" in str(err)


def test_unknown_type_flag(write):
    rec = enc_array(np.ones(2, np.float32), flag=13)
    raises_reader(write(enc_file([rec], ["x"])), "unknown type flag 13")


@pytest.mark.parametrize("ndim", [-1, -7, 33, 2**31 - 1])
def test_absurd_ndim(write, ndim):
    rec = struct.pack("<Iii", V2_MAGIC, 0, ndim) + b"\0" * 64
    err = raises_reader(write(enc_file([rec], ["x"])), f"ndim {ndim}")
    assert err.offset == 32


def test_negative_dim(write):
    rec = enc_array(np.ones((2, 3), np.float32), V3_MAGIC, dims=(2, -3))
    raises_reader(write(enc_file([rec], ["x"])), "negative dimension")


@pytest.mark.parametrize("rec", [struct.pack("<I", 0), struct.pack("<Ii", V1_MAGIC, 0),
                                 struct.pack("<Iii", V2_MAGIC, 0, 0)], ids=["legacy", "v1", "v2"])
def test_none_array_refused(write, rec):
    """ndim 0 outside numpy-shape semantics is an uninitialised array with no data."""
    raises_reader(write(enc_file([rec], ["x"])), "none")


def test_huge_declared_size_fails_fast_without_allocating(write):
    rec = enc_array(np.ones((2, 3), np.float32), dims=(2**40, 3))
    path = write(enc_file([rec], ["x"]))
    tracemalloc.start()
    start = time.perf_counter()
    try:
        err = raises_reader(path, "needs 13194139533312 data bytes")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - start < 2 and peak < 1 << 20
    assert "array #0" in str(err)


def test_overflowing_dims_are_caught(write):
    """dims whose int64 product would wrap must not sneak past the size check."""
    rec = enc_array(np.ones(4, np.float32), dims=(2**62, 2**62, 4))
    raises_reader(write(enc_file([rec], ["x"])), "needs")
    zero = enc_array(np.ones(0, np.float32), dims=(0, 2**62, 2**62))
    raises_reader(write(enc_file([zero], ["x"])), "too large")


def test_array_count_larger_than_file(write):
    data = bytearray(small_file())
    struct.pack_into("<Q", data, 16, 2**60)
    raises_reader(write(bytes(data)), "declares 1152921504606846976 arrays")


def test_name_count_mismatch(write):
    one = enc_array(np.ones(2, np.float32))
    raises_reader(write(enc_file([one, one], ["a"])), "name count 1 does not match")


def test_unnamed_list_refused(write):
    raises_reader(write(enc_file([enc_array(np.ones(2, np.float32))], [])), "without names")


def test_name_length_beyond_file(write):
    data = bytearray(small_file())
    name_len_at = len(data) - 1 - 8  # the last name is "b": u64 length then one byte
    struct.pack_into("<Q", data, name_len_at, 2**63)
    err = raises_reader(write(bytes(data)), "name length")
    assert err.offset == name_len_at and "name #1" in str(err)


def test_name_not_utf8(write):
    rec = enc_array(np.ones(2, np.float32))
    raises_reader(write(enc_file([rec], [b"conv\xff"])), "UTF-8")


def test_trailing_garbage(write):
    err = raises_reader(write(small_file() + b"\0"), "trailing")
    assert err.offset == len(small_file())


def test_duplicate_names(write):
    one = enc_array(np.ones(2, np.float32))
    err = raises_reader(write(enc_file([one, one], ["w", "w"])), "duplicate")
    assert err.tensor == "w"


def test_missing_file_is_reader_error(tmp_path):
    with pytest.raises(ReaderError):
        read_ndarray_file(tmp_path / "absent.params")
