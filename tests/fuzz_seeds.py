"""Small valid files of every format zooport reads, written by our own minimal encoders (no
framework), each with the offsets of its size and count fields so mutations can aim at them.

The encoders follow the layouts documented in converters/io/mxnet_params.py and
converters/io/paddle.py; tests/test_mxnet_params.py and tests/test_paddle_readers.py prove the
readers against files mxnet and paddle write themselves, and every seed here must read back
exactly (tests/test_fuzz.py checks that first).
"""
from __future__ import annotations

import pickle
import pickletools
import struct
from dataclasses import dataclass, field

import numpy as np

from converters.io.mxnet_params import BFLOAT16, V1_MAGIC, V2_MAGIC, V3_MAGIC


@dataclass
class Seed:
    """A valid file and where its integer fields are: (offset, width, kind), kind "le" for a
    little-endian integer of ``width`` bytes, "varint" for a protobuf varint of ``width`` bytes."""

    data: bytes
    fields: list[tuple[int, int, str]] = field(default_factory=list)


# --- MXNet NDArray files ------------------------------------------------------------------------

MX_FLAGS = {np.dtype("<f4"): 0, np.dtype("<f8"): 1, np.dtype("<f2"): 2, np.dtype("u1"): 3,
            np.dtype("<i4"): 4, np.dtype("i1"): 5, np.dtype("<i8"): 6, np.dtype("?"): 7,
            BFLOAT16: 12}


def mx_array(arr: np.ndarray, magic: int | None, at: int, fields: list) -> bytes:
    """One NDArray record; magic None is the pre-V1 layout (u32 ndim, u32 dims)."""
    dims = arr.shape
    if magic is None:
        fields += [(at, 4, "le")] + [(at + 4 + 4 * i, 4, "le") for i in range(len(dims))]
        head = struct.pack(f"<I{len(dims)}I", len(dims), *dims)
    else:
        head = struct.pack("<I", magic)
        if magic in (V2_MAGIC, V3_MAGIC):
            fields.append((at + 4, 4, "le"))  # storage type
            head += struct.pack("<i", 0)
        fields.append((at + len(head), 4, "le"))  # ndim
        fields += [(at + len(head) + 4 + 8 * i, 8, "le") for i in range(len(dims))]
        head += struct.pack(f"<i{len(dims)}q", len(dims), *dims)
    fields.append((at + len(head) + 8, 4, "le"))  # type flag
    return head + struct.pack("<iii", 1, 0, MX_FLAGS[arr.dtype]) + np.ascontiguousarray(arr).tobytes()


def mx_file(arrays: dict[str, tuple[np.ndarray, int | None]]) -> Seed:
    fields = [(0, 8, "le"), (16, 8, "le")]  # list magic, array count
    out = bytearray(struct.pack("<QQQ", 0x112, 0, len(arrays)))
    for arr, magic in arrays.values():
        out += mx_array(arr, magic, len(out), fields)
    fields.append((len(out), 8, "le"))  # name count
    out += struct.pack("<Q", len(arrays))
    for name in arrays:
        raw = name.encode()
        fields.append((len(out), 8, "le"))
        out += struct.pack("<Q", len(raw)) + raw
    return Seed(bytes(out), fields)


def params_arrays() -> dict[str, tuple[np.ndarray, int | None]]:
    rng = np.random.default_rng(0)
    return {
        "conv0_weight": (rng.standard_normal((4, 3, 3, 3)).astype(np.float32), V2_MAGIC),
        "bn_gamma": (rng.standard_normal(4).astype(np.float16), V3_MAGIC),
        "arg:fc_bias": (np.arange(5, dtype=np.int64), V1_MAGIC),
        "legacy": (np.arange(6, dtype=np.float64).reshape(2, 3), None),
        "bf": (np.array([(0x3F80,), (0xC000,)], dtype=BFLOAT16), V2_MAGIC),
        "scalar": (np.array(2.5, np.float32), V3_MAGIC),
    }


def params_seed() -> Seed:
    return mx_file(params_arrays())


# --- protobuf (Paddle's framework.proto subset) --------------------------------------------------

def varint(v: int) -> bytes:
    v &= (1 << 64) - 1  # negative int64 values go on the wire as 10-byte two's complement
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        out.append(b | (0x80 if v else 0))
        if not v:
            return bytes(out)


def pb_field(num: int, value: int | bytes | str) -> bytes:
    if isinstance(value, int):
        return varint(num << 3) + varint(value)
    raw = value.encode() if isinstance(value, str) else value
    return varint(num << 3 | 2) + varint(len(raw)) + raw


PD_CODES = {np.dtype("?"): 0, np.dtype("<i2"): 1, np.dtype("<i4"): 2, np.dtype("<i8"): 3,
            np.dtype("<f2"): 4, np.dtype("<f4"): 5, np.dtype("<f8"): 6, np.dtype("u1"): 20,
            np.dtype("i1"): 21, BFLOAT16: 22}


def tensor_desc(arr: np.ndarray) -> bytes:
    return pb_field(1, PD_CODES[arr.dtype]) + b"".join(pb_field(2, d) for d in arr.shape)


def var_desc(name: str, arr: np.ndarray | None, persistable: bool) -> bytes:
    vtype = pb_field(1, 7)
    if arr is not None:
        vtype += pb_field(3, pb_field(1, tensor_desc(arr)) + pb_field(2, 0))
    return pb_field(1, name) + pb_field(2, vtype) + pb_field(3, int(persistable))


def op_desc(optype: str, inputs: dict[str, list[str]], outputs: dict[str, list[str]],
            attrs: dict[str, int | float | str | list[int]]) -> bytes:
    out = b""
    for num, table in ((1, inputs), (2, outputs)):
        for param, args in table.items():
            out += pb_field(num, pb_field(1, param) + b"".join(pb_field(2, a) for a in args))
    out += pb_field(3, optype)
    for name, value in attrs.items():
        if isinstance(value, bool):
            body = pb_field(2, 6) + pb_field(10, int(value))
        elif isinstance(value, int):
            body = pb_field(2, 0) + pb_field(3, value)
        elif isinstance(value, float):
            body = pb_field(2, 1) + varint(4 << 3 | 5) + struct.pack("<f", value)
        elif isinstance(value, str):
            body = pb_field(2, 2) + pb_field(5, value)
        else:
            body = pb_field(2, 3) + pb_field(6, b"".join(varint(v) for v in value))  # packed ints
        out += pb_field(4, pb_field(1, name) + body)
    return out


def program_bytes(params: dict[str, np.ndarray]) -> bytes:
    """A one-block program: feed -> conv2d -> batch_norm -> fetch, declaring ``params``."""
    names = list(params)
    block = pb_field(1, 0) + pb_field(2, -1)
    block += pb_field(3, var_desc("x", np.zeros((0, 3, 8, 8), np.float32), False))
    for name, arr in params.items():
        block += pb_field(3, var_desc(name, arr, True))
    block += pb_field(3, pb_field(1, "feed") + pb_field(2, pb_field(1, 9)) + pb_field(3, 1))
    ops = [op_desc("feed", {"X": ["feed"]}, {"Out": ["x"]}, {"col": 0}),
           op_desc("conv2d", {"Input": ["x"], "Filter": names[1:2]}, {"Output": ["y"]},
                   {"strides": [1, 1], "groups": 1, "data_format": "NCHW", "use_cudnn": True}),
           op_desc("batch_norm", {"X": ["y"], "Scale": names[:1]}, {"Y": ["z"]},
                   {"epsilon": 1e-5, "is_test": True}),
           op_desc("fetch", {"X": ["z"]}, {"Out": ["fetch"]}, {"col": 0})]
    block += b"".join(pb_field(4, op) for op in ops)
    return pb_field(1, block)


def program_fields(data: bytes) -> list[tuple[int, int, str]]:
    """Every varint of a protobuf message tree that is a length or a value, found by walking it
    as nested messages wherever a length-delimited field parses as one."""
    out: list[tuple[int, int, str]] = []

    def walk(start: int, end: int, depth: int) -> bool:
        pos, found = start, []
        while pos < end:
            key, n = _read_varint(data, pos, end)
            if key is None or key >> 3 == 0:
                return False
            pos += n
            wire = key & 7
            if wire == 0:
                value, n = _read_varint(data, pos, end)
                if value is None:
                    return False
                found.append((pos, n, "varint"))
                pos += n
            elif wire == 2:
                length, n = _read_varint(data, pos, end)
                if length is None or pos + n + length > end:
                    return False
                found.append((pos, n, "varint"))
                pos += n
                if depth < 8 and length:
                    walk(pos, pos + length, depth + 1)
                pos += length
            elif wire in (1, 5):
                pos += 8 if wire == 1 else 4
            else:
                return False
        out.extend(found)
        return pos == end

    walk(0, len(data), 0)
    return sorted(set(out))


def _read_varint(data: bytes, pos: int, end: int) -> tuple[int | None, int]:
    value = shift = 0
    for i in range(10):
        if pos + i >= end:
            return None, 0
        b = data[pos + i]
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, i + 1
        shift += 7
    return None, 0


# --- Paddle tensor records (.pdiparams, fluid per-variable files) ---------------------------------

def tensor_record(arr: np.ndarray, at: int = 0, fields: list | None = None,
                  lod: list[list[int]] = ()) -> bytes:
    fields = [] if fields is None else fields
    out = bytearray(struct.pack("<IQ", 0, len(lod)))
    fields += [(at, 4, "le"), (at + 4, 8, "le")]
    for level in lod:
        fields.append((at + len(out), 8, "le"))
        out += struct.pack("<Q", 8 * len(level)) + struct.pack(f"<{len(level)}Q", *level)
    desc = tensor_desc(arr)
    fields += [(at + len(out), 4, "le"), (at + len(out) + 4, 4, "le")]
    out += struct.pack("<Ii", 0, len(desc))
    fields += [(at + len(out) + off, n, kind) for off, n, kind in program_fields(desc)]
    out += desc + np.ascontiguousarray(arr).tobytes()
    return bytes(out)


def inference_params() -> dict[str, np.ndarray]:
    """Names sorted as save_combine writes them."""
    rng = np.random.default_rng(1)
    return {"batch_norm_0.w_0": rng.standard_normal(4).astype(np.float32),
            "conv2d_0.w_0": rng.standard_normal((4, 3, 3, 3)).astype(np.float32),
            "g_bf16": np.array([(0x3F80,), (0x4000,)], BFLOAT16),
            "g_fp16": np.array([1.5, -2.0], np.float16),
            "g_int64": np.arange(3, dtype=np.int64)}


def pdmodel_seed() -> Seed:
    data = program_bytes(inference_params())
    return Seed(data, program_fields(data))


def pdiparams_seed() -> Seed:
    fields: list = []
    out = b""
    for arr in inference_params().values():
        out += tensor_record(arr, len(out), fields)
    return Seed(out, fields)


def fluid_var_seed() -> Seed:
    fields: list = []
    data = tensor_record(np.arange(12, dtype=np.float32).reshape(3, 4), 0, fields,
                         lod=[[0, 2, 3], [0, 1]])
    return Seed(data, fields)


# --- pickles (.pdparams, fluid.save, .pdiparams.info, Detectron .pkl) -----------------------------

def pdparams_state() -> dict:
    rng = np.random.default_rng(2)
    return {"conv1.weight": rng.standard_normal((4, 3, 3, 3)).astype(np.float32),
            "bn1._mean": np.zeros(4, np.float32), "fc.weight": np.ones((6, 2), np.float16),
            "layer.idx": np.arange(3, dtype=np.int64),
            "StructuredToParameterName@@": {"conv1.weight": "conv2d_0.w_0",
                                            "bn1._mean": "batch_norm_0.w_1"}}


def pickle_fields(data: bytes) -> list[tuple[int, int, str]]:
    """Length, count and memo-index arguments of a pickle's opcodes."""
    out = []
    for op, _, pos in pickletools.genops(data):
        width = {"BINPUT": 1, "LONG_BINPUT": 4, "BINGET": 1, "LONG_BINGET": 4, "BINUNICODE": 4,
                 "BINBYTES": 4, "SHORT_BINBYTES": 1, "SHORT_BINUNICODE": 1, "SHORT_BINSTRING": 1,
                 "BINSTRING": 4, "BINUNICODE8": 8, "BINBYTES8": 8, "BYTEARRAY8": 8, "FRAME": 8,
                 "LONG1": 1, "LONG4": 4, "BININT1": 1, "BININT2": 2, "BININT": 4}.get(op.name)
        if width:
            out.append((pos + 1, width, "le"))
    return out


def pdparams_seed(protocol: int) -> Seed:
    data = pickle.dumps(pdparams_state(), protocol=protocol)
    return Seed(data, pickle_fields(data))


def detectron_state() -> dict:
    """The shape of a Detectron (Caffe2) model_final.pkl: {"blobs": {name: array}, ...}."""
    rng = np.random.default_rng(3)
    return {"blobs": {"conv1_w": rng.standard_normal((4, 3, 3, 3)).astype(np.float32),
                      "res_conv1_bn_s": np.ones(4, np.float32), "cls_score_b": np.zeros(5, np.float32)},
            "cfg": "MODEL:\n  TYPE: generalized_rcnn\n"}


def py2_array(arr: np.ndarray) -> bytes:
    """An ndarray as Python 2's cPickle (protocol 2) writes it: the data as a str."""
    raw = arr.tobytes()
    shape = b"".join(b"K" + bytes([d]) for d in arr.shape)  # dims < 256
    tup = {1: b"\x85", 2: b"\x86", 3: b"\x87"}.get(len(arr.shape), b"")
    shape = (shape + tup) if tup else b"(" + shape + b"t"
    return (b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85U\x01b\x87R"
            b"(K\x01" + shape + b"cnumpy\ndtype\nU\x02" + arr.dtype.str[1:].encode()
            + b"K\x00K\x01\x87R(K\x03U\x01<NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb\x89T"
            + struct.pack("<I", len(raw)) + raw + b"tb")


def pkl_py2_seed() -> Seed:
    """{"blobs": {name: array}} exactly as a Python-2 Detectron pickle stores it (str keys as
    SHORT_BINSTRING, arrays with str data): read with encoding="latin1"."""
    blobs = detectron_state()["blobs"]
    body = b"}U\x05blobs}(" + b"".join(b"U" + bytes([len(k)]) + k.encode() + py2_array(v)
                                     for k, v in blobs.items()) + b"us."
    data = b"\x80\x02" + body
    return Seed(data, pickle_fields(data))


def pkl_seed(protocol: int) -> Seed:
    data = pickle.dumps(detectron_state(), protocol=protocol)
    return Seed(data, pickle_fields(data))


def info_seed() -> Seed:
    data = pickle.dumps({n: {"structured_name": f"net.{n}", "stop_gradient": False, "trainable": True}
                         for n in inference_params()}, protocol=2)
    return Seed(data, pickle_fields(data))
