"""What every Detectron family shares: the input contract, weight records, notes."""
from __future__ import annotations

from ..registry import Preprocess
from ..sources import SourceWeights

CONFIGS: dict = {}  # registered name -> DetectronConfig (filled by the family files)
ZOO = "https://dl.fbaipublicfiles.com/detectron/"
PIXEL_MEANS = (102.9801, 115.9465, 122.7717)  # cfg.PIXEL_MEANS, BGR order, on 0-255 pixels

# Detectron's test input (blob_utils.get_image_blob): cv2 BGR decode, minus PIXEL_MEANS (std 1,
# no /255), one scale factor (short side 800, long side at most 1333) passed to cv2.resize with
# INTER_LINEAR, zero padding to the coarsest stride after the subtraction (the model pads).
# The BGR order is preprocessing: conv1 keeps the checkpoint's values.
DETECTRON_PREPROCESS = Preprocess("detectron", (800, 1333), "scale-within", resize_short=800, max_size=1333,
                                  interp="bilinear", crop="none", decoder="opencv", color="BGR", scale=1.0,
                                  mean=PIXEL_MEANS, std=(1.0, 1.0, 1.0))

NOTES = (
    "Parity without Caffe2 (it cannot be installed): every blob lands exactly (tests), Detectron's "
    "ops are tested against numpy implementations of their definitions, end-to-end outputs on "
    "photographs are checked for determinism and against the torchvision numerics.",
    "Detectron decodes R-CNN boxes in original-image pixels (RoIs / im_scale) with +1 widths; this "
    "model decodes in network-input pixels, so boxes mapped back differ by under (1 - 1/scale) px.",
    "Detectron's scale rule keeps 800 / short side unless round(scale * long) > 1333; the "
    "'scale-within' preset takes min(800 / short, 1333 / long): they differ only when scale * long "
    "falls in (1333, 1333.5].",
)


def detectron_weights(name: str, path: str) -> SourceWeights:
    """A Detectron model-zoo pickle (the zoo publishes md5 sums only: no sha1 is recorded; the
    manifest keeps the sha256 of the file read)."""
    return SourceWeights(name=name, sha1=None, url=ZOO + path, filename=f"{name}.pkl", archive="none")


def detectron_blob(bgr, short: int = 800, max_size: int = 1333):
    """Detectron's own test input (blob_utils.get_image_blob / prep_im_for_blob), exactly: float32
    BGR minus PIXEL_MEANS (float64, in place), then ONE cv2.resize of the float image by
    im_scale = short / min side, or max_size / max side if round(im_scale * max side) > max_size.
    Returns (CHW float32 tensor, im_scale). The registry's Preprocess record resizes the uint8
    image first (the shared pipeline's order), which differs by rounding (< 0.5 levels)."""
    import cv2
    import numpy as np
    import torch
    im = bgr.astype(np.float32, copy=True)
    im -= np.array(PIXEL_MEANS)
    lo, hi = min(im.shape[:2]), max(im.shape[:2])
    scale = float(short) / float(lo)
    if np.round(scale * hi) > max_size:
        scale = float(max_size) / float(hi)
    im = cv2.resize(im, None, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
    return torch.from_numpy(np.ascontiguousarray(im.transpose(2, 0, 1))), scale
