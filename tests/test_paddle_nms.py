"""converters/arch/paddle_nms.py without paddle: hand-made cases for each rule of Paddle's
multiclass_nms3 kernel, and random inputs against a plain reference written from the kernel's
definition (one pair of boxes at a time, Python floats rounded to float32 at each step)."""
from __future__ import annotations

import numpy as np
import pytest

from converters.arch.paddle_nms import multiclass_nms

F = np.float32


def _iou(a, b, normalized: bool) -> float:
    """JaccardOverlap, written out: disjoint -> 0; +1 on sides when not normalized; inverted -> area 0."""
    if b[0] > a[2] or b[2] < a[0] or b[1] > a[3] or b[3] < a[1]:
        return 0.0
    one = F(0) if normalized else F(1)

    def area(x):
        if x[2] < x[0] or x[3] < x[1]:
            return F(0)
        return F(F(x[2] - x[0]) + one) * F(F(x[3] - x[1]) + one)

    inter = F(F(min(a[2], b[2]) - max(a[0], b[0])) + one) * F(F(min(a[3], b[3]) - max(a[1], b[1])) + one)
    union = F(F(area(a) + area(b)) - inter)
    with np.errstate(divide="ignore", invalid="ignore"):
        return F(inter / union)


def reference(boxes, scores, *, score_threshold, nms_top_k, keep_top_k, nms_threshold, normalized,
              background_label=-1, nms_eta=1.0):
    """The kernel's algorithm, literally: per class filter (strict >), stable sort, top-k, greedy
    NMS (keep if IoU <= threshold vs every kept box), then the keep_top_k cut and label grouping."""
    three_d = boxes.ndim == 2
    per_class = scores if three_d else scores.T
    selected = {}
    for c in range(per_class.shape[0]):
        if c == background_label:
            continue
        s = per_class[c]
        order = sorted((i for i in range(len(s)) if s[i] > F(score_threshold)), key=lambda i: -s[i])
        if nms_top_k > -1:
            order = order[:nms_top_k]
        kept, thr = [], F(nms_threshold)
        cb = boxes if three_d else boxes[:, c]
        for i in order:
            if all(_iou(cb[i], cb[k], normalized) <= thr for k in kept):
                kept.append(i)
                if nms_eta < 1 and thr > 0.5:
                    thr = F(thr * F(nms_eta))
        selected[c] = kept if three_d else sorted(kept)
    if keep_top_k > -1 and sum(map(len, selected.values())) > keep_top_k:
        pairs = sorted(((c, i) for c in sorted(selected) for i in selected[c]),
                       key=lambda p: -per_class[p[0], p[1]])
        selected = {}
        for c, i in pairs[:keep_top_k]:
            selected.setdefault(c, []).append(i)
        if not three_d:
            selected = {c: sorted(v) for c, v in selected.items()}
    rows = [[c, per_class[c, i], *(boxes[i] if three_d else boxes[i, c])] for c in sorted(selected) for i in selected[c]]
    return np.asarray(rows, dtype=np.float32).reshape(-1, 6)


KW = dict(score_threshold=0.0, nms_top_k=-1, keep_top_k=-1, nms_threshold=0.5, normalized=True)


def test_rows_grouped_by_label_then_score():
    boxes = F([[0, 0, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50]])
    scores = F([[0.2, 0.9, 0.5], [0.95, 0.1, 0.3]])  # [C, M]
    rows, index = multiclass_nms(boxes, scores, **KW)
    assert rows[:, 0].tolist() == [0, 0, 0, 1, 1, 1]  # label ascending, not score order
    assert index.tolist() == [1, 2, 0, 0, 2, 1]
    assert np.array_equal(rows[0, 2:], boxes[1])


def test_score_threshold_is_strict_and_background_skipped():
    boxes = F([[0, 0, 10, 10], [20, 20, 30, 30]])
    scores = F([[0.5, 0.25], [0.9, 0.9]])
    rows, _ = multiclass_nms(boxes, scores, **{**KW, "score_threshold": 0.25}, background_label=1)
    assert rows[:, :2].tolist() == [[0, 0.5]]  # 0.25 is not > 0.25; class 1 is background


def test_ties_keep_the_lower_index_and_suppress_the_later():
    boxes = F([[0, 0, 10, 10], [0, 0, 10, 10], [1, 1, 11, 11]])
    scores = F([[0.5, 0.5, 0.5]])
    _, index = multiclass_nms(boxes, scores, **KW)
    assert index.tolist() == [0]  # box 1 (same score, later) and box 2 (IoU 0.68) suppressed


def test_plus_one_iou_when_not_normalized():
    """IoU of [0,0,9,9] and [5,0,14,9]: normalized 36/126 = 0.286; +1 pixel: 50/150 = 0.333."""
    boxes = F([[0, 0, 9, 9], [5, 0, 14, 9]])
    scores = F([[0.9, 0.8]])
    kw = {**KW, "nms_threshold": 0.3}
    assert len(multiclass_nms(boxes, scores, **kw)[0]) == 2
    assert len(multiclass_nms(boxes, scores, **{**kw, "normalized": False})[0]) == 1  # 0.333 > 0.3


def test_touching_boxes_overlap_by_one_pixel_when_not_normalized():
    boxes = F([[0, 0, 9, 9], [9, 0, 18, 9]])  # share the column x = 9
    scores = F([[0.9, 0.8]])
    assert len(multiclass_nms(boxes, scores, **{**KW, "nms_threshold": 0.0})[0]) == 2  # IoU exactly 0
    assert len(multiclass_nms(boxes, scores, **{**KW, "nms_threshold": 0.0, "normalized": False})[0]) == 1


def test_nms_top_k_cuts_before_suppression_and_keep_top_k_after():
    boxes = F([[i * 20, 0, i * 20 + 10, 10] for i in range(5)])  # disjoint
    scores = F([[0.1, 0.2, 0.3, 0.4, 0.5], [0.45, 0.05, 0.05, 0.05, 0.05]])
    _, index = multiclass_nms(boxes, scores, **{**KW, "nms_top_k": 2})
    assert index.tolist() == [4, 3, 0, 1]
    rows, index = multiclass_nms(boxes, scores, **{**KW, "keep_top_k": 3})
    assert rows[:, 0].tolist() == [0, 0, 1] and index.tolist() == [4, 3, 0]  # 0.5, 0.45, 0.4 kept, grouped


def test_two_d_form_per_class_boxes_in_index_order():
    rng = np.random.default_rng(1)
    xy = rng.uniform(0, 50, (6, 3, 2)).astype(F)
    boxes = np.concatenate([xy, xy + 20], -1)  # [M, C, 4]
    scores = F([[0.1, 0.9, 0.3], [0.8, 0.2, 0.4], [0.7, 0.6, 0.5], [0.2, 0.3, 0.9], [0.6, 0.1, 0.2], [0.3, 0.5, 0.1]])
    rows, index = multiclass_nms(boxes, scores, **{**KW, "background_label": 0})
    assert np.array_equal(rows, reference(boxes, scores, **KW, background_label=0))
    for c in (1, 2):
        idx = (index[rows[:, 0] == c] - c) // 3
        assert idx.tolist() == sorted(idx.tolist())  # box-index order inside a label
    assert np.array_equal(rows[:, 2:], boxes[index // 3, index % 3])


def test_no_detection_gives_zero_rows():
    rows, index = multiclass_nms(F([[0, 0, 1, 1]]), F([[0.0]]), **{**KW, "score_threshold": 0.5})
    assert rows.shape == (0, 6) and index.shape == (0,)


def test_shape_errors_name_the_form():
    with pytest.raises(ValueError, match="3-D form"):
        multiclass_nms(F(np.zeros((4, 4))), F(np.zeros((2, 5))), **KW)
    with pytest.raises(ValueError, match="2-D form"):
        multiclass_nms(F(np.zeros((4, 2, 4))), F(np.zeros((4, 3))), **KW)


@pytest.mark.parametrize("seed", range(8))
def test_random_inputs_match_the_written_out_kernel(seed):
    rng = np.random.default_rng(seed)
    m, c = int(rng.integers(5, 60)), int(rng.integers(1, 4))
    quantised = seed % 2 == 0  # integer boxes and quarter scores: many ties and touching edges
    xy = rng.uniform(0, 60, (m, c, 2))
    wh = rng.uniform(-2, 30, (m, c, 2))
    boxes = np.concatenate([xy, xy + wh], -1)
    scores = rng.uniform(0, 1, (m, c))
    if quantised:
        boxes, scores = np.round(boxes), np.round(scores * 4) / 4
    boxes, scores = boxes.astype(F), scores.astype(F)
    kw = dict(score_threshold=float(rng.choice([0.0, 0.3])), nms_top_k=int(rng.choice([-1, 7])),
              keep_top_k=int(rng.choice([-1, 5])), nms_threshold=float(rng.choice([0.3, 0.7])),
              normalized=bool(seed % 3), background_label=int(rng.choice([-1, 0])),
              nms_eta=float(rng.choice([1.0, 0.8])))
    two_d = seed % 4 < 2
    b, s = (boxes, scores) if two_d else (boxes[:, 0], scores.T)
    rows, _ = multiclass_nms(b, s, **kw)
    assert np.array_equal(rows, reference(b, s, **kw))
