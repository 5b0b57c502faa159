"""The ppdet and paddleseg presets against PaddleDetection's and PaddleSeg's own eval transforms,
run on the JPEG corpus: the network input must be identical bit for bit (both are cv2 code, so
nothing excuses a difference)."""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from converters.registry import paddleseg_eval, ppdet_eval
from parity.jpegs import build_corpus
from parity.preprocess import preprocess

pytestmark = [pytest.mark.oracle,
              pytest.mark.skipif(importlib.util.find_spec("ppdet") is None, reason="paddledet is not installed")]

CASES = {  # the v2.6.0 eval readers: YOLOv3 (stretch, bicubic), R-CNN (keep ratio, bicubic, pad 32)
    "yolov3": (ppdet_eval((608, 608), False), dict(target_size=[608, 608], keep_ratio=False, interp=2), 0),
    "rcnn": (ppdet_eval((800, 1333), True, pad_to=32), dict(target_size=[800, 1333], keep_ratio=True, interp=2), 32),
    "small": (ppdet_eval((320, 320), False), dict(target_size=[320, 320], keep_ratio=False, interp=2), 0),
}


def _ppdet_input(path, resize_kw: dict, pad: int) -> np.ndarray:
    from converters.frameworks import import_ppdet
    import_ppdet()
    from ppdet.data.transform import batch_operators as B
    from ppdet.data.transform import operators as O
    sample = {"im_file": str(path)}
    for op in (O.Decode(), O.Resize(**resize_kw), O.NormalizeImage(is_scale=True, mean=[0.485, 0.456, 0.406],
                                                                   std=[0.229, 0.224, 0.225]), O.Permute()):
        sample = op(sample)
    return B.PadBatch(pad_to_stride=pad)([sample])[0]["image"]


@pytest.mark.parametrize("case", sorted(CASES))
def test_ppdet_preset_equals_ppdet_transforms(case, tmp_path):
    record, resize_kw, pad = CASES[case]
    paths = build_corpus(tmp_path)[:6]
    for path in paths:
        want = _ppdet_input(path, resize_kw, pad)
        got = preprocess(path, record, "mxnet").numpy()  # "mxnet" = the source's own pipeline
        assert got.shape == want.shape, path.name
        assert np.array_equal(got, want), f"{path.name}: max diff {np.abs(got - want).max()}"


@pytest.mark.parametrize("color", ["RGB", "BGR"])
def test_paddleseg_preset_equals_paddleseg_normalize(color, tmp_path):
    """PaddleSeg 2.x's Compose (to_rgb) + Normalize; 0.x / PaddleX 1.x feed cv2's BGR. Images are
    stretched to the preset size first (the stand-in for Cityscapes' full frames), by us for both."""
    import cv2

    from converters.frameworks import import_paddleseg
    import_paddleseg()
    from paddleseg import transforms as T
    record = paddleseg_eval((512, 512), color)
    for path in build_corpus(tmp_path)[:4]:
        bgr = cv2.resize(cv2.imread(str(path)), (512, 512), interpolation=cv2.INTER_LINEAR)
        sized = tmp_path / f"sized-{path.stem}.png"  # lossless: PaddleSeg reads it back with cv2
        cv2.imwrite(str(sized), bgr)
        want = T.Compose([T.Normalize()], to_rgb=color == "RGB")({"img": str(sized)})["img"]
        got = preprocess(str(sized), record, "mxnet").numpy()
        assert np.array_equal(got, want), path.name
