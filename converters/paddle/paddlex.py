"""What every PaddleX classification entry shares: the model library's .tar links and published
accuracies, PaddleClas's eval preprocessing, and one ``register_classifier`` so that a family file
holds only its rules, its target and its table of models."""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Callable, Iterable, Mapping, Sequence, Union

from torch import nn

from ..fixups import TRANSPOSE_LINEAR
from ..registry import Metric, ModelSpec, Preprocess, paddleclas_eval, register
from ..rules import Default, Rule
from ..sources import SourceWeights
from . import ppcls

BN_DEFAULTS = (Default(r"^.*num_batches_tracked$", 0, "torch BN step counter; unused in eval, Paddle has none"),)
PADDLE_IMAGENET = "https://paddle-imagenet-models-name.bj.bcebos.com/"


def paddlex_weights(name: str, stem: str) -> SourceWeights:
    """A PaddleX model-library .tar (a fluid checkpoint directory); the library lists no hashes."""
    return SourceWeights(name=name, sha1=None, url=f"{PADDLE_IMAGENET}{stem}.tar", filename=stem, archive="tar")


def paddlex_metrics(top1: float, top5: float) -> tuple[Metric, ...]:
    return (Metric("top1", top1, "ImageNet val", "PaddleX model library"),
            Metric("top5", top5, "ImageNet val", "PaddleX model library"))


BN_DYGRAPH = ("weight", "bias", "_mean", "_variance")  # paddle.nn.BatchNorm(2D)'s state-dict names
BN_STATIC = ("_scale", "_offset", "_mean", "_variance")  # PaddleClas 1.x static suffixes of a BN's prefix
BN_TARGET = ("weight", "bias", "running_mean", "running_var")


@dataclass(frozen=True)
class Norm:
    """A BatchNorm alone: dygraph module path, static prefix (``<fluid><suffix>``), target module."""

    dygraph: str
    fluid: str
    target: str
    suffixes: tuple[str, str, str, str] = BN_STATIC


@dataclass(frozen=True)
class ConvBN:
    """One bias-free conv + BatchNorm under both source namings, and its target modules: dygraph
    module paths ``dy_conv``/``dy_bn``; static ``<st_conv><st_conv_suffix>`` and ``<st_bn><suffix>``
    for the four ``st_bn_suffixes``; target module paths ``conv``/``norm``."""

    dy_conv: str
    dy_bn: str
    st_conv: str
    st_bn: str
    conv: str
    norm: str
    st_bn_suffixes: tuple[str, str, str, str] = BN_STATIC
    st_conv_suffix: str = "_weights"


@dataclass(frozen=True)
class Tensor:
    """Any other tensor (classifier, biased conv): dygraph key, static name, target key, why."""

    dygraph: str
    fluid: str
    target: str
    why: str


def classifier(dygraph: str, weight: str, bias: str, target: str = "fc") -> tuple[Tensor, Tensor]:
    """The final Linear: dygraph prefix, static weight and bias names, target module."""
    return (Tensor(f"{dygraph}.weight", weight, f"{target}.weight", "classifier (Linear weight stored [in, out])"),
            Tensor(f"{dygraph}.bias", bias, f"{target}.bias", "classifier bias"))


Entry = Union[ConvBN, Norm, Tensor]


def triples(entries: Iterable[Entry]):
    """(dygraph key, static name, target key, why) of every tensor of ``entries``."""
    for e in entries:
        if isinstance(e, Tensor):
            yield e.dygraph, e.fluid, e.target, e.why
        elif isinstance(e, Norm):
            for dy, st, tg in zip(BN_DYGRAPH, e.suffixes, BN_TARGET):
                yield f"{e.dygraph}.{dy}", f"{e.fluid}{st}", f"{e.target}.{tg}", f"{e.dygraph} BN {dy.lstrip('_')}"
        else:
            yield f"{e.dy_conv}.weight", f"{e.st_conv}{e.st_conv_suffix}", f"{e.conv}.weight", f"{e.dy_conv} conv (no bias)"
            yield from triples([Norm(e.dy_bn, e.st_bn, e.norm, e.st_bn_suffixes)])


def layout_tables(entries: Iterable[Entry]) -> tuple[list[Rule], list[Rule], dict[str, str]]:
    """One list of a net's tensors -> (dygraph rules, fluid rules, {dygraph key: static name}): both
    layouts name the same tensors, so one table serves the rules of each and the oracle's name map."""
    dygraph, fluid, names = [], [], {}
    for dy, st, tg, why in triples(entries):
        dygraph.append(Rule(rf"^{re.escape(dy)}$", tg, why))
        fluid.append(Rule(rf"^{re.escape(st)}$", tg, f"static {st}: {why}"))
        names[dy] = st
    return dygraph, fluid, names


def register_classifier(name: str, family: str, build: Callable[[], nn.Module], *,
                        dygraph: Sequence[Rule], fluid: Sequence[Rule], source_model: str, stem: str,
                        top1: float, top5: float, seed_output_std: Mapping[str, float], notes: Sequence[str],
                        fluid_names: Callable[[], dict[str, str]] | None = None,
                        preprocess: Preprocess | None = None, slow: bool = False, **extra) -> ModelSpec:
    """One PaddleX ImageNet classifier read from a dygraph ``.pdparams`` or a fluid directory.
    ``fluid_names``: only for ppcls nets that name parameters automatically (see ppcls.py)."""
    spec = register(ModelSpec(
        name=name, family=family, framework="paddle", task="classification", source_format="paddle-checkpoint",
        build=build, rules={"dygraph": dygraph, "fluid": fluid}, fixups=(TRANSPOSE_LINEAR,),
        defaults=BN_DEFAULTS, preprocess=preprocess or paddleclas_eval(),
        weights=functools.partial(paddlex_weights, name, stem), source_model=source_model,
        metrics=paddlex_metrics(top1, top5), seed_output_std=dict(seed_output_std), notes=tuple(notes),
        slow=slow, **extra))
    if fluid_names is not None:
        ppcls.register_fluid_names(name, fluid_names)
    return spec
