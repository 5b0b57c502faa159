"""Preprocessing pipelines: a model's ``Preprocess`` record (what the source did, as data) executed
by a chosen set of ``Stages`` (which library does each step: the choices ports get wrong).

Variants:
- ``mxnet``: gluoncv's own eval transforms on mx.nd arrays, paths decoded by mx.image.imread
  (libmxnet's OpenCV), or by Pillow where the record says gluoncv's dataset does (segmentation):
  the reference the published metrics were measured with.
- ``cv2-exact``: the same pipeline in cv2/numpy/torch, no MXNet; equal to ``mxnet`` bit for bit
  (parity/tests/test_preprocess_variants.py). Where gluoncv's own pipeline is Pillow's
  (segmentation) it uses Pillow: ``Stages()`` always means the source's choices.
- ``pil``: the typical port: Pillow decode and antialiased resize, rounded crop offsets.
- ``torchvision``: Pillow decode, torchvision.transforms.v2 resize (antialias=True) on uint8 tensors,
  rounded crop offsets (v2.CenterCrop's rule).
Every variant ends with the same float32 tail, in MXNet's operation order: x / 255, then
(x - mean) / std per channel (multiplying by reciprocals differs in the last bit)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch

from converters.errors import ZooportError
from converters.registry import Preprocess, cifar_eval, imagenet_eval, paddleclas_eval


class PreprocessError(ZooportError):
    hint = "pass an image path, or an HxWx3 uint8 RGB array, and a known preset and variant"


@dataclass(frozen=True)
class Stages:
    """How a pipeline executes a Preprocess record. Defaults are mx.image's choices; a field left at
    its default follows the record's own source where that differs (segmentation: Pillow decode and
    resize, rounded crop), so ``Stages()`` is always the source pipeline."""

    decoder: str = "opencv"  # "opencv" (cv2 = libmxnet's OpenCV) | "pil"
    resize: str = "opencv"   # "opencv" (the record's interpolation as libmxnet's OpenCV 3.4.2 computes it)
                             #  | "pil" (Pillow, antialiased) | "torchvision" (v2 on uint8 tensors, antialias)
    crop: str = "floor"      # centre-crop offsets: "floor" (mx.image) | "round" (torchvision, PIL ports)
    color: str = "RGB"       # "RGB" | "BGR" (a port feeding OpenCV's channel order unchanged)

    def __post_init__(self):
        for f, allowed in CHOICES.items():
            if getattr(self, f) not in allowed:
                raise PreprocessError(f"Stages.{f}={getattr(self, f)!r} (choose from {', '.join(allowed)})")


CHOICES = {"decoder": ("opencv", "pil"), "resize": ("opencv", "pil", "torchvision"),
           "crop": ("floor", "round"), "color": ("RGB", "BGR")}
FIELDS = tuple(CHOICES)  # ladder order

VARIANTS: dict[str, Stages | None] = {
    "mxnet": None,  # gluoncv's own transforms
    "cv2-exact": Stages(),
    "pil": Stages("pil", "pil", "round"),
    "torchvision": Stages("pil", "torchvision", "round"),
}

# gluoncv's eval presets with their default sizes (the registry's family files hold each model's own)
PRESETS: dict[str, Preprocess] = {
    "imagenet": imagenet_eval(224),
    "cifar": cifar_eval(),
    "ssd": Preprocess("ssd", (512, 512), "exact", interp="mxnet-9", crop="none"),
    "yolo": Preprocess("yolo", (416, 416), "exact", interp="mxnet-9", crop="none"),
    "rcnn": Preprocess("rcnn", (600, 1000), "short-within", resize_short=600, max_size=1000, crop="none"),
    "segmentation": Preprocess("segmentation", (480, 480), "short-side", resize_short=480,
                               interp="pil-bilinear", crop="center-round", decoder="pil"),
    "pose": Preprocess("pose", (256, 192), "exact", interp="bicubic", crop="none"),
    "paddleclas": paddleclas_eval(),
}
# presets whose source pipeline is cv2 code itself (PaddleClas): their "mxnet" variant, "the
# source framework's own pipeline", is cv2-exact
CV2_SOURCES = frozenset({"paddleclas", "ppdet", "paddleseg", "detectron"})

# ppdet's NormalizeImage, paddleseg's normalize and Detectron's im -= PIXEL_MEANS work on float64 arrays in place:
# each step is computed in float64 and rounded back to float32
F64_MEAN_STD = frozenset({"ppdet", "paddleseg", "detectron"})

POSE_UPSCALE = 1.25  # gluoncv's detector_to_simple_pose default


@dataclass(frozen=True)
class Meta:
    """Where the network input sits in the original image. Resize-then-crop presets: ``crop`` is
    (y0, x0) in the resized image. Pose crops first: ``crop`` is (y0, x0) in the original and
    ``resized_hw`` the network input. ``affine`` = (sx, sy, tx, ty): input = original * s + t, in
    pixel-corner coordinates."""

    orig_hw: tuple[int, int]
    resized_hw: tuple[int, int]
    crop: tuple[int, int]
    input_hw: tuple[int, int]
    affine: tuple[float, float, float, float]
    box: tuple[float, float, float, float] | None = None  # pose: the upscaled person box (x0, y0, x1, y1)

    def to_input(self, xy) -> np.ndarray:
        sx, sy, tx, ty = self.affine
        return np.asarray(xy, dtype=np.float64) * (sx, sy) + (tx, ty)

    def to_original(self, xy) -> np.ndarray:
        sx, sy, tx, ty = self.affine
        return (np.asarray(xy, dtype=np.float64) - (tx, ty)) / (sx, sy)


@dataclass(frozen=True)
class _Plan:
    """The geometry of one image under one record and stages."""

    resize_hw: tuple[int, int] | None  # None: no resize
    crop: tuple[int, int, int, int] | None  # (y0, x0, h, w)
    crop_first: bool = False  # pose
    box: tuple[float, float, float, float] | None = None
    factors: tuple[float, float] | None = None  # ppdet: cv2.resize(fx, fy) instead of a target size


# ----------------------------------------------------------------------------- names -> objects

def get_preset(preset: str | Preprocess) -> Preprocess:
    if isinstance(preset, Preprocess):
        return preset
    if preset not in PRESETS:
        raise PreprocessError(f"unknown preprocessing preset {preset!r} (available: {', '.join(PRESETS)})")
    return PRESETS[preset]


def get_variant(variant: str | Stages | None) -> Stages | None:
    if variant is None or isinstance(variant, Stages):
        return variant
    if variant not in VARIANTS:
        raise PreprocessError(f"unknown preprocessing variant {variant!r} (available: {', '.join(VARIANTS)})")
    return VARIANTS[variant]


def variant_name(variant: str | Stages | None) -> str:
    """A variant's name; other Stages by their fields that differ from cv2-exact ("crop=round")."""
    stages = get_variant(variant)
    for name, v in VARIANTS.items():
        if v == stages:
            return name
    return ",".join(f"{f}={getattr(stages, f)}" for f in FIELDS if getattr(stages, f) != getattr(Stages(), f))


def source_stages(record: Preprocess) -> Stages:
    """The stage choices of the record's own source pipeline."""
    return Stages(decoder=record.decoder, resize="pil" if record.interp.startswith("pil-") else "opencv",
                  crop="round" if record.crop == "center-round" else "floor", color=record.color)


def resolve(stages: Stages, record: Preprocess) -> Stages:
    """Fields at their default take the record's source choice; the others are the port's own."""
    src, default = source_stages(record), Stages()
    return Stages(**{f: getattr(src if getattr(stages, f) == getattr(default, f) else stages, f) for f in FIELDS})


def ladder(variant: str | Stages, preset: str | Preprocess | None = None) -> list[tuple[str, Stages]]:
    """From cv2-exact to ``variant`` one field at a time (decoder, resize, crop, color):
    [(field, stages after the step)]. With ``preset``, steps that change nothing for that record
    (its source already made the port's choice) are left out. ``mxnet`` equals cv2-exact: []."""
    target = get_variant(variant)
    if target is None:
        return []
    record = get_preset(preset) if preset is not None else None
    same = (lambda a, b: a == b) if record is None else (lambda a, b: resolve(a, record) == resolve(b, record))
    steps, current = [], Stages()
    for f in FIELDS:
        step = dataclasses.replace(current, **{f: getattr(target, f)})
        if step != current and not same(step, current):
            steps.append((f, step))
        current = step
    return steps


# -------------------------------------------------------------------------------------- decode

def _check_array(image: np.ndarray) -> np.ndarray:
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise PreprocessError(f"image array must be HxWx3 uint8 RGB, got {image.dtype} {image.shape}")
    return image


def decode(path: str | Path, decoder: str) -> np.ndarray:
    """HxWx3 uint8 RGB, as stored (EXIF orientation not applied, as libmxnet and Pillow do).
    "opencv": cv2 (libmxnet's decoder); "pil": Pillow's convert("RGB")."""
    path = Path(path)
    if not path.is_file():
        raise PreprocessError(f"{path}: no such image file")
    if decoder == "opencv":
        import cv2
        # libmxnet's OpenCV 3.4.2 ignores EXIF orientation; cv2 4.x's imread would rotate the image
        arr = cv2.imread(str(path), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
        if arr is None:
            raise PreprocessError(f"{path}: not an image OpenCV can decode")
        return np.ascontiguousarray(arr[..., ::-1])
    from PIL import Image, UnidentifiedImageError
    try:
        with Image.open(path) as im:
            return np.array(im.convert("RGB"))
    except (UnidentifiedImageError, OSError) as exc:
        raise PreprocessError(f"{path}: not an image Pillow can decode ({exc})") from exc


def _load(image, decoder: str) -> np.ndarray:
    if isinstance(image, np.ndarray):
        return _check_array(image)
    if isinstance(image, (str, Path)):
        return decode(image, decoder)
    raise PreprocessError(f"image must be a path or an HxWx3 uint8 array, got {type(image).__name__}")


# ------------------------------------------------------------------------------------ geometry

def _offset(extent: int, size: int, rounding: str) -> int:
    # mx.image.center_crop: int((w - new_w) / 2); torchvision / gluoncv segmentation: int(round(...))
    # (Python's round: half to even)
    return (extent - size) // 2 if rounding == "floor" else int(round((extent - size) / 2.0))


def upscale_box(box: Sequence[float], hw: tuple[int, int], scale: float = POSE_UPSCALE) -> tuple[float, ...]:
    """gluoncv's upscale_bbox_fn, in its float operation order (the int() of the result decides the crop)."""
    x0, y0, x1, y1 = (float(v) for v in box)
    hw_, hh = (x1 - x0) / 2, (y1 - y0) / 2  # half width, half height
    cx, cy = x0 + hw_, y0 + hh
    return (max(cx - hw_ * scale, 0), max(cy - hh * scale, 0),
            min(cx + hw_ * scale, hw[1]), min(cy + hh * scale, hw[0]))


def default_pose_box(hw: tuple[int, int]) -> tuple[float, float, float, float]:
    """A person box centred in the photograph whose 1.25x upscale is the whole frame."""
    h, w = hw
    return (w / 2 - w / 2.5, h / 2 - h / 2.5, w / 2 + w / 2.5, h / 2 + h / 2.5)


def _plan(record: Preprocess, stages: Stages, hw: tuple[int, int], box=None) -> _Plan:
    h, w = hw
    H, W = record.size
    if record.preset == "pose":
        up = upscale_box(box if box is not None else default_pose_box(hw), hw)
        cut = (lambda v: int(v)) if stages.crop == "floor" else (lambda v: int(round(v)))
        x0, y0 = max(cut(up[0]), 0), max(cut(up[1]), 0)  # crop_resize_normalize's clamps
        x1, y1 = min(cut(up[2]), w), min(cut(up[3]), h)
        if x1 <= x0 or y1 <= y0:
            raise PreprocessError(f"pose box {tuple(box or ())} leaves nothing of a {h}x{w} image")
        return _Plan((H, W), (y0, x0, y1 - y0, x1 - x0), crop_first=True, box=up)
    if record.resize == "short-side":
        short = record.resize_short
        if record.resize_rounding == "round":  # PaddleClas ResizeImage, in its float arithmetic
            percent = float(short) / min(w, h)
            nh, nw = int(round(h * percent)), int(round(w * percent))
        else:
            nh, nw = (short * h // w, short) if h > w else (short, short * w // h)  # integer floor, as mx.image
        if nh < H or nw < W:
            raise PreprocessError(f"{record.preset}: short side {short} is smaller than the crop {record.size}")
        if record.crop == "none":
            return _Plan((nh, nw), None)
        return _Plan((nh, nw), (_offset(nh, H, stages.crop), _offset(nw, W, stages.crop), H, W))
    if record.resize == "exact" and record.preset == "ppdet":  # factors, as ppdet's Resize passes them
        fx, fy = W / w, H / h
        return _Plan((_cv_round(h * fy), _cv_round(w * fx)), None, factors=(fx, fy))
    if record.resize == "exact":
        return _Plan((H, W), None)
    if record.resize == "scale-within":  # ppdet Resize(keep_ratio=True): one factor, cv2 rounds sizes
        f = min(record.resize_short / min(h, w), record.max_size / max(h, w))
        return _Plan((_cv_round(h * f), _cv_round(w * f)), None, factors=(f, f))
    if record.resize == "short-within":  # gluoncv's resize_short_within, mult_base 1: np.round sizes
        lo, hi = min(h, w), max(h, w)
        scale = float(record.resize_short) / float(lo)
        if np.round(scale * hi) > record.max_size:
            scale = float(np.floor(record.max_size)) / float(hi)
        return _Plan((int(np.round(h * scale)), int(np.round(w * scale))), None)
    if record.resize == "none":  # CIFAR: inputs are 32x32; other images get a stand-in resize
        return _Plan(None if (h, w) == (H, W) else (H, W), None)
    raise PreprocessError(f"{record.preset}: unknown resize rule {record.resize!r}")


def _cv_round(v: float) -> int:
    """OpenCV's cvRound (saturate_cast<int>): round half to even, as cv2.resize sizes by factors."""
    return int(np.rint(v))


def _meta(plan: _Plan, hw: tuple[int, int]) -> Meta:
    h, w = hw
    if plan.crop_first:
        y0, x0, ch, cw = plan.crop
        sy, sx = plan.resize_hw[0] / ch, plan.resize_hw[1] / cw
        return Meta(hw, plan.resize_hw, (y0, x0), plan.resize_hw, (sx, sy, -x0 * sx, -y0 * sy), plan.box)
    rh, rw = plan.resize_hw or hw
    y0, x0, ih, iw = plan.crop or (0, 0, rh, rw)
    sx, sy = plan.factors or (rw / w, rh / h)  # ppdet maps coordinates by its factors, not the sizes
    return Meta(hw, (rh, rw), (y0, x0), (ih, iw), (sx, sy, -x0, -y0))


# ------------------------------------------------------------------------------------- resizing

_CV2_INTERP = {"nearest": 0, "bilinear": 1, "bicubic": 2, "area": 3, "lanczos": 4}  # OpenCV = MXNet codes


def cv2_interp(interp: str, old_hw: tuple[int, int], new_hw: tuple[int, int]) -> int:
    """The OpenCV code mx.image uses; "mxnet-9": bicubic if both sides grow, area if both shrink,
    else bilinear (mx.image's _get_interp_method)."""
    base = interp.removeprefix("pil-")
    if base == "mxnet-9":
        (oh, ow), (nh, nw) = old_hw, new_hw
        return 2 if nh > oh and nw > ow else 3 if nh < oh and nw < ow else 1
    if base not in _CV2_INTERP:
        raise PreprocessError(f"unknown interpolation {interp!r}")
    return _CV2_INTERP[base]


def _resize(img: np.ndarray, hw: tuple[int, int], record: Preprocess, how: str) -> np.ndarray:
    base = record.interp.removeprefix("pil-")
    if how == "opencv":
        import cv2
        # a photo standing in for a CIFAR image: area (the stand-in, not a gluoncv step)
        code = 3 if record.resize == "none" else cv2_interp(record.interp, img.shape[:2], hw)
        if code == 2:
            return cubic_opencv342(img, hw)
        return cv2.resize(img, hw[::-1], interpolation=code)
    if how == "pil":
        from PIL import Image
        # ports use Pillow's bilinear unless the record says bicubic (or nearest)
        f = {"bicubic": Image.BICUBIC, "nearest": Image.NEAREST}.get(base, Image.BILINEAR)
        return np.array(Image.fromarray(img).resize(hw[::-1], resample=f))
    from torchvision.transforms.v2 import InterpolationMode
    from torchvision.transforms.v2 import functional as F
    mode = {"bicubic": InterpolationMode.BICUBIC, "nearest": InterpolationMode.NEAREST}.get(
        base, InterpolationMode.BILINEAR)
    t = F.resize(torch.from_numpy(np.require(img, requirements=["C", "W"])).permute(2, 0, 1), list(hw),
                 interpolation=mode, antialias=True)
    return np.ascontiguousarray(t.permute(1, 2, 0).numpy())


def _cubic_taps(n_out: int, n_in: int) -> tuple[np.ndarray, np.ndarray]:
    """Source indices (border replicated) and int16 weights (x2048) of each output position."""
    f = ((np.arange(n_out) + 0.5) * (1.0 / (n_out / n_in)) - 0.5).astype(np.float32)  # double, then float
    start = np.floor(f)
    x, one, a = (f - start).astype(np.float32), np.float32(1), np.float32(-0.75)
    x1, y = x + one, one - x
    c0 = ((a * x1 - np.float32(5) * a) * x1 + np.float32(8) * a) * x1 - np.float32(4) * a
    c1 = ((a + np.float32(2)) * x - (a + np.float32(3))) * x * x + one
    c2 = ((a + np.float32(2)) * y - (a + np.float32(3))) * y * y + one
    coef = np.stack([c0, c1, c2, one - c0 - c1 - c2], 1)
    idx = np.clip(start.astype(np.int64)[:, None] + np.arange(-1, 3), 0, n_in - 1)
    return idx, np.rint(coef * np.float32(2048)).astype(np.int64)  # saturate_cast<short>: half to even


def cubic_opencv342(img: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """cv::resize INTER_CUBIC on uint8 as libmxnet's OpenCV 3.4.2 computes it. Own code because
    cv2 4.x changed this kernel (+-1 level on ~3% of the values of every bicubic resize measured):
    integer horizontal pass; vertical pass in float32 ((s0*b0 + s1*b1) + s2*b2) + s3*b3 rounded
    half to even over 8-value SSE2 chunks of each row, the row's remainder in fixed point."""
    (h, w), c = hw, img.shape[2]
    xi, xa = _cubic_taps(w, img.shape[1])
    yi, ya = _cubic_taps(h, img.shape[0])
    src = img.astype(np.int64)
    rows = sum(src[:, xi[:, k], :] * xa[None, :, k, None] for k in range(4)).reshape(img.shape[0], w * c)[yi]
    beta = (ya.astype(np.float32) * np.float32(1 / 2048 ** 2))[:, :, None]
    fl = rows.astype(np.float32)  # (h, 4, w*c); |values| < 2^24: exact
    s = fl[:, 0] * beta[:, 0]
    for k in (1, 2, 3):
        s = s + fl[:, k] * beta[:, k]
    out = np.clip(np.rint(s), 0, 255).astype(np.uint8)
    vec = (w * c) // 8 * 8
    fixed = ((rows[:, :, vec:] * ya[:, :, None]).sum(1) + (1 << 21)) >> 22
    out[:, vec:] = np.clip(fixed, 0, 255)
    return out.reshape(h, w, c)


def _cut(img: np.ndarray, crop) -> np.ndarray:
    y0, x0, h, w = crop
    return img[y0:y0 + h, x0:x0 + w]


def _execute(img: np.ndarray, plan: _Plan, record: Preprocess, stages: Stages) -> np.ndarray:
    if plan.crop_first:
        img = _cut(img, plan.crop)
    if plan.factors is not None and stages.resize == "opencv":
        import cv2  # the installed OpenCV, called as ppdet calls it (factors, no target size)
        img = cv2.resize(np.ascontiguousarray(img), None, None, fx=plan.factors[0], fy=plan.factors[1],
                         interpolation=cv2_interp(record.interp, img.shape[:2], plan.resize_hw))
    elif plan.resize_hw is not None:
        img = _resize(np.ascontiguousarray(img), plan.resize_hw, record, stages.resize)
    if plan.crop is not None and not plan.crop_first:
        img = _cut(img, plan.crop)
    if stages.color == "BGR":
        img = img[..., ::-1]
    return np.ascontiguousarray(img)


def normalize(pixels: np.ndarray, record: Preprocess) -> torch.Tensor:
    """uint8 HxWx3 -> float32 CHW: x * scale, then (x - mean) / std, in MXNet's float32 order."""
    x = torch.from_numpy(np.require(pixels, requirements=["C", "W"])).permute(2, 0, 1).to(torch.float32)
    inv = 1 / record.scale
    x = x / float(round(inv)) if abs(inv - round(inv)) < 1e-9 else x * record.scale  # ToTensor divides
    if record.preset in F64_MEAN_STD:  # numpy in-place ops on float32 with float64 mean/std arrays
        mean64 = torch.tensor(record.mean, dtype=torch.float64).view(3, 1, 1)
        std64 = torch.tensor(record.std, dtype=torch.float64).view(3, 1, 1)
        x = ((x.double() - mean64).float().double() / std64).float()
    else:
        mean = torch.tensor(record.mean, dtype=torch.float32).view(3, 1, 1)
        std = torch.tensor(record.std, dtype=torch.float32).view(3, 1, 1)
        x = (x - mean) / std
    if record.pad_to > 1:  # ppdet's PadBatch: zeros after normalisation, bottom/right
        h, w = x.shape[-2:]
        m = record.pad_to
        x = torch.nn.functional.pad(x, (0, -w % m, 0, -h % m))
    return x.contiguous()


# ------------------------------------------------------------------------- MXNet: the reference

def _mx_src(image, record: Preprocess, mx):
    """mx.nd uint8 HxWx3 RGB: paths by mx.image.imread, or Pillow where gluoncv's dataset uses it."""
    if isinstance(image, (str, Path)):
        if record.decoder == "pil":
            return mx.nd.array(decode(image, "pil"), dtype="uint8")
        if not Path(image).is_file():
            raise PreprocessError(f"{image}: no such image file")
        try:
            return mx.image.imread(str(image))
        except mx.base.MXNetError as exc:
            raise PreprocessError(f"{image}: not an image libmxnet can decode") from exc
    return mx.nd.array(_load(image, "opencv"), dtype="uint8")


def _mxnet_pixels(src, record: Preprocess, box, mx, gcv) -> np.ndarray:
    """The uint8 network input, made by the geometric half of gluoncv's own transform."""
    T, timage = mx.gluon.data.vision.transforms, gcv.data.transforms.image
    H, W = record.size
    if record.preset == "imagenet":
        return T.CenterCrop((W, H))(T.Resize(record.resize_short, keep_ratio=True)(src)).asnumpy()
    if record.preset in ("ssd", "yolo"):
        return timage.imresize(src, W, H, interp=9).asnumpy()
    if record.preset == "rcnn":
        return timage.resize_short_within(src, record.resize_short, record.max_size, interp=1).asnumpy()
    if record.preset == "segmentation":
        return _mxnet_segmentation(src, record, gcv)
    if record.preset == "pose":
        y0, x0, h, w = _plan(record, source_stages(record), src.shape[:2], box).crop
        return mx.image.fixed_crop(src, x0, y0, w, h, (W, H)).asnumpy()  # what crop_resize_normalize calls
    if record.preset == "cifar":
        return _execute(src.asnumpy(), _plan(record, Stages(), src.shape[:2]), record, Stages())  # the stand-in
    raise PreprocessError(f"variant 'mxnet' has no transform for preset {record.preset!r}")


def _mxnet_segmentation(src, record: Preprocess, gcv) -> np.ndarray:
    """SegmentationDataset._val_sync_transform on a Pillow image (its datasets work in Pillow)."""
    from PIL import Image
    ds = object.__new__(gcv.data.segbase.SegmentationDataset)  # only the transform's state is needed
    ds.crop_size = record.size[0]
    pil = Image.fromarray(src.asnumpy())
    out, _ = ds._val_sync_transform(pil, Image.new("L", pil.size))
    return out.asnumpy().astype(np.uint8)


def _mxnet_tensor(src, record: Preprocess, box, mx, gcv) -> np.ndarray:
    """gluoncv's own eval transform, end to end."""
    presets, H, W = gcv.data.transforms.presets, *record.size
    no_boxes = np.zeros((0, 5), dtype=np.float32)
    if record.preset == "imagenet":
        return presets.imagenet.transform_eval(src, resize_short=record.resize_short, crop_size=(W, H),
                                               mean=record.mean, std=record.std).asnumpy()[0]
    if record.preset == "ssd":
        return presets.ssd.SSDDefaultValTransform(W, H, mean=record.mean, std=record.std)(src, no_boxes)[0].asnumpy()
    if record.preset == "yolo":
        return presets.yolo.YOLO3DefaultValTransform(W, H, record.mean, record.std)(src, no_boxes)[0].asnumpy()
    if record.preset == "rcnn":
        t = presets.rcnn.FasterRCNNDefaultValTransform(record.resize_short, record.max_size, record.mean, record.std)
        return t(src, no_boxes)[0].asnumpy()
    if record.preset == "pose":
        up = upscale_box(box if box is not None else default_pose_box(src.shape[:2]), src.shape[:2])
        pose = gcv.data.transforms.pose
        return pose.crop_resize_normalize(src, [list(up)], (H, W), mean=record.mean, std=record.std).asnumpy()[0]
    # segmentation (the val script's ToTensor + Normalize after the dataset's transform) and CIFAR
    T = mx.gluon.data.vision.transforms
    pixels = mx.nd.array(_mxnet_pixels(src, record, box, mx, gcv), dtype="uint8")
    return T.Compose([T.ToTensor(), T.Normalize(record.mean, record.std)])(pixels).asnumpy()


def _mxnet(image, record: Preprocess, box, want: str) -> tuple[np.ndarray, tuple[int, int]]:
    from converters.frameworks import import_gluoncv, import_mxnet
    mx, gcv = import_mxnet(), import_gluoncv()
    src = _mx_src(image, record, mx)
    run = _mxnet_pixels if want == "pixels" else _mxnet_tensor
    return run(src, record, box, mx, gcv), tuple(src.shape[:2])


# ------------------------------------------------------------------------------------------ API

def _source_stages_for(record: Preprocess, variant) -> Stages | None:
    """The variant's stages; None only where the reference is gluoncv's own MXNet transform."""
    stages = get_variant(variant)
    return Stages() if stages is None and record.preset in CV2_SOURCES else stages


def _run(image, preset, variant, box, want: str):
    record = get_preset(preset)
    stages = _source_stages_for(record, variant)
    if stages is None:
        out, hw = _mxnet(image, record, box, want)
        return out, _meta(_plan(record, source_stages(record), hw, box), hw)
    stages = resolve(stages, record)
    img = _load(image, stages.decoder)
    plan = _plan(record, stages, img.shape[:2], box)
    return _execute(img, plan, record, stages), _meta(plan, img.shape[:2])


def pixels(image, preset: str | Preprocess = "imagenet", variant: str | Stages = "cv2-exact",
           *, box: Sequence[float] | None = None) -> np.ndarray:
    """The uint8 HxWx3 network-input image, before scaling and mean/std."""
    return _run(image, preset, variant, box, "pixels")[0]


def preprocess_meta(image, preset: str | Preprocess = "imagenet", variant: str | Stages = "cv2-exact",
                    *, box: Sequence[float] | None = None) -> tuple[torch.Tensor, Meta]:
    """``preprocess`` plus where the input sits in the original image. ``box``: pose only, the
    person box (x0, y0, x1, y1) before gluoncv's 1.25x upscale (default: a centred stand-in)."""
    record = get_preset(preset)
    reference = _source_stages_for(record, variant) is None
    out, meta = _run(image, record, variant, box, "tensor" if reference else "pixels")
    x = torch.from_numpy(np.ascontiguousarray(out, dtype=np.float32)) if reference else normalize(out, record)
    return x, meta


def preprocess(image, preset: str | Preprocess = "imagenet", variant: str | Stages = "cv2-exact",
               *, box: Sequence[float] | None = None) -> torch.Tensor:
    """One image (path, or HxWx3 uint8 RGB array) -> float32 CHW network input."""
    return preprocess_meta(image, preset, variant, box=box)[0]


def _named(images: Iterable) -> list[tuple[str, object]]:
    """(name, image) pairs from paths, arrays or (name, image) pairs."""
    return [(str(item[0]), item[1]) if isinstance(item, tuple) else
            (Path(item).name if isinstance(item, (str, Path)) else f"image{i}", item)
            for i, item in enumerate(images)]


def _levels(got: np.ndarray, ref: np.ndarray) -> np.ndarray:
    return np.abs(got.astype(np.int16) - ref.astype(np.int16))


def pixel_differences(images: Iterable, preset: str | Preprocess = "imagenet",
                      variants: Sequence[str | Stages] = ("cv2-exact", "pil", "torchvision"),
                      against: str | Stages = "mxnet") -> dict:
    """Per variant (keyed by its name), how its uint8 network input differs from ``against``'s, in
    levels: mean and max |difference| over all values of same-shape images, the fraction of values
    that differ, how many images are identical, which came out at another shape, and per image."""
    named = _named(images)
    refs = [pixels(img, preset, against) for _, img in named]
    out = {}
    for v in variants:
        diffs, shapes, per_image = [], [], []
        for (n, img), ref in zip(named, refs):
            got = pixels(img, preset, v)
            if got.shape != ref.shape:
                shapes.append(n)
                continue
            d = _levels(got, ref)
            diffs.append(d.ravel())
            per_image.append({"image": n, "mean_abs": float(d.mean()), "max_abs": int(d.max()),
                              "differing": float((d > 0).mean())})
        d = np.concatenate(diffs) if diffs else np.zeros(0, np.int16)
        out[variant_name(v)] = {
            "images": len(named), "exact_images": sum(r["max_abs"] == 0 for r in per_image),
            "shape_differs": shapes, "mean_abs": float(d.mean()) if d.size else 0.0,
            "max_abs": int(d.max()) if d.size else 0, "differing": float((d > 0).mean()) if d.size else 0.0,
            "per_image": per_image}
    return out
