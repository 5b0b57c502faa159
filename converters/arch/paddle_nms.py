"""Paddle's ``multiclass_nms`` (multiclass_nms3 kernel) and ``matrix_nms`` for one image.

Own code, not torchvision's batched_nms: Paddle keeps ``score > score_threshold`` per class, cuts to
``nms_top_k`` before suppression, breaks score ties by lower index (stable sort), has a +1 pixel IoU
when ``normalized=False``, an adaptive threshold (``nms_eta``), and returns rows grouped by label
ascending (a std::map), not sorted by score. Arithmetic is float32, in the kernel's order.

Two input forms, as in Paddle:
- 3-D form (YOLO/SSD): ``boxes`` [M, 4] shared by all classes, ``scores`` [C, M].
- 2-D form (R-CNN): per-class ``boxes`` [M, C, 4], ``scores`` [M, C]; inside a label the rows are in
  box-index order, not score order.

``matrix_nms`` (PP-YOLO; 3-D form only) decays scores instead of dropping boxes; its kernel orders
candidates with std::partial_sort, which is not stable: among tied scores the order is libstdc++'s
heap order, replayed here exactly (``_std_partial_sort``), since it decides which tied box decays.
"""
from __future__ import annotations

import numpy as np
import torch


def _iou_matrix(b: np.ndarray, normalized: bool) -> np.ndarray:
    """Pairwise JaccardOverlap of the kernel, float32: 0 for disjoint boxes (strict tests, so touching
    boxes overlap), area 0 for inverted boxes, +1 on widths and intersections when not normalized."""
    one = np.float32(0.0 if normalized else 1.0)
    x1, y1, x2, y2 = (b[:, i] for i in range(4))
    w, h = x2 - x1, y2 - y1
    area = np.where((x2 < x1) | (y2 < y1), np.float32(0), (w + one) * (h + one))
    disjoint = ((x1[None] > x2[:, None]) | (x2[None] < x1[:, None])
                | (y1[None] > y2[:, None]) | (y2[None] < y1[:, None]))
    iw = np.minimum(x2[:, None], x2[None]) - np.maximum(x1[:, None], x1[None]) + one
    ih = np.minimum(y2[:, None], y2[None]) - np.maximum(y1[:, None], y1[None]) + one
    inter = iw * ih
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = inter / ((area[:, None] + area[None]) - inter)
    return np.where(disjoint, np.float32(0), iou).astype(np.float32)


def nms_fast(boxes: np.ndarray, scores: np.ndarray, score_threshold: float, nms_threshold: float,
             eta: float, top_k: int, normalized: bool) -> list[int]:
    """The kernel's NMSFast for one class: selected box indices in score order."""
    cand = np.nonzero(scores > np.float32(score_threshold))[0]
    cand = cand[np.argsort(-scores[cand], kind="stable")]  # descending, ties -> lower index first
    if top_k > -1:
        cand = cand[:top_k]
    if cand.size == 0:
        return []
    iou = _iou_matrix(boxes[cand], normalized)
    thr = np.float32(nms_threshold)
    kept: list[int] = []
    if eta >= 1.0:  # fixed threshold: suppression by each kept box can be applied once, up front
        alive = np.ones(cand.size, dtype=bool)
        for i in range(cand.size):
            if alive[i]:
                kept.append(i)
                alive &= iou[i] <= thr  # NaN IoU (zero union) fails "<=", i.e. suppresses, as in C++
        return cand[kept].tolist()
    for i in range(cand.size):  # adaptive threshold: every candidate tested against all kept boxes
        if not kept or bool(np.all(iou[i, kept] <= thr)):
            kept.append(i)
            if thr > 0.5:
                thr = np.float32(thr * np.float32(eta))
    return cand[kept].tolist()


def multiclass_nms(boxes, scores, *, score_threshold: float, nms_top_k: int, keep_top_k: int,
                   nms_threshold: float, normalized: bool, background_label: int = -1,
                   nms_eta: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """One image. Returns (rows float32 [K, 6] = [label, score, x1, y1, x2, y2], index int64 [K]) in
    Paddle's output order; ``index`` is what the op's ``return_index`` gives for one image: the box index
    (3-D form) or ``box * C + label`` (2-D form). K may be 0 (Paddle would emit a single [-1] row)."""
    b = _numpy(boxes)
    s = _numpy(scores)
    three_d = b.ndim == 2
    if three_d:
        if s.ndim != 2 or b.shape[1] != 4 or s.shape[1] != b.shape[0]:
            raise ValueError(f"3-D form needs boxes [M, 4], scores [C, M]; got {b.shape}, {s.shape}")
        per_class_scores = s
    else:
        if b.ndim != 3 or s.ndim != 2 or b.shape[:2] != s.shape or b.shape[2] != 4:
            raise ValueError(f"2-D form needs boxes [M, C, 4], scores [M, C]; got {b.shape}, {s.shape}")
        per_class_scores = s.T
    num_classes = per_class_scores.shape[0]
    selected: dict[int, list[int]] = {}
    for c in range(num_classes):
        if c == background_label:
            continue
        cls_boxes = b if three_d else b[:, c]
        keep = nms_fast(cls_boxes, per_class_scores[c], score_threshold, nms_threshold, nms_eta,
                        nms_top_k, normalized)
        selected[c] = keep if three_d else sorted(keep)
    total = sum(len(v) for v in selected.values())
    if keep_top_k > -1 and total > keep_top_k:
        pairs = [(c, i) for c in sorted(selected) for i in selected[c]]
        sc = np.array([per_class_scores[c, i] for c, i in pairs], dtype=np.float32)
        order = np.argsort(-sc, kind="stable")[:keep_top_k]  # ties keep (label, in-label) order
        selected = {}
        for j in order:
            c, i = pairs[j]
            selected.setdefault(c, []).append(i)
        if not three_d:
            selected = {c: sorted(v) for c, v in selected.items()}
    rows, index = [], []
    for c in sorted(selected):
        for i in selected[c]:
            box = b[i] if three_d else b[i, c]
            rows.append([np.float32(c), per_class_scores[c, i], *box])
            index.append(i if three_d else i * num_classes + c)
    out = np.asarray(rows, dtype=np.float32).reshape(-1, 6)
    return torch.from_numpy(out), torch.tensor(index, dtype=torch.int64)


def _std_partial_sort(keys: np.ndarray, middle: int) -> list[int]:
    """Positions of the first ``middle`` elements after libstdc++'s
    ``std::partial_sort(p, p + middle, p + n, [&](a, b) { return keys[a] > keys[b]; })`` on the
    identity permutation ``p``: heap-select into a min-heap of ``middle``, then sort_heap. Without
    ties any sort gives this order, so only tied keys take the slow, exact replay."""
    n = len(keys)
    middle = min(middle, n)
    if middle <= 0:
        return []
    if np.unique(keys).size == n:
        return np.argsort(-keys, kind="stable")[:middle].tolist()
    k, a = keys.tolist(), list(range(n))

    def adjust(hole: int, length: int, value: int) -> None:  # std::__adjust_heap + __push_heap
        top = child = hole
        while child < (length - 1) // 2:
            child = 2 * (child + 1)
            if k[a[child]] > k[a[child - 1]]:
                child -= 1
            a[hole], hole = a[child], child
        if length % 2 == 0 and child == (length - 2) // 2:
            child = 2 * (child + 1)
            a[hole], hole = a[child - 1], child - 1
        parent = (hole - 1) // 2
        while hole > top and k[a[parent]] > k[value]:
            a[hole], hole = a[parent], parent
            parent = (hole - 1) // 2
        a[hole] = value

    for parent in range((middle - 2) // 2, -1, -1):  # make_heap
        adjust(parent, middle, a[parent])
    for i in range(middle, n):  # heap_select
        if k[a[i]] > k[a[0]]:
            value, a[i] = a[i], a[0]
            adjust(0, middle, value)
    for last in range(middle - 1, 0, -1):  # sort_heap
        value, a[last] = a[last], a[0]
        adjust(0, last, value)
    return a[:middle]


def _matrix_nms_class(boxes: np.ndarray, scores: np.ndarray, score_threshold: float, post_threshold: float,
                      top_k: int, normalized: bool, gaussian: bool, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """The kernel's NMSMatrix for one class: (kept box indices, decayed scores), in score order."""
    cand = np.nonzero(scores > np.float32(score_threshold))[0]  # remove_if: index order kept
    num_pre = cand.size if top_k <= -1 else min(cand.size, top_k)
    if num_pre == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.float32)
    order = cand[_std_partial_sort(scores[cand], num_pre)]
    s = scores[order]
    iou = np.tril(_iou_matrix(boxes[order], normalized), -1)  # iou[i, j], j < i
    # iou_max[j] = max(0, iou[j, :j]) by std::max, which never picks a NaN
    iou_max = np.fmax.reduce(np.where(np.isnan(iou), 0, iou), axis=1, initial=np.float32(0))
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if gaussian:  # float arithmetic, then glibc's expf: correctly rounded, as exp in double then rounded
            arg = (iou_max[None] * iou_max[None] - iou * iou) * np.float32(sigma)
            decay = np.exp(arg.astype(np.float64)).astype(np.float32)
        else:  # "1." is a double: (1 - iou) / (1 - max_iou) in double, returned as float
            decay = ((1.0 - iou.astype(np.float64)) / (1.0 - iou_max[None].astype(np.float64))).astype(np.float32)
    lower = np.tril(np.ones((num_pre, num_pre), dtype=bool), -1)
    # min_decay starts at 1; std::min(min, d) takes d only when d < min: NaN never
    decay = np.where(lower & ~np.isnan(decay), decay, np.float32(1))
    ds = (decay.min(axis=1) * s).astype(np.float32)
    keep = ds > np.float32(post_threshold)
    return order[keep], ds[keep]


def matrix_nms(boxes, scores, *, score_threshold: float, post_threshold: float, nms_top_k: int, keep_top_k: int,
               normalized: bool, use_gaussian: bool = False, gaussian_sigma: float = 2.0,
               background_label: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """One image, ``boxes`` [M, 4] shared by the classes, ``scores`` [C, M]. Returns (rows float32
    [K, 6] = [label, decayed score, x1, y1, x2, y2], box index int64 [K]) sorted by decayed score
    across classes, as the kernel emits them; K may be 0."""
    b, s = _numpy(boxes), _numpy(scores)
    if b.ndim != 2 or b.shape[1] != 4 or s.ndim != 2 or s.shape[1] != b.shape[0]:
        raise ValueError(f"matrix_nms needs boxes [M, 4], scores [C, M]; got {b.shape}, {s.shape}")
    idx, dec, cls = [], [], []
    for c in range(s.shape[0]):
        if c == background_label:
            continue
        keep, ds = _matrix_nms_class(b, s[c], score_threshold, post_threshold, nms_top_k, normalized,
                                     use_gaussian, gaussian_sigma)
        idx.append(keep)
        dec.append(ds)
        cls.append(np.full(keep.size, c, np.float32))
    idx, dec, cls = (np.concatenate(v) if v else np.zeros(0) for v in (idx, dec, cls))
    num = idx.size if keep_top_k <= -1 else min(idx.size, keep_top_k)
    pick = _std_partial_sort(dec.astype(np.float32), num)
    rows = np.concatenate([cls[pick, None], dec[pick, None], b[idx[pick].astype(np.int64)]], axis=1)
    return torch.from_numpy(rows.astype(np.float32).reshape(-1, 6)), torch.from_numpy(idx[pick].astype(np.int64))


def _numpy(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.ascontiguousarray(x, dtype=np.float32)
