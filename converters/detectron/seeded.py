"""Synthetic Detectron checkpoints: every blob a real ``model_final.pkl`` (or ImageNet ``.pkl``) of
a config holds, named by Detectron's scheme (converters.detectron._names), seeded values, written
as Python 2's cPickle wrote Detectron's files (protocol 2; str keys and array data as Python-2
``str``; {"blobs": ..., "cfg": yaml}, ImageNet backbones a bare dict). Training checkpoints' momentum blobs and scalars are included so the ignore rules
are exercised. Caffe2 cannot be installed: these stand in for the source framework's files."""
from __future__ import annotations

import os
import struct
import tempfile
from pathlib import Path

import numpy as np

from ..arch.detectron import DetectronConfig
from ..arch.detectron_ops import bilinear_upsample_weight
from ._names import Layout, blobs

FORMAT = 1  # bump when the generated content changes (cached files carry it in their name)


def layout_of(cfg: DetectronConfig) -> Layout:
    return Layout(cfg.body, cfg.head, cfg.fpn, cfg.num_classes, cfg.num_keypoints)


def make_blobs(layout: Layout, seed: int) -> dict[str, np.ndarray]:
    """Seeded float32 blobs: conv/FC weights ~ N(0, 1 / fan_in) so activations stay bounded,
    AffineChannel scales near 1, biases small; ``kps_score`` is Detectron's fixed bilinear filter."""
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    for name, shape in blobs(layout).items():
        if name == "kps_score_w":
            out[name] = bilinear_upsample_weight(shape[0], 2).numpy()
            continue
        if name.endswith("_bn_s"):
            v = rng.uniform(0.5, 1.5, shape).astype(np.float32)
        elif name.endswith(("_b", "_bn_b")):
            v = rng.standard_normal(shape, dtype=np.float32) * np.float32(0.1)
        else:
            fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
            v = rng.standard_normal(shape, dtype=np.float32) * np.float32(1.0 / np.sqrt(fan_in))
        out[name] = v
    return out


def write(layout: Layout, path: str | Path, seed: int = 0, momentum: bool = True) -> Path:
    """Write a fixture atomically; trained configs get ``_momentum`` blobs for every trainable
    blob (Detectron freezes conv1 and res2 by FREEZE_AT = 2: those have none), plus lr and iter."""
    path = Path(path)
    arrays = make_blobs(layout, seed)
    if layout.head == "classifier":
        obj: dict = arrays
    else:
        extra: dict = {}
        if momentum:
            frozen = ("conv1_", "res_conv1_", "res2_")  # and kps_score (do_not_update_params)
            extra = {f"{k}_momentum": np.zeros_like(v) for k, v in arrays.items()
                     if not k.startswith(frozen) and k not in ("kps_score_w", "kps_score_b")}
            extra.update(lr=np.float32(0.0002), iter=89999)
        obj = {"blobs": {**arrays, **extra}, "cfg": f"MODEL:\n  TYPE: generalized_rcnn\n# {layout}\n"}
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "wb") as f:
        f.write(b"\x80\x02")
        _py2(obj, f)
        f.write(b".")
    os.replace(tmp, path)
    return path


def seeded_source(name: str, seed: int, root: Path) -> Path:
    """The cached fixture of registered model ``name`` (``--init random``)."""
    from .common import CONFIGS
    cfg = CONFIGS[name]
    root.mkdir(parents=True, exist_ok=True)
    path = root / f"{name}-seed{seed}-r{FORMAT}.pkl"
    return path if path.exists() else write(layout_of(cfg), path, seed)


# --- Python 2 cPickle, protocol 2 (Python 3's pickle writes bytes through _codecs.encode instead)

def _str(text: bytes) -> bytes:
    """A Python-2 str: SHORT_BINSTRING or BINSTRING."""
    return (b"U" + bytes([len(text)]) if len(text) < 256 else b"T" + struct.pack("<I", len(text))) + text


def _int(v: int) -> bytes:
    return b"K" + bytes([v]) if 0 <= v < 256 else b"J" + struct.pack("<i", v)


def _dtype(dt: np.dtype) -> bytes:
    order = b"|" if dt.itemsize == 1 else b"<"
    return (b"cnumpy\ndtype\n" + _str(dt.str[1:].encode()) + b"K\x00K\x01\x87R(K\x03" + _str(order)
            + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb")


def _py2(obj, f) -> None:
    if isinstance(obj, dict):
        f.write(b"}(")
        for k, v in obj.items():
            _py2(k, f)
            _py2(v, f)
        f.write(b"u")
    elif isinstance(obj, str):
        f.write(_str(obj.encode("latin1")))
    elif isinstance(obj, int):
        f.write(_int(obj))
    elif isinstance(obj, np.generic):
        f.write(b"cnumpy.core.multiarray\nscalar\n" + _dtype(obj.dtype) + _str(obj.tobytes()) + b"\x86R")
    elif isinstance(obj, np.ndarray):
        a = np.ascontiguousarray(obj.astype(obj.dtype.newbyteorder("<")))
        shape = b"(" + b"".join(_int(d) for d in a.shape) + b"t"
        f.write(b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85" + _str(b"b") + b"\x87R(K\x01"
                + shape + _dtype(a.dtype) + b"\x89" + b"T" + struct.pack("<I", a.nbytes))
        f.write(memoryview(a).cast("B"))
        f.write(b"tb")
    else:
        raise TypeError(f"no Python-2 pickle form for {type(obj).__name__}")
