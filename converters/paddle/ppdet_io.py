"""PaddleDetection's model contract, shared by its families' oracles (dygraph nets and exported
programs): inputs ``image`` (N, 3, H, W), ``im_shape`` (N, 2) = (H, W) and ``scale_factor`` (N, 2);
outputs ``bbox`` (rows [label, score, x1, y1, x2, y2] of all images, concatenated) and ``bbox_num``.
zooport's detectors return -1-padded (ids, scores, boxes) in network-input pixels, so the oracles run
with im_shape = the input size and scale_factor = 1."""
from __future__ import annotations

import numpy as np

FEEDS = ("image", "im_shape", "scale_factor")


def feeds(x: np.ndarray) -> dict[str, np.ndarray]:
    """The three inputs for a preprocessed batch, boxes kept in input pixels."""
    b, _, h, w = x.shape
    return {"image": np.ascontiguousarray(x, dtype=np.float32),
            "im_shape": np.tile(np.float32([h, w]), (b, 1)),
            "scale_factor": np.ones((b, 2), np.float32)}


def pad_detections(bbox: np.ndarray, num: np.ndarray, k: int | None = None):
    """ppdet's concatenated [N, 6] rows + per-image counts -> -1-padded (ids, scores, boxes) of
    (B, k, 1|1|4); k defaults to the largest count. An image without detections is the single
    placeholder row Paddle emits ([-1] or [-1, 0, 0, 0, 0, 0]): it stays padding."""
    num = np.asarray(num).astype(int).reshape(-1)
    k = max(int(num.max(initial=0)), 1) if k is None else k
    out = np.full((len(num), k, 6), -1.0, dtype=np.float32)
    start = 0
    for i, n in enumerate(num):
        if n > 0 and bbox.ndim == 2 and bbox.shape[1] == 6:
            out[i, :n] = bbox[start:start + n][:k]
        start += max(n, 0)
    return out[..., :1], out[..., 1:2], out[..., 2:]
