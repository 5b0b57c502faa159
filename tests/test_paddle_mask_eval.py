"""`zooport eval` scores a Paddle Mask R-CNN's masks (COCO segm) beside its boxes: ppdet's paste at the
original size on a hand-computed case, ground truth through the mapping scoring 100 (and less when the
masks are damaged, the boxes kept), and the eval CLI's table and JSON with both box and mask AP. No
paddle: a random torch module stands in for the conversion, as in test_eval_cli."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_util
from typer.testing import CliRunner

from converters import registry
from converters.pipeline import ConversionResult
from parity import evaluate as ev
from parity.cli import app
from parity.datasets import open_dataset
from parity.fixtures import build_tiny
from parity.metrics import COCODetectron, COCOMask, metric_for
from parity.predict import detect

MODEL = "MaskRCNN_ResNet18_FPN"
PADDLE_MASK_MODELS = ("MaskRCNN_ResNet18_FPN", "MaskRCNN_ResNet50", "MaskRCNN_ResNet50_FPN",
                      "MaskRCNN_ResNet50_vd_FPN", "MaskRCNN_ResNet101_FPN", "MaskRCNN_ResNet101_vd_FPN",
                      "MaskRCNN_HRNet_W18_FPN")

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def coco(tmp_path_factory):
    return open_dataset("coco", build_tiny("coco", tmp_path_factory.mktemp("segm") / "coco", 7))


def _rows(k: int, m: int) -> tuple[np.ndarray, ...]:
    """(ids, scores, boxes, masks) of one image, K rows all padding (-1), as the detector pads them."""
    return (np.full((1, k, 1), -1, np.float32), np.full((1, k, 1), -1, np.float32),
            np.full((1, k, 4), -1, np.float32), np.full((1, k, m, m), -1, np.float32))


# ------------------------------------------------------------------------------ (c) ppdet's paste

# A 6x8 original, factors 0.5: input box (1, 0.5, 3, 2.5) is (2, 1, 6, 5) in the original. ppdet's
# paste_mask samples pixel centres: column j reads mask column (j + 0.5 - 2) / 4 * 2 - 1 -> j/2 - 1.25
# (row i: i/2 - 0.75), bilinear, zeros outside the 2x2 map. Weights on (cell 0, cell 1), by hand:
#   columns 0..7: (0,0) (.25,0) (.75,0) (.75,.25) (.25,.75) (0,.75) (0,.25) (0,0)
#   rows    0..5: (.25,0) (.75,0) (.75,.25) (.25,.75) (0,.75) (0,.25)
# All-0.5 map: rows 2-3 x columns 3-4 get exactly .5 * 1 * 1 = 0.5, kept (ppdet's >= 0.5; Detectron's
# > 0.5 would keep none). Map [[1, .5], [.5, .5]]: (1,2) .75*.75 = .5625, (1,3) .75*(.75+.125) = .65625,
# (2,4) = .59375, (3,3) = .59375, (3,4) = .53125 kept; (1,4) = .46875 and (3,2) = .46875 not.
HALF = [[0, 0, 0, 0, 0, 0, 0, 0],
        [0, 0, 0, 0, 0, 0, 0, 0],
        [0, 0, 0, 1, 1, 0, 0, 0],
        [0, 0, 0, 1, 1, 0, 0, 0],
        [0, 0, 0, 0, 0, 0, 0, 0],
        [0, 0, 0, 0, 0, 0, 0, 0]]
CORNER = [[0, 0, 0, 0, 0, 0, 0, 0],
          [0, 0, 1, 1, 0, 0, 0, 0],
          [0, 0, 1, 1, 1, 0, 0, 0],
          [0, 0, 0, 1, 1, 0, 0, 0],
          [0, 0, 0, 0, 0, 0, 0, 0],
          [0, 0, 0, 0, 0, 0, 0, 0]]


def test_paste_at_original_size_matches_ppdet_on_a_hand_computed_case():
    ids, scores, boxes, masks = _rows(4, 2)
    for i, (label, mask) in enumerate(((3, [[0.5, 0.5], [0.5, 0.5]]), (7, [[1.0, 0.5], [0.5, 0.5]]))):
        ids[0, i], scores[0, i], boxes[0, i], masks[0, i] = label, 0.9 - 0.1 * i, [1, 0.5, 3, 2.5], mask
    # a row clipped to nothing in the original (beyond its right edge): ppdet's get_pred drops it
    ids[0, 2], scores[0, 2], boxes[0, 2], masks[0, 2] = 5, 0.5, [4.5, 0, 6, 1], 1.0
    pred = detect((ids, scores, boxes, masks), "ppdet", (4, 4), (6, 8), (0.5, 0.5))
    assert pred["labels"].tolist() == [3, 7] and np.allclose(pred["boxes"], [[2, 1, 6, 5]] * 2)
    assert [r["size"] for r in pred["masks"]] == [[6, 8], [6, 8]]
    got = [mask_util.decode(r).tolist() for r in pred["masks"]]
    assert got == [HALF, CORNER]


def test_detections_without_masks_or_rows_stay_box_only():
    """A ppdet detector without a mask output gives no "masks"; a Mask R-CNN without detections an
    empty list (COCOMask scores it as no detections)."""
    ids, scores, boxes, masks = _rows(2, 28)
    assert "masks" not in detect((ids, scores, boxes), "ppdet", (64, 96), (128, 192), (0.5, 0.5))
    assert detect((ids, scores, boxes, masks), "ppdet", (64, 96), (128, 192), (0.5, 0.5))["masks"] == []


# ------------------------------------------------------------------------------ (a) COCO segm AP


def _gt_rles(ds, shift: int = 0) -> dict:
    """Each image's ground-truth masks as RLEs, optionally rolled ``shift`` pixels to the right."""
    gt = COCOMask(ds.ann_file).gt
    out = {}
    for s in ds:
        anns = gt.loadAnns(gt.getAnnIds(imgIds=[s.target["image_id"]]))
        out[s.target["image_id"]] = [mask_util.encode(np.asfortranarray(np.roll(gt.annToMask(a), shift, axis=1)))
                                     for a in anns]
    return out


def test_coco_mask_ap_is_100_on_ground_truth_and_less_when_shifted(coco):
    results = []
    for shift in (0, 25):
        metric, by_image = COCOMask(coco.ann_file), _gt_rles(coco, shift)
        for s in coco:
            rles = by_image[s.target["image_id"]]
            metric.update(s.target["image_id"], rles, np.full(len(rles), 0.9), s.target["labels"])
        results.append(metric.result())
    assert results[0]["AP"] == pytest.approx(100.0, rel=1e-12) and results[0]["AP50"] == pytest.approx(100.0)
    assert results[1]["AP"] < 90.0


def _paddle_outputs(gt, image_id: int, scale: tuple[float, float], contiguous: dict, m: int = 28,
                    damage: bool = False) -> tuple[np.ndarray, ...]:
    """Ground truth as a Paddle Mask R-CNN's outputs at input scale: boxes (x, y, x + w, y + h) x the
    resize factors, each box's M x M map the ground-truth mask at its cell centres (``damage``: the
    right quarter of each map erased), one padding row."""
    anns = gt.loadAnns(gt.getAnnIds(imgIds=[image_id]))
    ids, scores, boxes, masks = _rows(len(anns) + 1, m)
    sx, sy = scale
    for i, a in enumerate(anns):
        x, y, w, h = a["bbox"]
        cy = np.floor(y + (np.arange(m) + 0.5) * h / m).astype(int)
        cx = np.floor(x + (np.arange(m) + 0.5) * w / m).astype(int)
        masks[0, i] = gt.annToMask(a)[cy][:, cx]
        if damage:
            masks[0, i, :, 3 * m // 4:] = 0
        ids[0, i], scores[0, i] = contiguous[a["category_id"]], 0.9 - 0.01 * i
        boxes[0, i] = [x * sx, y * sy, (x + w) * sx, (y + h) * sy]
    return ids, scores, boxes, masks


def test_ground_truth_through_the_paddle_mapping_scores_100_and_damaged_masks_less(coco):
    """Boxes back by the resize factors (0.75, 0.8), maps pasted at original size, >= 0.5, RLE: box
    and mask AP 100; erasing a quarter of every map lowers mask AP only."""
    results = []
    for damage in (False, True):
        metric = COCODetectron(coco.ann_file, masks=True)
        gt = metric.mask.gt
        contiguous = {c["id"]: i for i, c in enumerate(gt.dataset["categories"])}
        for s in coco:
            img = gt.imgs[s.target["image_id"]]
            oh, ow = img["height"], img["width"]
            out = _paddle_outputs(gt, img["id"], (0.75, 0.8), contiguous, damage=damage)
            pred = detect(out, "ppdet", (round(0.8 * oh), round(0.75 * ow)), (oh, ow), (0.75, 0.8))
            metric.update(img["id"], pred["boxes"], pred["scores"], pred["labels"], masks=pred["masks"])
        results.append(metric.result())
    perfect, damaged = results
    assert perfect["AP"] == pytest.approx(100.0, rel=1e-12) and perfect["mask_AP"] == pytest.approx(100.0, rel=1e-12)
    assert damaged["AP"] == perfect["AP"] and damaged["mask_AP"] < 90.0


@pytest.mark.parametrize("name", PADDLE_MASK_MODELS)
def test_every_paddle_mask_rcnn_is_scored_on_masks(coco, name):
    metric = metric_for("coco", coco, registry.get(name))
    assert isinstance(metric, COCODetectron) and metric.mask is not None and metric.kps is None
    assert isinstance(metric_for("coco", coco, registry.get("FasterRCNN_ResNet18_FPN")), type(metric.box))


# ------------------------------------------------------------------------------ (b) the eval CLI


def _detecting_conversion(name, weights=None, init=None, seed=0, **_):
    """The torch module with random weights and class 5 planted over the score threshold everywhere
    (a random head scores ~1/81 per class: nothing to paste)."""
    spec = registry.get(name)
    torch.manual_seed(seed)
    module = spec.build().eval()
    with torch.no_grad():
        module.score.bias.zero_()
        module.score.bias[5] = 12.0
    return ConversionResult(spec, module, module.state_dict(), [], Path(f"{name}-random.pdparams"), "dygraph",
                            seed=seed, manifest={"source": {"sha256": "0" * 64}})


def test_eval_cli_reports_box_and_mask_ap_of_a_paddle_mask_rcnn(coco, tmp_path, monkeypatch):
    """One image: the detector's rows reach COCOMask as RLEs of the original image's size, and the
    table (box and mask stats in two tables: 24 columns do not fit one) and the JSON carry both."""
    monkeypatch.setattr(ev, "convert", _detecting_conversion)
    seen = []
    update = COCOMask.update
    monkeypatch.setattr(COCOMask, "update", lambda self, image_id, masks, scores, labels: (
        seen.append((image_id, [tuple(m["size"]) for m in masks])), update(self, image_id, masks, scores, labels)))
    out = tmp_path / "report.json"
    res = CliRunner().invoke(app, ["eval", MODEL, "--data", str(coco.root), "--init", "random", "--limit", "1",
                                   "--json", str(out)])
    assert res.exit_code == 0, res.stderr
    assert "mask_AP50" in res.stdout and "mask_AR100" in res.stdout and "1 of 7 samples" in res.stdout
    (image_id, sizes), = seen
    img = coco[0].target
    assert image_id == img["image_id"] and len(sizes) > 0
    assert set(sizes) == {tuple(COCOMask(coco.ann_file).gt.imgs[image_id][k] for k in ("height", "width"))}
    metrics = json.loads(out.read_text())["rows"][0]["metrics"]
    assert {"AP", "AP50", "AR100", "mask_AP", "mask_AP50", "mask_AR100"} <= set(metrics)
    assert all(metrics[k] is None or 0.0 <= metrics[k] <= 100.0 for k in ("AP", "mask_AP"))


def test_published_box_and_mask_ap_are_listed_beside_the_rows(coco, monkeypatch):
    """The published checkpoint's report carries both registry numbers (the CLI prints them as the
    table's caption), seeded weights none."""
    monkeypatch.setattr(ev, "convert", _detecting_conversion)
    job = ev.prepare(MODEL, coco, init="random", limit=1)
    monkeypatch.setattr(ev, "_is_published", lambda _r: True)
    published = ev.report(job, [], 0.0, []).published
    assert [(p["name"], p["value"], p["dataset"]) for p in published] == [
        ("mAP", 33.6, "COCO val2017 (bbox)"), ("mask_mAP", 30.5, "COCO val2017 (segm)")]
