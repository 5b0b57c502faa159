"""PP-OCR pre- and post-processing against values worked out by hand from the definitions."""
from __future__ import annotations

import numpy as np
import pytest

from converters.arch.ctc import ctc_greedy
from converters.arch.db_postprocess import DBParams, box_score, db_boxes, reading_order, unclip
from converters.ocr import clean_quads, det_input, line_input, rec_width


def test_ctc_greedy_merges_repeats_and_drops_blanks():
    charset = ["<blank>", "a", "b", " "]
    steps = [1, 1, 0, 1, 2, 2, 0, 3, 0]  # a a _ a b b _ ' ' _  ->  "aab "
    probs = np.full((1, len(steps), 4), 0.1, np.float32)
    for t, c in enumerate(steps):
        probs[0, t, c] = 0.7
    probs[0, 4, 2] = 0.9
    (text, conf), = ctc_greedy(probs, charset)
    assert text == "aab "
    assert conf == pytest.approx(np.mean([0.7, 0.7, 0.9, 0.7]))  # first of each kept run
    with pytest.raises(ValueError, match="5 classes"):
        ctc_greedy(np.zeros((1, 2, 5), np.float32), charset)


def test_unclip_grows_by_area_ratio_over_perimeter():
    box = np.array([[0, 0], [100, 0], [100, 20], [0, 20]], np.float32)
    grown = unclip(box, 1.5)
    d = 2000 * 1.5 / 240  # 12.5 px
    assert grown[:, 0].min() == pytest.approx(-d, abs=1) and grown[:, 0].max() == pytest.approx(100 + d, abs=1)
    assert grown[:, 1].min() == pytest.approx(-d, abs=1) and grown[:, 1].max() == pytest.approx(20 + d, abs=1)


def test_box_score_is_the_mean_inside_the_filled_box():
    prob = np.zeros((20, 30), np.float32)
    prob[5:10, 10:20] = 1.0
    inside = np.array([[10, 5], [19, 5], [19, 9], [10, 9]], np.float32)
    assert box_score(prob, inside) == pytest.approx(1.0)
    around = np.array([[8, 3], [21, 3], [21, 11], [8, 11]], np.float32)
    assert box_score(prob, around) == pytest.approx(50 / (14 * 9))


def test_db_boxes_one_rectangle_scaled_to_the_original_image():
    prob = np.zeros((64, 128), np.float32)
    prob[20:40, 30:110] = 0.9  # a text blob 80 x 20
    boxes, scores = db_boxes(prob, (128, 256))  # original image twice the map size
    assert boxes.shape == (1, 4, 2) and scores[0] == pytest.approx(0.9)
    # contour corners (30,20)-(109,39): min-area rect 79 x 19, grown by 79*19*1.5/196 px per side
    d = 79 * 19 * 1.5 / (2 * (79 + 19))
    want = np.array([[30 - d, 20 - d], [109 + d, 20 - d], [109 + d, 39 + d], [30 - d, 39 + d]]) * 2
    assert np.abs(boxes[0] - want).max() <= 2.5  # round joins + integer rounding at twice the scale
    assert list(boxes[0, 0]) == [boxes[0, :, 0].min(), boxes[0, :, 1].min()]  # starts top-left
    low = DBParams(box_thresh=0.95)
    assert len(db_boxes(prob, (64, 128), low)[0]) == 0  # mean 0.9 < 0.95: dropped


def test_db_boxes_small_blobs_are_dropped():
    prob = np.zeros((32, 32), np.float32)
    prob[10:12, 10:12] = 1.0  # 2 x 2 < min_size 3
    assert len(db_boxes(prob, (32, 32))[0]) == 0


def test_reading_order_lines_then_left_to_right():
    def quad(x, y):
        return [[x, y], [x + 10, y], [x + 10, y + 5], [x, y + 5]]
    boxes = np.array([quad(50, 3), quad(0, 40), quad(5, 0), quad(60, 44)])
    assert reading_order(boxes) == [2, 0, 1, 3]  # (5,0) and (50,3) share a line


def test_clean_quads_clips_and_drops_slivers():
    boxes = np.array([[[-5, 2], [50, 2], [50, 20], [-5, 20]], [[0, 0], [2, 0], [2, 9], [0, 9]]])
    kept, scores = clean_quads(boxes, np.array([0.8, 0.7]), (16, 40))
    assert kept.tolist() == [[[0, 2], [39, 2], [39, 15], [0, 15]]] and scores.tolist() == [0.8]


def test_det_input_multiples_of_32_and_bgr_normalisation():
    img = np.zeros((1000, 700, 3), np.uint8)
    img[..., 0] = 255  # pure red
    x, hw = det_input(img)
    assert hw == (1000, 700) and x.shape == (1, 3, 960, 672)  # 1000 -> 960; 700 * .96 = 672
    # channel 0 is blue (0) normalised with the first listed mean/std, as PaddleOCR does
    assert x[0, 0, 0, 0] == pytest.approx(-0.485 / 0.229, rel=1e-6)
    assert x[0, 2, 0, 0] == pytest.approx((1 - 0.406) / 0.225, rel=1e-6)


def test_line_input_keeps_ratio_and_pads_with_zeros():
    crop = np.full((24, 60, 3), 255, np.uint8)
    x = line_input(crop, (48, 192))
    assert x.shape == (3, 48, 192)
    assert np.all(x[:, :, :120] == 1.0) and np.all(x[:, :, 120:] == 0.0)
    wide = np.zeros((10, 200, 3), np.uint8)
    assert rec_width([crop, wide]) == 48 * 20 and line_input(wide, (48, 320), 960).shape == (3, 48, 960)
    assert rec_width([crop]) == 320
