"""The PP-OCR pipeline in torch alone: detect text boxes, crop and straighten each, classify its
direction, recognise it. The input contracts are PaddleOCR's inference defaults (tools/infer):

- det: long side limited to 960, each side rounded to a multiple of 32 (at least 32), cv2 bilinear;
  pixels in OpenCV's BGR order normalised with the ImageNet RGB mean/std as listed (PaddleOCR
  applies them to BGR channels unchanged, and the weights were trained that way);
- cls: height 48, width ceil(48 * w / h) up to 192, (x / 255 - 0.5) / 0.5, zero-padded to 192;
  rotated 180 degrees when the classifier says "180" with probability above 0.9;
- rec: height 48, width ceil(48 * w / h) up to 48 * max(320 / 48, w / h), same normalisation.

Images are HxWx3 uint8 RGB (zooport's convention); the BGR swap happens here."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch

from .arch.ctc import ctc_greedy, load_charset
from .arch.db_postprocess import DBParams, db_boxes, reading_order

DET_LIMIT = 960
DET_MEAN, DET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
REC_SHAPE, CLS_SHAPE = (48, 320), (48, 192)
CLS_LABELS, CLS_THRESH = ("0", "180"), 0.9


def det_input(rgb: np.ndarray, limit: int = DET_LIMIT) -> tuple[np.ndarray, tuple[int, int]]:
    """(1, 3, H32, W32) float32 network input, and the original (H, W)."""
    h, w = rgb.shape[:2]
    ratio = min(1.0, limit / max(h, w))
    rh = max(int(round(int(h * ratio) / 32) * 32), 32)
    rw = max(int(round(int(w * ratio) / 32) * 32), 32)
    img = cv2.resize(np.ascontiguousarray(rgb[..., ::-1]), (rw, rh)).astype(np.float32)
    img = (img / 255.0 - np.array(DET_MEAN, np.float32)) / np.array(DET_STD, np.float32)
    return img.transpose(2, 0, 1)[None].astype(np.float32), (h, w)


def line_input(rgb: np.ndarray, shape: tuple[int, int], width: int | None = None) -> np.ndarray:
    """(3, H, W) float32 input for cls/rec: resized to height H keeping the aspect ratio (at most
    ``width``), scaled to [-1, 1], zero-padded on the right to ``width``."""
    H, W = shape
    width = width or W
    h, w = rgb.shape[:2]
    rw = min(width, int(math.ceil(H * w / h)))
    img = cv2.resize(np.ascontiguousarray(rgb[..., ::-1]), (rw, H)).astype(np.float32)
    img = (img.transpose(2, 0, 1) / 255.0 - 0.5) / 0.5
    out = np.zeros((3, H, width), dtype=np.float32)
    out[:, :, :rw] = img
    return out


def rec_width(crops: list[np.ndarray]) -> int:
    """A batch's common width: 48 x the widest aspect ratio, at least 320."""
    ratio = max([REC_SHAPE[1] / REC_SHAPE[0]] + [c.shape[1] / c.shape[0] for c in crops])
    return int(REC_SHAPE[0] * ratio)


def crop_quad(rgb: np.ndarray, quad: np.ndarray) -> np.ndarray:
    """Perspective-crop a quadrilateral (tl, tr, br, bl) to an upright rectangle; tall crops
    (height >= 1.5 x width) are turned 90 degrees, as PaddleOCR does for vertical text."""
    quad = quad.astype(np.float32)
    w = int(max(np.linalg.norm(quad[0] - quad[1]), np.linalg.norm(quad[2] - quad[3])))
    h = int(max(np.linalg.norm(quad[0] - quad[3]), np.linalg.norm(quad[1] - quad[2])))
    dst = np.array([[0, 0], [w, 0], [w, h], [0, h]], dtype=np.float32)
    m = cv2.getPerspectiveTransform(quad, dst)
    crop = cv2.warpPerspective(rgb, m, (w, h), borderMode=cv2.BORDER_REPLICATE, flags=cv2.INTER_CUBIC)
    if crop.shape[0] * 1.0 / max(crop.shape[1], 1) >= 1.5:
        crop = np.rot90(crop)
    return np.ascontiguousarray(crop)


def clean_quads(boxes: np.ndarray, scores: np.ndarray, hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Clip to the image and drop boxes 3 pixels or less across; (boxes, their scores)."""
    keep, kept = [], []
    for b, s in zip(boxes, scores):
        b = b.copy()
        b[:, 0] = np.clip(b[:, 0], 0, hw[1] - 1)
        b[:, 1] = np.clip(b[:, 1], 0, hw[0] - 1)
        if np.linalg.norm(b[0] - b[1]) > 3 and np.linalg.norm(b[0] - b[3]) > 3:
            keep.append(b)
            kept.append(s)
    return np.array(keep, dtype=np.int32).reshape(-1, 4, 2), np.array(kept, dtype=np.float64)


@dataclass
class TextLine:
    box: list[list[int]]  # (tl, tr, br, bl) in image pixels
    text: str
    confidence: float
    det_score: float
    rotated: bool = False  # the direction classifier turned the crop by 180 degrees


@dataclass
class OCR:
    det: torch.nn.Module
    rec: torch.nn.Module
    charset: list[str]
    cls: torch.nn.Module | None = None
    db: DBParams = field(default_factory=DBParams)

    @classmethod
    def load(cls, det: str | Path, rec: str | Path, charset: str | Path, direction: str | Path | None = None) -> "OCR":
        from .pipeline import load
        return cls(load("ppocrv4_det", det), load("ppocrv4_rec", rec), load_charset(charset),
                   load("ppocr_mobile_v2_cls", direction) if direction else None)

    @torch.inference_mode()
    def __call__(self, rgb: np.ndarray) -> list[TextLine]:
        x, hw = det_input(rgb)
        prob = self.det(torch.from_numpy(x)).numpy()[0, 0]
        quads, scores = clean_quads(*db_boxes(prob, hw, self.db), hw)
        order = reading_order(quads)
        quads, scores = quads[order], scores[order]
        if len(quads) == 0:
            return []
        crops = [crop_quad(rgb, q) for q in quads]
        rotated = [False] * len(crops)
        if self.cls is not None:
            batch = torch.from_numpy(np.stack([line_input(c, CLS_SHAPE) for c in crops]))
            probs = self.cls(batch).numpy()
            for i, p in enumerate(probs):
                if CLS_LABELS[int(p.argmax())] == "180" and p.max() > CLS_THRESH:
                    crops[i], rotated[i] = np.ascontiguousarray(crops[i][::-1, ::-1]), True
        width = rec_width(crops)
        batch = torch.from_numpy(np.stack([line_input(c, REC_SHAPE, width) for c in crops]))
        texts = ctc_greedy(self.rec(batch).numpy(), self.charset)
        return [TextLine(q.tolist(), t, c, float(s), r)
                for q, (t, c), s, r in zip(quads, texts, scores, rotated)]
