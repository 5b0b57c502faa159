"""Model records and the registry. A family file registers its models at import; the registry
imports every family module under converters/{gluon,paddle,detectron}/ on first lookup."""
from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
from torch import nn

from .errors import UnknownModel
from .fixups import Fixup
from .rules import Default, Ignore, Rule
from .sources import SourceWeights

FRAMEWORK_PACKAGES = ("converters.gluon", "converters.paddle", "converters.detectron")


@dataclass(frozen=True)
class Preprocess:
    """The input contract of a checkpoint, as data (parity/preprocess.py executes it)."""

    preset: str  # gluoncv task preset: "imagenet", "cifar", "ssd", ...
    size: tuple[int, int]  # network input (H, W)
    # "short-side" (keep ratio, then crop) | "exact" (stretch to size) | "none" (CIFAR) |
    # "short-within" (R-CNN: short side to resize_short unless the long side would pass max_size)
    # "scale-within" (PaddleDetection Resize keep_ratio: one factor min(short/min, max/max) passed to
    # cv2.resize as fx = fy; "exact" on the "ppdet" preset also resizes by factors, as ppdet does)
    resize: str
    resize_short: int | None = None
    max_size: int | None = None
    interp: str = "bilinear"  # OpenCV name; "mxnet-9" = bicubic up / area down / else bilinear
    crop: str = "center-floor"  # "center-floor" | "none"
    decoder: str = "opencv"  # libmxnet decodes with OpenCV
    color: str = "RGB"
    scale: float = 1 / 255
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    # "short-side" sizes: "floor" (mx.image: short * long // short) | "round" (PaddleClas's
    # ResizeImage: each side int(round(side * resize_short / min side)), Python floats)
    resize_rounding: str = "floor"
    # after normalisation, zero-pad bottom/right to a multiple of this (PaddleDetection's PadBatch)
    pad_to: int = 0


CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)  # gluoncv's CIFAR scripts


def imagenet_eval(size: int = 224) -> Preprocess:
    """gluoncv ImageNet eval: short side to ceil(size / 0.875), centre crop ``size``."""
    return Preprocess("imagenet", (size, size), "short-side", resize_short=-(-size * 8 // 7), crop="center-floor")


def paddleclas_eval(size: int = 224, short: int = 256) -> Preprocess:
    """PaddleClas's eval ops: cv2 decode to RGB, ResizeImage(resize_short) rounding each side, cv2
    bilinear, CropImage(size) at floor offsets, NormalizeImage x * float32(1/255) (a multiply, not a
    division: they differ in the last bit), then (x - mean) / std in float32."""
    return Preprocess("paddleclas", (size, size), "short-side", resize_short=short, resize_rounding="round",
                      interp="bilinear", crop="center-floor", scale=float(np.float32(1 / 255)))


def ppdet_eval(size: tuple[int, int], keep_ratio: bool, interp: str = "bicubic", pad_to: int = 0) -> Preprocess:
    """PaddleDetection 2.x eval reader: cv2 decode to RGB; Resize (``keep_ratio``: target (short,
    long) = ``size``; else stretch to ``size`` = (H, W)) by cv2.resize with fx/fy factors, interp 2
    (bicubic) in the YOLOv3/R-CNN configs; NormalizeImage x / 255 then ImageNet mean/std; PadBatch."""
    scale = float(np.float32(1 / 255))  # NormalizeImage: im *= 1 / 255 on float32 (a multiply)
    if keep_ratio:
        return Preprocess("ppdet", size, "scale-within", resize_short=size[0], max_size=size[1], interp=interp,
                          crop="none", pad_to=pad_to, scale=scale)
    return Preprocess("ppdet", size, "exact", interp=interp, crop="none", pad_to=pad_to, scale=scale)


def paddleseg_eval(size: tuple[int, int], color: str = "RGB") -> Preprocess:
    """PaddleSeg: Normalize (x / 255 - 0.5) / 0.5. PaddleSeg 2.x decodes to RGB (Compose to_rgb);
    PaddleSeg 0.x / PaddleX 1.x feed cv2's BGR. Cityscapes eval runs at the full 1024x2048 frame
    without resizing; photographs are stretched to ``size`` (cv2 bilinear) as a stand-in."""
    return Preprocess("paddleseg", size, "exact", interp="bilinear", crop="none", color=color,
                      mean=(0.5,) * 3, std=(0.5,) * 3)


def cifar_eval() -> Preprocess:
    return Preprocess("cifar", (32, 32), "none", crop="none", mean=CIFAR_MEAN, std=CIFAR_STD)


@dataclass(frozen=True)
class Metric:
    name: str  # "top1", "mAP", ...
    value: float
    dataset: str
    source: str  # where the number was published


@dataclass(frozen=True)
class ModelSpec:
    """Everything zooport knows about one model; one registry entry."""

    name: str
    family: str  # e.g. "gluon.resnet"
    framework: str  # "gluon" | "paddle" | "detectron"
    task: str  # "classification" | "detection" | "segmentation" | "pose"
    source_format: str  # reader name, e.g. "mxnet-params"
    build: Callable[[], nn.Module]  # target module, random init
    # per source layout ("gluon", "export", "dygraph", ...): a rule table, or a function of the
    # source path that derives one (inference programs, whose parameter names are generated)
    rules: Mapping[str, Sequence[Rule | Ignore] | Callable[[Path], Sequence[Rule | Ignore]]]
    preprocess: Preprocess
    weights: Callable[[], SourceWeights]  # built on call: mirrors are read from the environment
    source_model: str  # the name the source framework knows it by
    fixups: Sequence[Fixup] = ()
    defaults: Sequence[Default] = ()
    metrics: Sequence[Metric] = ()
    # extra parity pairs beyond those derived from the mapping: (source capture, target module)
    extra_pairs: Sequence[tuple[str, str]] = ()
    # seeded sources: output layers scaled to this std so scores stay spread (see gluon/seeded.py)
    seed_output_std: Mapping[str, float] = field(default_factory=dict)
    tolerance: float = 1e-4  # max abs error / max |reference| allowed per layer pair
    notes: Sequence[str] = field(default_factory=tuple)
    # targets whose widths vary per checkpoint (pruned nets): build from {target name: shape}
    build_from_shapes: Callable[[Mapping[str, tuple[int, ...]]], nn.Module] | None = None
    # the torchvision module with the same architecture, and our state-dict key -> its key
    torchvision: Callable[[], nn.Module] | None = None
    torchvision_key: Callable[[str], str] | None = None
    slow: bool = False  # parity sweep only in `make parity-full` (too big for CI's budget)
    parity_images: int = 3  # photographs in the CI parity sweep
    # gluoncv get_model kwargs (seeding, oracle, export test); None: pretrained_base=False off classification
    source_kwargs: Mapping[str, Any] | None = None
    # detection: torch-side capture names (or tuples of them) of the pre-NMS class scores and decoded
    # boxes; their fp32 floors set the post-NMS score and box tolerances (captured without a source pair)
    floor_points: Mapping[str, str | tuple[str, ...]] = field(default_factory=lambda: {"score": "cls_decoder#in", "box": "box_decoder"})
    parity_sizes: Sequence[tuple[int, int]] = ()  # further network input sizes the parity suite checks
    seed_size: tuple[int, int] | None = None  # calibration input size of seeded sources (default: preprocess)
    seed_images: int = 0  # calibration photographs of seeded sources: the first n (0: all)
    # the target module parity runs (the converted weights loaded into it), when the source net
    # (``source_net``) is built from a reduced config, e.g. C4 R-CNNs with fewer test proposals:
    # both sides from one config object; None: the converted module itself
    parity_build: Callable[[], nn.Module] | None = None
    # (source capture, target module): the torch runs continue from the source's output there, so
    # layers after a discrete selection (NMS-picked proposals) are compared on identical inputs
    replay: Sequence[tuple[str, str]] = ()
    single_image: bool = False  # the source net's eval forward takes one image per call (gluoncv R-CNNs)
    # the model's own input contract where the input size depends on the image (PP-OCR): RGB uint8
    # HxWx3 -> (1, 3, H, W) float32; parity uses it instead of the preset pipelines
    prepare: Callable[[Any], Any] | None = None
    samples: Callable[[], list] | None = None  # parity inputs: [(name, RGB uint8)], default photographs
    # Paddle families beyond ppcls (ppdet, paddleseg): build the source framework's own net in eval
    # mode (arg: paddle seed or None), and run it on one preprocessed batch returning the target
    # module's output format; None: ppcls's ``source_model`` and ``net(x)``. Seeding and oracles only.
    source_net: Callable[[int | None], Any] | None = None
    source_run: Callable[[Any, np.ndarray], Any] | None = None
    # per source layout, the numerics the target is switched to (``module.set_numerics(name)``): a
    # PaddleX 1.x static checkpoint was evaluated with the static ops' conventions (+1 box widths,
    # unaligned RoIAlign), a PaddleDetection 2.x one with the dygraph ops'; recorded in the output
    numerics: Mapping[str, str] = field(default_factory=dict)

    @property
    def get_model_kwargs(self) -> dict[str, Any]:
        if self.source_kwargs is not None:
            return dict(self.source_kwargs)
        return {} if self.task == "classification" else {"pretrained_base": False}


_REGISTRY: dict[str, ModelSpec] = {}
_DISCOVERED = False


def register(spec: ModelSpec) -> ModelSpec:
    if spec.name in _REGISTRY:
        raise ValueError(f"model {spec.name!r} is registered twice "
                         f"({_REGISTRY[spec.name].family} and {spec.family})")
    _REGISTRY[spec.name] = spec
    return spec


def _discover() -> None:
    global _DISCOVERED
    if _DISCOVERED:
        return
    _DISCOVERED = True
    for pkg_name in FRAMEWORK_PACKAGES:
        pkg = importlib.import_module(pkg_name)
        for info in pkgutil.iter_modules(pkg.__path__):
            if not info.name.startswith("_"):
                importlib.import_module(f"{pkg_name}.{info.name}")


def get(name: str) -> ModelSpec:
    _discover()
    try:
        return _REGISTRY[name]
    except KeyError:
        close = [n for n in _REGISTRY if name.split("_")[0] in n][:5]
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise UnknownModel(f"unknown model {name!r}{hint}") from None


def names() -> list[str]:
    _discover()
    return sorted(_REGISTRY)


def specs() -> list[ModelSpec]:
    return [get(n) for n in names()]
