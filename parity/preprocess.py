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
    if spec.preset == "yolo":
        t = presets.yolo.YOLO3DefaultValTransform(spec.size[1], spec.size[0], mean=spec.mean, std=spec.std)
        return t(src, np.zeros((0, 5), dtype=np.float32))[0].asnumpy()
    if spec.preset == "rcnn":
        t = presets.rcnn.FasterRCNNDefaultValTransform(spec.resize_short, spec.max_size, mean=spec.mean, std=spec.std)
        return t(src, np.zeros((0, 5), dtype=np.float32))[0].asnumpy()
    if spec.preset == "segmentation":
        return _mxnet_segmentation(img, spec, mx, gcv)
    if spec.preset == "pose":
        return _mxnet_pose(img, spec, mx, gcv)
    if spec.preset == "cifar":
        # gluoncv's CIFAR scripts: ToTensor + Normalize on 32x32 images; a photograph stands in for
        # a CIFAR image after an area resize (CIFAR images come at 32x32, so no resize is gluoncv's)
        import cv2
        small = mx.nd.array(cv2.resize(img, spec.size[::-1], interpolation=cv2.INTER_AREA), dtype="uint8")
        t = mx.gluon.data.vision.transforms
        return t.Compose([t.ToTensor(), t.Normalize(spec.mean, spec.std)])(small).asnumpy()
    raise ZooportError(f"variant 'mxnet' has no transform for preset {spec.preset!r}")


def _mxnet_segmentation(img: np.ndarray, spec: Preprocess, mx, gcv) -> np.ndarray:
    """gluoncv's segmentation val transform (its datasets decode and resize with PIL): short side to
    the crop size, bilinear, centre crop at rounded offsets; then ToTensor + Normalize."""
    from PIL import Image
    ds = object.__new__(gcv.data.segbase.SegmentationDataset)  # only the transform's state is needed
    ds.crop_size = spec.size[0]
    pil = Image.fromarray(img)
    out, _ = ds._val_sync_transform(pil, Image.new("L", pil.size))
    t = mx.gluon.data.vision.transforms
    return t.Compose([t.ToTensor(), t.Normalize(spec.mean, spec.std)])(out.astype("uint8")).asnumpy()


def _mxnet_pose(img: np.ndarray, spec: Preprocess, mx, gcv) -> np.ndarray:
    """gluoncv's detector-to-pose step on one person box centred in the photograph, sized so its
    1.25x upscale is the whole frame: crop, resize to the input size, ToTensor + Normalize."""
    h, w = img.shape[:2]
    box = [w / 2 - w / 2.5, h / 2 - h / 2.5, w / 2 + w / 2.5, h / 2 + h / 2.5]
    pose = gcv.data.transforms.pose
    up = pose.upscale_bbox_fn(box, img, scale=1.25)
    return pose.crop_resize_normalize(mx.nd.array(img, dtype="uint8"), [up], spec.size,
                                      mean=spec.mean, std=spec.std).asnumpy()[0]


VARIANTS: dict[str, Callable[[np.ndarray, Preprocess], np.ndarray]] = {"mxnet": _mxnet}


def preprocess(image: str | Path | np.ndarray, spec: Preprocess, variant: str = "mxnet") -> torch.Tensor:
    """One image -> float32 CHW tensor, as the model's source framework feeds it."""
    if variant not in VARIANTS:
        raise ZooportError(f"unknown preprocessing variant {variant!r} (available: {', '.join(VARIANTS)})")
    return torch.from_numpy(np.ascontiguousarray(VARIANTS[variant](_load(image), spec), dtype=np.float32))
