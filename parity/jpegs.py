"""A corpus of real JPEG files for preprocessing parity: scikit-image's photographs (shipped in its
wheel) re-encoded by Pillow with the encoder settings real datasets mix: chroma subsampling
4:4:4 / 4:2:2 / 4:2:0, baseline and progressive, grayscale and Adobe CMYK, an EXIF orientation
tag (as phone photos carry), and sizes from 17x23 to 1411x1411, odd, portrait, very wide, and
sizes that make each resize rule take each branch (SSD/YOLO interp 9: both sides grow, both
shrink, one of each; R-CNN: the max-size cap).

Deterministic: the same Pillow (libjpeg-turbo) writes the same bytes on every build."""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from converters.errors import ZooportError

SUBSAMPLING = {"4:4:4": 0, "4:2:2": 1, "4:2:0": 2}  # Pillow's codes


class CorpusError(ZooportError):
    hint = "pass a writable directory"


@dataclass(frozen=True)
class JpegCase:
    name: str
    photo: str  # scikit-image data function
    crop: tuple[int, int, int, int] | None = None  # (y0, x0, h, w) of the photograph
    shrink: tuple[int, int] | None = None  # (h, w) after the crop: Pillow LANCZOS, for small images
    mode: str = "RGB"  # "RGB" | "L" | "CMYK"
    subsampling: str = "4:2:0"
    progressive: bool = False
    quality: int = 90
    orientation: int = 1  # EXIF orientation tag (6: "rotate 90 CW to display"); 1 writes no EXIF


CASES: tuple[JpegCase, ...] = (
    JpegCase("astronaut_444", "astronaut", subsampling="4:4:4", quality=95),          # 512x512: SSD-512 unchanged
    JpegCase("coffee_420", "coffee"),                                                 # 400x600
    JpegCase("chelsea_422_prog", "chelsea", subsampling="4:2:2", progressive=True),   # 300x451
    JpegCase("rocket_420_prog", "rocket", progressive=True, quality=85),              # 427x640
    JpegCase("motorcycle_444", "stereo_motorcycle", subsampling="4:4:4"),             # 500x741
    JpegCase("camera_gray", "camera", mode="L"),                                      # 512x512 grayscale
    JpegCase("cat_odd_420", "cat", crop=(0, 1, 299, 449)),                            # odd both sides
    JpegCase("hubble_420_q80", "hubble_deep_field", quality=80),                      # 872x1000
    JpegCase("ihc_odd_422_prog", "immunohistochemistry", crop=(100, 0, 333, 511), subsampling="4:2:2",
             progressive=True),
    JpegCase("retina_420", "retina"),                                                 # 1411x1411
    JpegCase("colorwheel_444_q100", "colorwheel", subsampling="4:4:4", quality=100),  # 370x371
    JpegCase("coins_gray_prog", "coins", mode="L", progressive=True),                 # 303x384
    JpegCase("moon_gray_odd", "moon", crop=(100, 120, 257, 255), mode="L"),           # odd, near-square
    JpegCase("page_gray_wide", "page", mode="L"),                                     # 191x384
    JpegCase("text_gray_very_wide", "text", mode="L"),                                # 172x448: R-CNN max-size cap
    JpegCase("astronaut_cmyk", "astronaut", mode="CMYK"),
    JpegCase("coffee_cmyk_portrait", "coffee", crop=(50, 200, 301, 203), mode="CMYK", progressive=True),
    JpegCase("chelsea_small_420", "chelsea", shrink=(37, 55)),                        # every side grows
    JpegCase("rocket_tiny_444", "rocket", shrink=(17, 23), subsampling="4:4:4"),
    JpegCase("microaneurysms_gray", "microaneurysms", mode="L"),                      # 102x102
    JpegCase("motorcycle_tall_422", "stereo_motorcycle", crop=(0, 300, 500, 257), subsampling="4:2:2"),
    JpegCase("cell_gray_tall", "cell", mode="L"),                                     # 660x550
    JpegCase("hubble_narrow_420", "hubble_deep_field", crop=(100, 400, 601, 211)),    # one side grows
    JpegCase("coffee_224_444_prog", "coffee", crop=(80, 190, 224, 224), subsampling="4:4:4",
             progressive=True),                                                       # ImageNet: short side 224 -> 256
    JpegCase("ihc_small_422_prog", "immunohistochemistry", shrink=(63, 95), subsampling="4:2:2",
             progressive=True),
    JpegCase("chelsea_exif_rotated", "chelsea", orientation=6),  # cv2 4.x's imread would rotate it
)


def _photo(name: str) -> np.ndarray:
    from skimage import data
    img = getattr(data, name)()
    img = img[0] if isinstance(img, tuple) else img  # stereo pairs: left view
    return np.ascontiguousarray(img[..., :3] if img.ndim == 3 else img)


def render(case: JpegCase):
    """The PIL image the case encodes (before JPEG)."""
    from PIL import Image
    img = _photo(case.photo)
    if case.crop:
        y, x, h, w = case.crop
        if y + h > img.shape[0] or x + w > img.shape[1]:
            raise CorpusError(f"{case.name}: crop {case.crop} outside {case.photo} {img.shape[:2]}")
        img = img[y:y + h, x:x + w]
    pil = Image.fromarray(img)
    if case.shrink:
        pil = pil.resize(case.shrink[::-1], Image.LANCZOS)
    return pil.convert(case.mode)


def write_case(case: JpegCase, directory: Path) -> Path:
    path = directory / f"{case.name}.jpg"
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.", suffix=".tmp")
    try:
        extra = {}
        if case.orientation != 1:
            from PIL import Image
            exif = Image.Exif()
            exif[0x0112] = case.orientation  # Orientation
            extra["exif"] = exif.tobytes()
        with os.fdopen(fd, "wb") as fh:
            render(case).save(fh, "JPEG", quality=case.quality, subsampling=SUBSAMPLING[case.subsampling],
                              progressive=case.progressive, **extra)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def build_corpus(directory: str | Path, cases: tuple[JpegCase, ...] = CASES) -> list[Path]:
    """Write every case as ``directory/<name>.jpg`` (atomically; existing files are rewritten)."""
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        return [write_case(c, directory) for c in cases]
    except OSError as exc:
        raise CorpusError(f"{directory}: cannot write the JPEG corpus ({exc.strerror or exc})") from exc
