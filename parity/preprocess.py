"""Preprocessing pipelines, driven by a model's ``Preprocess`` record.

Variants:
- ``mxnet``: gluoncv's own eval transforms on mx.nd arrays (the reference the published metrics
  were measured with).
More variants (cv2-exact, pil, torchvision) plug in through ``VARIANTS``."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch

from converters.errors import ZooportError
from converters.registry import Preprocess


def _load(image: str | Path | np.ndarray) -> np.ndarray:
    """HxWx3 uint8 RGB; paths are decoded with OpenCV (what libmxnet uses)."""
    if isinstance(image, np.ndarray):
        return image
    import cv2
    arr = cv2.imread(str(image), cv2.IMREAD_COLOR)
    if arr is None:
        raise ZooportError(f"{image}: not a readable image")
    return np.ascontiguousarray(arr[..., ::-1])


def _mxnet(img: np.ndarray, spec: Preprocess) -> np.ndarray:
    from converters.frameworks import import_gluoncv, import_mxnet
    mx, gcv = import_mxnet(), import_gluoncv()
    presets = gcv.data.transforms.presets
    src = mx.nd.array(img, dtype="uint8")
    if spec.preset == "imagenet":
        out = presets.imagenet.transform_eval(src, resize_short=spec.resize_short, crop_size=spec.size[0],
                                              mean=spec.mean, std=spec.std)
        return out.asnumpy()[0]
    if spec.preset == "ssd":
        t = presets.ssd.SSDDefaultValTransform(spec.size[1], spec.size[0], mean=spec.mean, std=spec.std)
        return t(src, np.zeros((0, 5), dtype=np.float32))[0].asnumpy()
    if spec.preset == "cifar":
        # gluoncv's CIFAR scripts: ToTensor + Normalize on 32x32 images; a photograph stands in for
        # a CIFAR image after an area resize (CIFAR images come at 32x32, so no resize is gluoncv's)
        import cv2
        small = mx.nd.array(cv2.resize(img, spec.size[::-1], interpolation=cv2.INTER_AREA), dtype="uint8")
        t = mx.gluon.data.vision.transforms
        return t.Compose([t.ToTensor(), t.Normalize(spec.mean, spec.std)])(small).asnumpy()
    raise ZooportError(f"variant 'mxnet' has no transform for preset {spec.preset!r}")


VARIANTS: dict[str, Callable[[np.ndarray, Preprocess], np.ndarray]] = {"mxnet": _mxnet}


def preprocess(image: str | Path | np.ndarray, spec: Preprocess, variant: str = "mxnet") -> torch.Tensor:
    """One image -> float32 CHW tensor, as the model's source framework feeds it."""
    if variant not in VARIANTS:
        raise ZooportError(f"unknown preprocessing variant {variant!r} (available: {', '.join(VARIANTS)})")
    return torch.from_numpy(np.ascontiguousarray(VARIANTS[variant](_load(image), spec), dtype=np.float32))
