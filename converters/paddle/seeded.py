"""Seeded PaddleClas source checkpoints for offline work: paddle builds the ppcls net with a fixed
seed, its statistics are made meaningful, and ``paddle.save`` writes its state dict (the "dygraph"
layout, read back by our own reader like a downloaded file).

The recipe is gluon/seeded.py's: random BatchNorm affines, then each BatchNorm's moving statistics
set from its real input on the sample photographs, in network order (a pre-hook fires just before
the layer runs, so each layer sees calibrated inputs), with the same variance floors; then the
named output layers scaled so the class scores have a chosen spread (distinct top-5s)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

import numpy as np

from ..frameworks import import_paddle
from ..gluon.seeded import _Measured, _stats, calibration_images  # one calibration recipe for every framework
from ..registry import ModelSpec
from ..seeding import images_tag
from . import ppcls

SEED_FORMAT = 1  # bump when the recipe changes: cached seeded files are keyed on it


def seeded_source(spec: ModelSpec, seed: int, directory: str | os.PathLike[str]) -> Path:
    """``<directory>/<model>-seed<seed>-r<SEED_FORMAT>.pdparams``, built on first use."""
    path = Path(directory) / f"{spec.name}-seed{seed}-r{SEED_FORMAT}{images_tag(spec)}.pdparams"
    if not path.exists():
        build(spec, seed, path)
    return path


def build(spec: ModelSpec, seed: int, out: Path) -> Path:
    paddle = import_paddle()
    net = spec.source_net(seed) if spec.source_net else ppcls.build(spec.source_model, seed, spec.get_model_kwargs)
    images = calibration_images(spec.seed_size or spec.preprocess.size, spec.seed_images)
    x = paddle.to_tensor(images)
    run = (lambda: spec.source_run(net, images)) if spec.source_run else (lambda: net(x))
    with paddle.no_grad():
        _randomise_affine(net, np.random.default_rng(seed), paddle)  # first: the statistics see it
        _calibrate(net, run, paddle)
        _scale_outputs(net, run, dict(spec.seed_output_std))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")  # same directory: os.replace is atomic
    try:
        paddle.save(net.state_dict(), str(tmp))
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return out


def _batchnorms(net, paddle) -> list:
    kinds = (paddle.nn.BatchNorm, paddle.nn.layer.norm._BatchNormBase)  # legacy and 2.x classes
    return [layer for _, layer in net.named_sublayers() if isinstance(layer, kinds)]


def _randomise_affine(net, rng: np.random.Generator, paddle) -> None:
    for bn in _batchnorms(net, paddle):
        if bn.weight is not None:
            bn.weight.set_value(rng.uniform(0.5, 1.5, bn.weight.shape).astype(np.float32))
        if bn.bias is not None:
            bn.bias.set_value(rng.normal(0.0, 0.1, bn.bias.shape).astype(np.float32))


def _calibrate(net, run, paddle) -> None:
    def set_stats(layer, inputs):
        mean, var = _stats(inputs[0].numpy())
        layer._mean.set_value(mean.astype(np.float32))
        layer._variance.set_value(var.astype(np.float32))

    handles = [bn.register_forward_pre_hook(set_stats) for bn in _batchnorms(net, paddle)]
    try:
        run()
    finally:
        for h in handles:
            h.remove()


def _scale_outputs(net, run, output_std: Mapping[str, float]) -> None:
    """Scale weight and bias of the layers at (or under) each named path so their outputs have the
    given standard deviation on the calibration images."""
    for prefix, target in output_std.items():
        layers = [layer for path, layer in net.named_sublayers()
                  if (path == prefix or path.startswith(prefix + ".")) and getattr(layer, "weight", None) is not None]
        if not layers:
            raise ValueError(f"seed_output_std names {prefix!r}, which has no weighted layer")
        spread: dict[int, float] = {}

        def measure(k: int):
            def hook(_layer, _inputs, out) -> None:  # must return None: paddle replaces the output otherwise
                spread.setdefault(k, float(out.numpy().std()))
                if len(spread) == len(layers):
                    raise _Measured  # only first firings count: the rest of the pass changes nothing
            return hook

        handles = [layer.register_forward_post_hook(measure(k)) for k, layer in enumerate(layers)]
        try:
            run()
        except _Measured:
            pass
        finally:
            for h in handles:
                h.remove()
        for k, layer in enumerate(layers):
            scale = target / max(spread[k], 1e-6)
            layer.weight.set_value(layer.weight.numpy() * scale)
            if getattr(layer, "bias", None) is not None:
                layer.bias.set_value(layer.bias.numpy() * scale)
