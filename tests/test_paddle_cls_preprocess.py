"""The PaddleClas eval preset (parity/preprocess.py "paddleclas"), without paddle: its geometry and
float arithmetic against PaddleClas's eval ops as its code states them (ResizeImage, CropImage,
NormalizeImage in ppcls/data/preprocess/ops/operators.py, ImageNet configs: resize_short 256,
crop 224, scale 1.0/255.0), and the "mxnet" variant (the source's own pipeline) resolving to it."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from converters.registry import paddleclas_eval

PADDLECLAS_EVAL = paddleclas_eval()
from converters.samples import sample_photos
from parity import preprocess as pp


def paddleclas_eval(rgb: np.ndarray) -> np.ndarray:
    """PaddleClas's eval transform ops on an RGB array, restated step by step (CHW float32)."""
    h, w = rgb.shape[:2]
    percent = float(256) / min(w, h)  # ResizeImage(resize_short=256), cv2 backend, INTER_LINEAR
    img = cv2.resize(rgb, (int(round(w * percent)), int(round(h * percent))), interpolation=cv2.INTER_LINEAR)
    top, left = (img.shape[0] - 224) // 2, (img.shape[1] - 224) // 2  # CropImage(224)
    img = img[top:top + 224, left:left + 224, :]
    mean = np.array([0.485, 0.456, 0.406]).reshape((1, 1, 3)).astype("float32")  # NormalizeImage, order ''
    std = np.array([0.229, 0.224, 0.225]).reshape((1, 1, 3)).astype("float32")
    img = (img.astype("float32") * np.float32(1.0 / 255.0) - mean) / std
    return img.transpose((2, 0, 1))  # ToCHWImage


@pytest.mark.parametrize("name,photo", sample_photos(), ids=[n for n, _ in sample_photos()])
def test_preset_equals_paddleclas_ops_bit_for_bit(name, photo):
    got = pp.preprocess(photo, "paddleclas", "cv2-exact")
    assert got.dtype == torch.float32 and tuple(got.shape) == (3, 224, 224)
    assert np.array_equal(got.numpy(), paddleclas_eval(photo)), name


def test_mxnet_variant_is_the_source_pipeline_for_paddle_presets():
    """For a Paddle preset "mxnet" (the source framework's own pipeline) is the cv2 pipeline itself."""
    _, photo = sample_photos()[0]
    for variant in ("mxnet", "cv2-exact"):
        x, meta = pp.preprocess_meta(photo, PADDLECLAS_EVAL, variant)
        assert np.array_equal(x.numpy(), paddleclas_eval(photo))
        assert meta.input_hw == (224, 224)
    assert np.array_equal(pp.pixels(photo, "paddleclas", "mxnet"), pp.pixels(photo, "paddleclas", "cv2-exact"))


@pytest.mark.parametrize("hw", [(427, 640), (512, 512), (300, 451), (257, 1000), (1000, 383)])
def test_short_side_sizes_round_each_side(hw):
    """Each side is int(round(side * 256 / short)) in Python floats; gluoncv's imagenet preset floors."""
    h, w = hw
    pct = 256.0 / min(h, w)
    plan = pp._plan(PADDLECLAS_EVAL, pp.Stages(), hw)
    assert plan.resize_hw == (int(round(h * pct)), int(round(w * pct)))
    assert plan.crop == ((plan.resize_hw[0] - 224) // 2, (plan.resize_hw[1] - 224) // 2, 224, 224)


def test_rounding_and_scale_differ_from_gluoncv_s_imagenet_preset():
    """Both differences are real: 640 * 256 / 427 = 383.7 rounds to 384 (floor: 383), and
    x * float32(1/255) differs from x / 255 in the last bit for some levels."""
    assert pp._plan(PADDLECLAS_EVAL, pp.Stages(), (427, 640)).resize_hw == (256, 384)
    assert pp._plan(pp.PRESETS["imagenet"], pp.Stages(), (427, 640)).resize_hw == (256, 383)
    levels = np.arange(256, dtype=np.uint8).reshape(16, 16, 1).repeat(3, axis=2)
    ours = pp.normalize(levels, PADDLECLAS_EVAL)
    gluon = pp.normalize(levels, pp.PRESETS["imagenet"])
    assert not torch.equal(ours, gluon) and torch.allclose(ours, gluon, rtol=0, atol=1e-6)
