"""Reader for Detectron (Caffe2) weight pickles: ``model_final.pkl`` and the ImageNet ``R-50.pkl``.

Detectron wrote them with Python 2's cPickle: ``{"blobs": {name: ndarray}, "cfg": yaml string}``
for trained models, a bare ``{name: ndarray}`` for the ImageNet backbones. Python-2 ``str`` holds
the array bytes, so the file is read with ``encoding="latin1"``. Training checkpoints also carry
``<param>_momentum`` blobs and scalar blobs (``lr``, ``iter``); they are returned like every other
blob (scalars as 0-d arrays) so the mapping rules ignore each one by name with a stated reason.

Everything goes through :mod:`.safe_pickle` (numpy arrays and plain containers only): a pickle
naming any other global is refused before anything in it runs."""
from __future__ import annotations

import os
from typing import Any

import numpy as np

from ..errors import ReaderError
from . import safe_pickle

LAYOUT = "detectron"


def _load(path: str | os.PathLike[str]) -> tuple[dict[str, Any], str | None]:
    obj = safe_pickle.load(path, encoding="latin1")
    if not isinstance(obj, dict):
        raise ReaderError(path, f"not a Detectron weights dict: the pickle holds a {type(obj).__name__}")
    if "blobs" not in obj:  # ImageNet backbones: the blobs dict itself
        return obj, None
    blobs, cfg = obj["blobs"], obj.get("cfg")
    extra = sorted(str(k)[:40] for k in obj if k not in ("blobs", "cfg"))
    if extra:
        raise ReaderError(path, f"unexpected top-level key(s) {extra} beside 'blobs' and 'cfg'")
    if not isinstance(blobs, dict):
        raise ReaderError(path, f"'blobs' is a {type(blobs).__name__}, not a dict")
    if cfg is not None and not isinstance(cfg, (str, bytes)):
        raise ReaderError(path, f"'cfg' is a {type(cfg).__name__}, not the YAML text Detectron writes")
    return blobs, cfg.decode("latin1") if isinstance(cfg, bytes) else cfg


def _blob(path, name: str, value: Any) -> np.ndarray:
    """A blob as a numeric array in native byte order; Python/numpy scalars become 0-d arrays."""
    if isinstance(value, (bool, int, float, np.generic)) and not isinstance(value, (str, bytes)):
        value = np.asarray(value)
    if not isinstance(value, np.ndarray):
        raise ReaderError(path, f"blob is a {type(value).__name__}, not an array", tensor=name)
    if value.dtype.kind not in "biuf":
        raise ReaderError(path, f"blob of dtype {value.dtype} is not numeric", tensor=name)
    if not value.dtype.isnative:
        value = value.astype(value.dtype.newbyteorder("="))
    return value


def read_pkl(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """``{blob name: array}`` in file order (momentum blobs and scalars included)."""
    blobs, _ = _load(path)
    out: dict[str, np.ndarray] = {}
    for name, value in blobs.items():
        if not isinstance(name, str):
            raise ReaderError(path, f"non-string blob name {str(name)[:60]!r}")
        out[name] = _blob(path, name, value)
    if not out:
        raise ReaderError(path, "the pickle holds no blobs")
    return out


def read_cfg(path: str | os.PathLike[str]) -> str | None:
    """The YAML config text a trained checkpoint carries (None for the bare ImageNet pickles)."""
    return _load(path)[1]


def read_checkpoint(path: str | os.PathLike[str]) -> tuple[dict[str, np.ndarray], str]:
    """The pipeline's reader signature: (tensors, source layout)."""
    return read_pkl(path), LAYOUT
