"""Seeded source checkpoints for offline work: gluoncv builds the network (``pretrained=False``),
then its statistics are made numerically tame and it is saved with ``save_parameters``; the result
is read back by our own reader like any downloaded checkpoint.

Why the taming: gluoncv's default init can draw negative BatchNorm moving_var, and a random SSD
saturates every score to 1.0 with infinite boxes. We set each BatchNorm's moving statistics to the
statistics of its real input on photographs (in network order, so each layer sees calibrated
inputs), with a variance floor, and scale chosen output layers to a target spread."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

import cv2
import numpy as np

from ..frameworks import import_gluoncv, import_mxnet
from ..samples import sample_photos

SEED_FORMAT = 7  # bump when the recipe changes: cached seeded files are keyed on it


def calibration_images(size: tuple[int, int], n: int = 0) -> np.ndarray:
    """The first ``n`` sample photographs (0: all; the parity suite's own), resized and
    ImageNet-normalised (NCHW): statistics of small deep feature maps only transfer to the images
    they were measured on."""
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    out = [(cv2.resize(p, (size[1], size[0]), interpolation=cv2.INTER_AREA) / 255.0 - mean) / std
           for _, p in sample_photos()[: n or None]]
    return np.stack(out).transpose(0, 3, 1, 2).astype(np.float32)


def build(source_model: str, seed: int, out: Path, size: tuple[int, int],
          output_std: Mapping[str, float], kwargs: Mapping[str, Any], per_image: bool = False,
          images: int = 0) -> Path:
    """Write a seeded gluoncv checkpoint of ``source_model`` to ``out`` (parents created).
    ``per_image``: the net's eval forward takes one image (gluoncv's R-CNNs), so every pass runs the
    photographs one at a time and statistics are pooled over them. ``images``: calibrate on the first
    n photographs only (0: all)."""
    mx, gcv = import_mxnet(), import_gluoncv()
    mx.random.seed(seed)
    np.random.seed(seed)
    net = gcv.model_zoo.get_model(source_model, pretrained=False, **kwargs)
    net.initialize()
    x = mx.nd.array(calibration_images(size, images))
    net(x[:1])  # resolve deferred shapes (one image: an inference pass changes no parameter)
    rng = np.random.default_rng(seed)
    _randomise_affine(net, rng, mx)  # first, so the calibrated statistics see the final affine
    if per_image:
        _calibrate_per_image(net, x, mx)
    else:
        _calibrate(net, x, mx)
    _scale_outputs(net, x, output_std, mx, per_image)
    _scramble_fixed_gamma(net, rng, mx)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    net.save_parameters(str(tmp))
    tmp.replace(out)
    return out


def _stats(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and floored variance. Floors: a global one (dead channels), and 5% of
    mean^2 so (x - mean) never cancels catastrophically: small feature maps seen on a few images
    can otherwise get a variance tiny next to their mean, and fp32 noise then dominates."""
    return _floored(a.mean(axis=(0, 2, 3)), a.var(axis=(0, 2, 3)))


def _floored(mean: np.ndarray, var: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return mean, np.maximum(np.maximum(var, max(1e-4, 1e-2 * float(np.median(var)))), 0.05 * mean**2)


def _calibrate(net, x, mx) -> None:
    """One forward pass; pre-hooks set each Gluon BatchNorm from its input just before it runs and
    calibrate SymbolBlock-internal BatchNorms node by node."""
    handles = []

    def gluon_bn(block, inputs):
        mean, var = _stats(inputs[0].asnumpy())
        block.running_mean.set_data(mx.nd.array(mean))
        block.running_var.set_data(mx.nd.array(var))

    def symbol_block(block, inputs):
        _calibrate_symbol(block, inputs[0], mx)

    for block in _walk(net):
        if isinstance(block, mx.gluon.nn.BatchNorm):
            handles.append(block.register_forward_pre_hook(gluon_bn))
        elif isinstance(block, mx.gluon.SymbolBlock):
            handles.append(block.register_forward_pre_hook(symbol_block))
    net(x)
    for h in handles:
        h.detach()


def _calibrate_per_image(net, x, mx, rounds: int = 2) -> None:
    """Batch-1 nets: each Gluon BatchNorm takes the pooled statistics of every input it has seen so
    far in this round (float64 sums), set just before it runs. The first round's early images see
    partly calibrated upstream layers, so a second round re-pools with every layer calibrated."""
    sums: dict[int, list] = {}

    def gluon_bn(block, inputs):
        a = inputs[0].asnumpy().astype(np.float64)
        acc = sums.setdefault(id(block), [0.0, 0.0, 0])
        acc[0] = acc[0] + a.sum(axis=(0, 2, 3))
        acc[1] = acc[1] + (a * a).sum(axis=(0, 2, 3))
        acc[2] += a.size // a.shape[1]
        mean = acc[0] / acc[2]
        mean_, var = _floored(mean, np.maximum(acc[1] / acc[2] - mean * mean, 0.0))
        block.running_mean.set_data(mx.nd.array(mean_))
        block.running_var.set_data(mx.nd.array(var))

    handles = []
    for block in _walk(net):
        if isinstance(block, mx.gluon.SymbolBlock):  # none in the batch-1 nets registered
            raise NotImplementedError("per-image calibration of SymbolBlock internals")
        if isinstance(block, mx.gluon.nn.BatchNorm):
            handles.append(block.register_forward_pre_hook(gluon_bn))
    for _ in range(rounds):
        sums.clear()
        for i in range(x.shape[0]):
            net(x[i : i + 1])
    for h in handles:
        h.detach()


def _calibrate_symbol(block, data, mx) -> None:
    """Evaluate the block's symbol node by node, imperatively, in topological order, setting each
    BatchNorm's moving statistics from its input right before it runs: exact sequential calibration
    in a single pass (an all-at-once fixed point diverges from the default init's statistics)."""
    nodes = json.loads(block._cached_graph[1].tojson())["nodes"]
    params = {p.name: p for p in block.collect_params().values()}
    data_name = block._cached_graph[0][0].name
    values: dict[int, list] = {}
    for i, node in enumerate(nodes):
        if node["op"] == "null":
            values[i] = [data if node["name"] == data_name else params[node["name"]].data()]
            continue
        args = [values[j][k] for j, k, *_ in node["inputs"]]
        if node["op"] == "BatchNorm":
            mean, var = _stats(args[0].asnumpy())
            for pos, value in ((3, mean), (4, var)):  # inputs: data, gamma, beta, mean, var
                params[nodes[node["inputs"][pos][0]]["name"]].set_data(mx.nd.array(value))
                args[pos] = mx.nd.array(value)
        attrs = {k: v for k, v in node.get("attrs", {}).items() if not k.startswith("__")}
        op = getattr(mx.nd, node["op"], None) or getattr(mx.nd._internal, node["op"])
        out = op(*args, **attrs)
        values[i] = list(out) if isinstance(out, (list, tuple)) else [out]


class _Measured(Exception):
    """Ends a measuring pass (gluon's and paddle's seeding) once every measured layer has output: a
    detector's RPN passes then skip its heads."""


def _scale_outputs(net, x, output_std: Mapping[str, float], mx, per_image: bool = False) -> None:
    """Scale weight and bias of the named output layers so their outputs have the given std. Prefixes
    run in order (an R-CNN's RPN scaling moves the proposals its box head sees); the layers under one
    prefix are sibling heads that never read each other, so one forward pass measures them all."""
    for prefix, target in output_std.items():
        layers = [block for path, block in _named(net)
                  if path.startswith(prefix) and hasattr(block, "weight") and block.weight is not None]
        first: dict[int, np.ndarray] = {}  # a layer's first output in a pass
        seen: dict[int, list] = {}

        def hook(k: int, out) -> None:
            first.setdefault(k, out.asnumpy())
            if len(first) == len(layers):
                raise _Measured  # only first outputs count: the rest of the pass changes nothing

        handles = [block.register_forward_hook(lambda b, i, o, k=k: hook(k, o)) for k, block in enumerate(layers)]
        for batch in ([x[i : i + 1] for i in range(x.shape[0])] if per_image else [x]):
            first.clear()
            try:
                net(batch)
            except _Measured:
                pass
            for k, o in first.items():
                seen.setdefault(k, []).append(o)
        for h in handles:
            h.detach()
        for k, block in enumerate(layers):
            outs = seen[k]
            spread = float(outs[0].std() if len(outs) == 1 else np.concatenate([o.ravel() for o in outs]).std())
            scale = target / max(spread, 1e-6)
            block.weight.set_data(block.weight.data() * scale)
            if getattr(block, "bias", None) is not None:
                block.bias.set_data(block.bias.data() * scale)


def _randomise_affine(net, rng: np.random.Generator, mx) -> None:
    for name, p in sorted(net.collect_params().items()):
        if name.endswith("_gamma"):
            p.set_data(mx.nd.array(rng.uniform(0.5, 1.5, p.shape).astype(np.float32)))
        elif name.endswith("_beta"):
            p.set_data(mx.nd.array(rng.normal(0.0, 0.1, p.shape).astype(np.float32)))


def _scramble_fixed_gamma(net, rng: np.random.Generator, mx) -> None:
    """BatchNorms with fix_gamma=True (the symbol op's default; Gluon's BatchNorm(scale=False)) read
    gamma as 1, and MXNet writes 1 back on every forward; store a random gamma anyway, after the last
    forward, so a converter that copies it is caught by parity."""
    for block in _walk(net):
        if isinstance(block, mx.gluon.nn.BatchNorm) and block._kwargs.get("fix_gamma"):
            block.gamma.set_data(mx.nd.array(rng.uniform(0.5, 1.5, block.gamma.shape).astype(np.float32)))
        if not isinstance(block, mx.gluon.SymbolBlock):
            continue
        nodes = json.loads(block._cached_graph[1].tojson())["nodes"]
        params = {p.name: p for p in block.collect_params().values()}
        for node in nodes:
            if node["op"] == "BatchNorm" and node.get("attrs", {}).get("fix_gamma", "True") == "True":
                gamma = params[nodes[node["inputs"][1][0]]["name"]]
                gamma.set_data(mx.nd.array(rng.uniform(0.5, 1.5, gamma.shape).astype(np.float32)))


def _walk(block):
    yield block
    for child in block._children.values():
        yield from _walk(child)


def _named(block, prefix: str = ""):
    yield prefix, block
    for name, child in block._children.items():
        yield from _named(child, f"{prefix}.{name}" if prefix else name)
