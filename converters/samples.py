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
