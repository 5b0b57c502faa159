"""What every PaddleX classification entry shares: the model library's .tar links and published
accuracies, PaddleClas's eval preprocessing, and one ``register_classifier`` so that a family file
holds only its rules, its target and its table of models."""
from __future__ import annotations

import functools
from typing import Callable, Mapping, Sequence

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
