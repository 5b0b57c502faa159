"""PaddleClas (ppcls) models by name, built by paddle itself: used only by seeded-source building and
the parity oracle (converters never run the source framework). Importing this module does not import
paddle; the functions do, through converters.frameworks.

Also the registry of static ("fluid") name tables: legacy checkpoints name each variable as the
PaddleClas 1.x static programs did (``res2a_branch2a_weights``), while several ppcls 2.x models
name their parameters automatically (``conv2d_0.w_0``). A family whose ppcls model does that
registers, per model, its table {dygraph state-dict key: static name}; for the others the
parameters' own ``.name`` is the static name."""
from __future__ import annotations

from typing import Any, Callable, Mapping

from ..errors import ZooportError
from ..frameworks import paddle_build_scope

_FLUID_NAMES: dict[str, Callable[[], dict[str, str]]] = {}


def register_fluid_names(model: str, table: Callable[[], dict[str, str]]) -> None:
    if model in _FLUID_NAMES:
        raise ValueError(f"fluid name table for {model!r} is registered twice")
    _FLUID_NAMES[model] = table


def build(source_model: str, seed: int | None = None, kwargs: Mapping[str, Any] | None = None):
    """The ppcls backbone ``source_model`` in eval mode. Built inside a fresh unique-name scope:
    models that name parameters explicitly would collide with an earlier model in the process, and
    automatic names then start from 0 as in a fresh process."""
    from ..frameworks import import_paddle, import_ppcls
    paddle, ppcls = import_paddle(), import_ppcls()
    factory = getattr(ppcls.arch.backbone, source_model, None)
    if factory is None:
        raise ZooportError(f"ppcls has no model {source_model!r} (paddleclas "
                           f"{getattr(ppcls, '__version__', '2.6.0')} is installed)")
    with paddle_build_scope(paddle, seed):
        net = factory(**dict(kwargs or {}))
    net.eval()
    return net


def static_names(model: str, net) -> dict[str, str]:
    """{static variable name: dygraph state-dict key} of ``net`` (the ppcls build of ``model``)."""
    keys = list(net.state_dict())
    if model in _FLUID_NAMES:
        table = _FLUID_NAMES[model]()
        odd = sorted(set(keys) ^ set(table))
        if odd or len(set(table.values())) != len(table):
            raise ZooportError(f"{model}: the static name table does not fit ppcls's net "
                               f"({len(odd)} keys in only one of them, e.g. {odd[:3]})")
        return {table[k]: k for k in keys}
    return {t.name: k for k, t in net.state_dict().items()}
