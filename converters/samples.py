"""Real photographs for seeded-model calibration and parity runs: scikit-image ships these in its
wheel (no download)."""
from __future__ import annotations

import numpy as np

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "stereo_motorcycle", "camera")


def sample_photos(names: tuple[str, ...] = PHOTOS) -> list[tuple[str, np.ndarray]]:
    """(name, HxWx3 uint8 RGB) pairs; grayscale photos are replicated to three channels."""
    from skimage import data
    out = []
    for name in names:
        img = getattr(data, name)()
        img = img[0] if isinstance(img, tuple) else img  # stereo pairs: left view
        if img.ndim == 2:
            img = np.repeat(img[..., None], 3, axis=2)
        out.append((name, np.ascontiguousarray(img[..., :3])))
    return out


LINES = ("zooport 2026", "Parity is measured", "PaddleOCR to PyTorch", "Invoice No. 48213",
         "Total: 1,234.56 EUR", "The quick brown fox")


def _font(size: int):
    """DejaVu Sans from matplotlib's own data (always installed with it): renders identically on
    every machine, unlike whatever fonts the system has."""
    from pathlib import Path

    import matplotlib
    from PIL import ImageFont
    return ImageFont.truetype(str(Path(matplotlib.get_data_path()) / "fonts/ttf/DejaVuSans.ttf"), size)


def text_lines(lines: tuple[str, ...] = LINES, height: int = 48) -> list[tuple[str, np.ndarray]]:
    """Rendered single text lines (dark on light, a little margin), as a recogniser sees crops."""
    from PIL import Image, ImageDraw
    font = _font(int(height * 0.6))
    out = []
    for text in lines:
        left, top, right, bottom = font.getbbox(text)
        img = Image.new("RGB", (right - left + 16, height), (245, 243, 238))
        ImageDraw.Draw(img).text((8 - left, (height - (bottom - top)) // 2 - top), text, font=font, fill=(20, 20, 30))
        out.append((text, np.asarray(img).copy()))
    return out


def text_scenes() -> list[tuple[str, np.ndarray]]:
    """Photographs with text lines drawn on them, and a document-like page: what a detector sees."""
    from PIL import Image, ImageDraw
    out = []
    for (name, photo), lines in zip(sample_photos(("coffee", "astronaut")), (LINES[:3], LINES[3:])):
        img = Image.fromarray(photo)
        draw = ImageDraw.Draw(img)
        for k, text in enumerate(lines):
            draw.text((24, 24 + 56 * k), text, font=_font(36), fill=(255, 255, 255), stroke_width=3,
                      stroke_fill=(0, 0, 0))
        out.append((f"{name}+text", np.asarray(img).copy()))
    page = Image.new("RGB", (640, 480), (250, 250, 246))
    draw = ImageDraw.Draw(page)
    for k, text in enumerate(LINES):
        draw.text((40, 30 + 70 * k), text, font=_font(30 + 2 * k), fill=(15, 15, 25))
    out.append(("page", np.asarray(page).copy()))
    return out
