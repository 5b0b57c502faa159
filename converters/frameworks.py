"""Lazy imports of the source frameworks. Only seeded-source building and the parity oracles use
them; readers and rules never do."""
from __future__ import annotations

import contextlib
import os
import sys
from types import ModuleType

from .errors import ZooportError


def _missing(name: str, exc: Exception) -> ZooportError:
    return ZooportError(f"{name} is not importable here ({exc.__class__.__name__}: {exc})",
                        hint="run `make setup` to install the pinned oracle stack")


def _import_keeping_torch_threads(name: str) -> ModuleType:
    """Import a framework; its OpenMP init (libmxnet, libpaddle) can leave torch with one thread."""
    import importlib
    torch = sys.modules.get("torch")
    threads = torch.get_num_threads() if torch is not None else None
    try:
        module = importlib.import_module(name)
    except Exception as exc:  # noqa: BLE001 - any import failure means the oracle is unavailable
        raise _missing(name, exc) from exc
    if threads is not None and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return module


def import_mxnet() -> ModuleType:
    # MKLDNN's subgraph pass fuses conv+bn and breaks reading a symbol's internal outputs.
    os.environ.setdefault("MXNET_SUBGRAPH_BACKEND", "NONE")
    return _import_keeping_torch_threads("mxnet")


def import_gluoncv() -> ModuleType:
    """gluoncv refuses to import when torch>=2 is importable: hide torch for the import only."""
    if "gluoncv" in sys.modules:
        return sys.modules["gluoncv"]
    import_mxnet()
    hidden = {k: sys.modules.pop(k) for k in list(sys.modules) if k == "torch" or k.startswith("torch.")}
    sys.modules["torch"] = None  # type: ignore[assignment]
    try:
        import gluoncv
        import gluoncv.model_zoo  # noqa: F401 - resolve submodules while torch is hidden
    except Exception as exc:  # noqa: BLE001
        raise _missing("gluoncv", exc) from exc
    finally:
        del sys.modules["torch"]
        sys.modules.update(hidden)
    return gluoncv


def import_paddle() -> ModuleType:
    """paddle with the legacy program IR: old ``.pdmodel`` files (PP-OCR, PaddleX) load only through
    the static executor with PIR off, and the flag is read once, at import."""
    if "paddle" not in sys.modules:
        os.environ.setdefault("FLAGS_enable_pir_api", "0")
        os.environ.setdefault("GLOG_minloglevel", "2")  # paddle's C++ INFO lines drown test output
    return _import_keeping_torch_threads("paddle")


@contextlib.contextmanager
def paddle_build_scope(paddle: ModuleType, seed: int | None):
    """Where a Paddle net is built: automatic parameter names restart from 0 (static layouts are
    named by those counters) and, given a seed, paddle's RNG is seeded first."""
    with paddle.utils.unique_name.guard():
        if seed is not None:
            paddle.seed(seed)
        yield


def import_ppcls() -> ModuleType:
    """PaddleClas's model definitions (``ppcls``), from the installed ``paddleclas`` wheel.
    ``import paddleclas`` itself pulls its predictor (faiss, ...): only its ``ppcls`` folder is
    put on sys.path. ppcls logs through a logger that must be initialised before a model is built."""
    if "ppcls.arch.backbone" in sys.modules:
        return sys.modules["ppcls"]
    import importlib.util
    import logging
    import_paddle()
    spec = importlib.util.find_spec("paddleclas")
    if spec is None or not spec.submodule_search_locations:
        raise _missing("ppcls", ModuleNotFoundError("paddleclas is not installed"))
    root = list(spec.submodule_search_locations)[0]
    if root not in sys.path:
        sys.path.append(root)  # appended: its paddleclas.py must not shadow the installed package
    try:
        import ppcls
        from ppcls.utils import logger
        logger.init_logger(log_level=logging.ERROR)  # its per-model deprecation notices are noise here
        import ppcls.arch.backbone  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - any import failure means the oracle is unavailable
        raise _missing("ppcls", exc) from exc
    return ppcls


def import_ppdet() -> ModuleType:
    """PaddleDetection's model definitions (``ppdet``, the installed ``paddledet`` wheel, --no-deps).
    Its tracking extras (lap, motmetrics, numba) are absent: ppdet prints a warning and skips them."""
    import_paddle()
    if "ppdet.modeling" not in sys.modules:
        import logging
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pkg_resources / tracking-extras notices
            _import_keeping_torch_threads("ppdet.modeling")
        logging.getLogger("ppdet").setLevel(logging.ERROR)
    return sys.modules["ppdet"]


def import_paddleseg() -> ModuleType:
    """PaddleSeg's model definitions (``paddleseg``, the installed wheel, --no-deps)."""
    import_paddle()
    if "paddleseg.models" not in sys.modules:
        _import_keeping_torch_threads("paddleseg.models")
    return sys.modules["paddleseg"]
