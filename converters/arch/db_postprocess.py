"""DB (Differentiable Binarization) post-processing: probability map -> text quadrilaterals, with
PP-OCR's inference defaults. Written from the method's definition because the boxes must be the
ones PaddleOCR reports: threshold the map, take contour min-area rectangles, score each by the mean
probability inside it, grow it by area * ratio / perimeter (pyclipper, as PaddleOCR), take the
min-area rectangle again and scale it to the original image."""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class DBParams:
    thresh: float = 0.3  # binarisation of the probability map
    box_thresh: float = 0.6  # minimum mean probability inside a box
    unclip_ratio: float = 1.5
    max_candidates: int = 1000
    min_size: int = 3


def mini_box(points: np.ndarray) -> tuple[np.ndarray, float]:
    """Min-area rectangle of ``points`` as 4 corners ordered top-left, top-right, bottom-right,
    bottom-left (by x first, then y within each pair), and its shorter side."""
    rect = cv2.minAreaRect(points)
    pts = sorted(cv2.boxPoints(rect).tolist(), key=lambda p: p[0])
    left = (pts[0], pts[1]) if pts[1][1] > pts[0][1] else (pts[1], pts[0])  # (top, bottom)
    right = (pts[2], pts[3]) if pts[3][1] > pts[2][1] else (pts[3], pts[2])
    return np.array([left[0], right[0], right[1], left[1]], dtype=np.float32), min(rect[1])


def box_score(prob: np.ndarray, box: np.ndarray) -> float:
    """Mean of ``prob`` over the box's filled polygon (integer corners, as cv2.fillPoly draws it)."""
    h, w = prob.shape
    xmin = int(np.clip(np.floor(box[:, 0].min()), 0, w - 1))
    xmax = int(np.clip(np.ceil(box[:, 0].max()), 0, w - 1))
    ymin = int(np.clip(np.floor(box[:, 1].min()), 0, h - 1))
    ymax = int(np.clip(np.ceil(box[:, 1].max()), 0, h - 1))
    mask = np.zeros((ymax - ymin + 1, xmax - xmin + 1), dtype=np.uint8)
    local = (box - np.array([xmin, ymin], dtype=box.dtype)).astype(np.int32)
    cv2.fillPoly(mask, local.reshape(1, -1, 2), 1)
    return float(cv2.mean(prob[ymin:ymax + 1, xmin:xmax + 1], mask)[0])


def unclip(box: np.ndarray, ratio: float) -> np.ndarray:
    """Offset the polygon outwards by area * ratio / perimeter with round joins."""
    import pyclipper
    x, y = box[:, 0].astype(np.float64), box[:, 1].astype(np.float64)
    area = 0.5 * abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))
    length = float(np.sum(np.hypot(np.roll(x, -1) - x, np.roll(y, -1) - y)))
    offset = pyclipper.PyclipperOffset()
    offset.AddPath(box.tolist(), pyclipper.JT_ROUND, pyclipper.ET_CLOSEDPOLYGON)
    grown = offset.Execute(area * ratio / length)
    return np.array(grown[0] if len(grown) == 1 else [p for path in grown for p in path], dtype=np.float32)


def db_boxes(prob: np.ndarray, dest_hw: tuple[int, int], p: DBParams = DBParams()
             ) -> tuple[np.ndarray, np.ndarray]:
    """(boxes (K, 4, 2) int in original-image pixels, scores (K,)) from one (H, W) probability map."""
    h, w = prob.shape
    bitmap = (prob > p.thresh).astype(np.uint8) * 255
    contours, _ = cv2.findContours(bitmap, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    boxes, scores = [], []
    for contour in contours[:p.max_candidates]:
        points, side = mini_box(contour)
        if side < p.min_size:
            continue
        score = box_score(prob, points)
        if score < p.box_thresh:
            continue
        grown = unclip(points, p.unclip_ratio)
        if len(grown) == 0:
            continue
        box, side = mini_box(grown.reshape(-1, 1, 2))
        if side < p.min_size + 2:
            continue
        box[:, 0] = np.clip(np.round(box[:, 0] / w * dest_hw[1]), 0, dest_hw[1])
        box[:, 1] = np.clip(np.round(box[:, 1] / h * dest_hw[0]), 0, dest_hw[0])
        boxes.append(box.astype(np.int32))
        scores.append(score)
    return (np.array(boxes, dtype=np.int32).reshape(-1, 4, 2), np.array(scores, dtype=np.float64))


def reading_order(boxes: np.ndarray, line_tol: float = 10.0) -> list[int]:
    """Indices top to bottom, then left to right for boxes whose top-left corners are within
    ``line_tol`` pixels vertically (one text line)."""
    order = sorted(range(len(boxes)), key=lambda i: (boxes[i][0][1], boxes[i][0][0]))
    for _ in range(len(order)):  # bubble neighbours on one line into x order, as PaddleOCR does
        changed = False
        for j in range(len(order) - 1):
            a, b = boxes[order[j]][0], boxes[order[j + 1]][0]
            if abs(b[1] - a[1]) < line_tol and b[0] < a[0]:
                order[j], order[j + 1] = order[j + 1], order[j]
                changed = True
        if not changed:
            break
    return order
