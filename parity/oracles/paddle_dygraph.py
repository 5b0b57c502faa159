"""The Paddle dygraph oracle: PaddleClas's own network (ppcls), loaded by paddle's own loaders, run
in eval mode with forward hooks.

Loading: a ``.pdparams`` file by ``paddle.load``; a legacy fluid directory also by ``paddle.load``
(for a directory of per-variable files it runs paddle's ``load`` op on each file), its static
variable names mapped onto the ppcls state dict by the parameters' own ``.name`` or, for ppcls
models that name parameters automatically, by the family's registered static name table
(converters.paddle.ppcls). Either way every tensor of the net must be loaded, and is checked to
hold exactly the file's values (``set_state_dict`` only warns about a shape mismatch).

Capture points: ``a.b.c`` is the output of the sublayer at that path; ``a.b.c#in`` its first input."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from converters.errors import ParityError
from converters.frameworks import import_paddle
from converters.paddle import ppcls
from converters.registry import ModelSpec

from ..capture import INPUT_MARK, Captured


class DygraphOracle:
    def __init__(self, spec: ModelSpec, source: str | Path, layout: str):
        self.paddle = paddle = import_paddle()
        self.spec = spec
        self.net = spec.source_net(None) if spec.source_net else ppcls.build(spec.source_model, kwargs=spec.get_model_kwargs)
        source = Path(source)
        if layout == "dygraph":
            state = paddle.load(str(source))
            self.key_of = {k: k for k in state}  # source tensor name -> ppcls state-dict key
        elif layout == "fluid":
            arrays = paddle.load(str(source))  # a directory: paddle's legacy per-variable loader
            names = ppcls.static_names(spec.name, self.net)
            unknown = sorted(set(arrays) - set(names))
            if unknown:
                raise ParityError(f"{source}: {len(unknown)} variables ppcls's {spec.source_model} does not "
                                  f"have, e.g. {unknown[:3]}")
            self.key_of = {n: names[n] for n in arrays}
            state = {names[n]: v for n, v in arrays.items()}
        else:
            raise ParityError(f"{spec.name}: the dygraph oracle reads layouts dygraph and fluid, not {layout!r}")
        self._load(source, state)
        self.layers = dict(self.net.named_sublayers())

    def _load(self, source: Path, state: dict) -> None:
        missing, unexpected = self.net.set_state_dict(state)
        if missing or unexpected:
            raise ParityError(f"{source}: ppcls's net does not take this checkpoint ({len(missing)} missing, "
                              f"{len(unexpected)} unexpected, e.g. {(missing or unexpected)[:3]})")
        for key, tensor in self.net.state_dict().items():
            want = np.asarray(state[key].numpy() if hasattr(state[key], "numpy") else state[key])
            if not np.array_equal(tensor.numpy(), want):
                raise ParityError(f"{source}: {key} did not load (shape {tuple(want.shape)}, the net has "
                                  f"{tuple(tensor.shape)})")

    # -- which capture point a source tensor belongs to ------------------------------------------
    def capture_point(self, source: str) -> str:
        """The sublayer owning source tensor ``source`` (a state-dict key or a static name)."""
        key = self.key_of.get(source)
        if key is None:
            raise KeyError(f"the oracle has no parameter {source!r}")
        return key.rpartition(".")[0]

    # -- running ---------------------------------------------------------------------------------
    def run(self, x: np.ndarray, points: Sequence[str]) -> tuple[Any, Captured]:
        paddle = self.paddle
        captured: Captured = {}
        handles = []
        for point in dict.fromkeys(points):
            path, _, which = point.partition(INPUT_MARK)
            layer = self.net if path == "" else self.layers.get(path)
            if layer is None:
                raise ParityError(f"ppcls's net has no sublayer {path!r}")
            if which == "in":
                handles.append(layer.register_forward_pre_hook(
                    lambda _l, inp, p=point: captured.__setitem__(p, _np(inp[0]))))
            else:
                handles.append(layer.register_forward_post_hook(
                    lambda _l, _i, out, p=point: captured.__setitem__(p, _np(out))))
        try:
            x = np.ascontiguousarray(x, dtype=np.float32)
            with paddle.no_grad():
                out = self.spec.source_run(self.net, x) if self.spec.source_run else self.net(paddle.to_tensor(x))
        finally:
            for h in handles:
                h.remove()
        return _np(out), captured


def _np(value: Any):
    if isinstance(value, (tuple, list)):
        return tuple(_np(v) for v in value)
    return np.array(value if isinstance(value, np.ndarray) else value.numpy(), copy=True)
