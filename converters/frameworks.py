"""Lazy imports of the source frameworks. Only seeded-source building and the parity oracles use
them; readers and rules never do."""
from __future__ import annotations

import os
import sys
from types import ModuleType

from .errors import ZooportError


def _missing(name: str, exc: Exception) -> ZooportError:
    return ZooportError(f"{name} is not importable here ({exc.__class__.__name__}: {exc})",
                        hint="run `make setup` to install the pinned oracle stack")


def import_mxnet() -> ModuleType:
    # MKLDNN's subgraph pass fuses conv+bn and breaks reading a symbol's internal outputs.
    os.environ.setdefault("MXNET_SUBGRAPH_BACKEND", "NONE")
    torch = sys.modules.get("torch")
    threads = torch.get_num_threads() if torch is not None else None
    try:
        import mxnet
    except Exception as exc:  # noqa: BLE001 - any import failure means the oracle is unavailable
        raise _missing("mxnet", exc) from exc
    if threads is not None and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)  # libmxnet's OpenMP init leaves torch with one thread
    return mxnet


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
