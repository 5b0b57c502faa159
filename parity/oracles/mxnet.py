"""The MXNet oracle: gluoncv's own network, loaded by MXNet's own loader, run un-hybridized.

Capture points:
- ``a.b.c``: output of the Gluon block at that path (forward hook; a hybridized graph would bypass
  child hooks, so the net is never hybridized here);
- ``a.b:node``: an internal output of the SymbolBlock at ``a.b`` (the node whose name is ``node`` or
  ends with ``_node``), evaluated on the input that block received during the same forward pass;
- ``a.b#in``: the first input of the Gluon block at ``a.b``."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from converters.errors import ParityError
from converters.frameworks import import_gluoncv, import_mxnet
from converters.io.mxnet_params import detect_layout, read_ndarray_file

from ..capture import INPUT_MARK, Captured


class GluonOracle:
    def __init__(self, source_model: str, params: str | Path, kwargs: Mapping[str, Any]):
        self.mx, gcv = import_mxnet(), import_gluoncv()
        params = Path(params)
        if detect_layout(list(read_ndarray_file(params))) == "export":
            self.net = self._imports(params)
        else:
            self.net = gcv.model_zoo.get_model(source_model, pretrained=False, **kwargs)
            self.net.load_parameters(str(params), ctx=self.mx.cpu())
        self.by_key = self.net._collect_params_with_prefix()
        self.key_of_name = {p.name: k for k, p in self.by_key.items()}

    def _imports(self, params: Path):
        """An export is loaded as MXNet loads it: its symbol file plus its parameters."""
        symbol = params.with_name(params.name.rsplit("-", 1)[0] + "-symbol.json")
        if not symbol.exists():
            raise ParityError(f"{params}: an export-layout checkpoint needs {symbol.name} beside it "
                              "for the MXNet oracle")
        return self.mx.gluon.SymbolBlock.imports(str(symbol), ["data"], str(params), ctx=self.mx.cpu())

    # -- which capture point a source tensor belongs to ------------------------------------------
    def capture_point(self, source: str) -> str:
        """The layer that owns source tensor ``source`` (structural key or symbol parameter name)."""
        key = source if source in self.by_key else self.key_of_name.get(source)
        if key is None:
            raise KeyError(f"the oracle has no parameter {source!r}")
        parts, block, path = key.split("."), self.net, []
        while len(parts) > 1 and parts[0] in block._children:
            block = block._children[parts[0]]
            path.append(parts.pop(0))
        if isinstance(block, self.mx.gluon.SymbolBlock):
            return f"{'.'.join(path)}:{self._consumer(block, self.by_key[key].name)}"
        return ".".join(path)

    def _consumer(self, block, var: str) -> str:
        nodes = self._nodes(block)
        ids = [i for i, n in enumerate(nodes) if n["op"] == "null" and n["name"] == var]
        users = [n["name"] for n in nodes if any(inp[0] in ids for inp in n["inputs"])]
        if len(users) != 1:
            raise KeyError(f"parameter {var} feeds {len(users)} nodes; cannot pick a layer")
        return users[0]

    @staticmethod
    def _nodes(block) -> list[dict]:
        return json.loads(block._cached_graph[1].tojson())["nodes"]

    # -- running ---------------------------------------------------------------------------------
    def run(self, x: np.ndarray, points: Sequence[str]) -> tuple[Any, Captured]:
        mx = self.mx
        captured: Captured = {}
        inputs: dict[str, Any] = {}
        handles = []
        symbolic: dict[str, list[str]] = {}
        for point in dict.fromkeys(points):
            path, _, node = point.partition(":")
            block = self._block(path.partition(INPUT_MARK)[0])
            if node:
                symbolic.setdefault(path, []).append(node)
                continue
            handles.append(block.register_forward_hook(
                lambda _b, inp, out, point=point: captured.__setitem__(
                    point, _np(inp[0] if point.endswith(INPUT_MARK + "in") else out))))
        for path in symbolic:
            handles.append(self._block(path).register_forward_pre_hook(
                lambda _b, inp, path=path: inputs.__setitem__(path, inp[0])))
        try:
            out = self.net(mx.nd.array(x))
        finally:
            for h in handles:
                h.detach()
        for path, nodes in symbolic.items():
            captured.update(self._internals(path, nodes, inputs[path]))
        return _np(out), captured

    def _block(self, path: str):
        block = self.net
        for part in filter(None, path.split(".")):
            block = block._children[part]
        return block

    def _internals(self, path: str, nodes: list[str], data) -> Captured:
        mx, block = self.mx, self._block(path)
        sym = block._cached_graph[1]
        names = [self._resolve_node(block, n) for n in nodes]
        internals = sym.get_internals()
        group = mx.sym.Group([internals[n + "_output"] for n in names])
        params = {p.name: p.data() for p in block.collect_params().values()}
        data_name = block._cached_graph[0][0].name
        args = {n: params[n] for n in group.list_arguments() if n != data_name}
        aux = {n: params[n] for n in group.list_auxiliary_states()}
        exe = group.bind(mx.cpu(), args={data_name: data, **args}, aux_states=aux, grad_req="null")
        outs = exe.forward(is_train=False)
        return {f"{path}:{node}": o.asnumpy() for node, o in zip(nodes, outs)}

    def _resolve_node(self, block, node: str) -> str:
        names = [n["name"] for n in self._nodes(block) if n["op"] != "null"]
        if node in names:  # an exact name wins: root-scope nodes (conv0_fwd) are suffixes of scoped ones
            return node
        hits = [n for n in names if n.endswith("_" + node)]
        if len(hits) != 1:
            raise KeyError(f"{node!r} matches {len(hits)} nodes of the symbol block")
        return hits[0]


def _np(value: Any):
    if isinstance(value, (tuple, list)):
        return tuple(_np(v) for v in value)
    return value.asnumpy()
