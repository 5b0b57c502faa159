"""Task metrics, each equal to the number gluoncv's eval scripts print for the same predictions.
Accumulate with ``update`` (per image, in dataset order), then ``result()`` once: evaluation gathers
every rank's predictions before feeding a metric, so no metric state is ever merged.

VOC07 mAP and pixAcc/mIoU are re-implemented because their exact semantics are gluoncv's (the +1
pixel box convention, first-match-only assignment, how -1 labels and absent classes count); COCO
numbers come from pycocotools' COCOeval, as in gluoncv. All values are percentages."""
from __future__ import annotations

import contextlib
import io
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from converters.errors import ZooportError


class MetricError(ZooportError):
    """Predictions or labels a metric cannot score (shape, image id or class out of range)."""


def _np(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensors, on any device
        x = x.detach().cpu().numpy()
    return np.asarray(x)


# ---------------------------------------------------------------------------------- top-k
class TopK:
    """Top-1 is the first maximum (mx.metric.Accuracy's argmax); top-k ranks ties by class index."""

    def __init__(self, ks: tuple[int, ...] = (1, 5)):
        self.ks = tuple(ks)
        self.correct = dict.fromkeys(self.ks, 0)
        self.count = 0

    def update(self, scores, labels) -> None:
        scores, labels = _np(scores), _np(labels).reshape(-1)
        if scores.ndim != 2 or len(scores) != len(labels):
            raise MetricError(f"TopK.update: scores {scores.shape} and labels {labels.shape}; expected (B, C) and (B,)")
        self.update_ranked(np.argsort(-scores, axis=1, kind="stable")[:, : max(self.ks)], labels)

    def update_ranked(self, ranked, labels) -> None:
        """``ranked`` (B, >= max k): class indices best first (e.g. a gathered top-5)."""
        ranked, labels = _np(ranked), _np(labels).reshape(-1)
        if ranked.ndim != 2 or ranked.shape[1] < max(self.ks) or len(ranked) != len(labels):
            raise MetricError(f"TopK.update_ranked: ranked {ranked.shape} for {len(labels)} labels; "
                              f"expected (B, >= {max(self.ks)})")
        hit = ranked == labels[:, None]
        for k in self.ks:
            self.correct[k] += int(hit[:, :k].any(axis=1).sum())
        self.count += len(labels)

    def result(self) -> dict[str, float]:
        return {f"top{k}": 100.0 * self.correct[k] / self.count if self.count else float("nan") for k in self.ks}


# ------------------------------------------------------------------------------- VOC07 mAP
class VOC07MAP:
    """VOC mAP at IoU 0.5 as gluoncv's VOCMApMetric / VOC07MApMetric accumulate it: boxes compared
    with +1 on x2/y2 (integer pixels); each prediction, in score order, takes its best-IoU ground
    truth and is a true positive only if that one is still free (a taken best match is a false
    positive even if another box overlaps); matches to difficult objects are ignored; difficult
    objects do not count as positives. Classes without positives get AP nan and drop out of the
    mean. Sorting uses numpy's default argsort (reversed), as gluoncv does, so tied scores break the
    same way; feed images in the same order to get identical numbers."""

    def __init__(self, classes: tuple[str, ...] | None = None, iou_thresh: float = 0.5):
        self.classes, self.iou_thresh = classes, iou_thresh
        self._n_pos: dict[int, int] = defaultdict(int)
        self._scores: dict[int, list[np.ndarray]] = defaultdict(list)
        self._match: dict[int, list[np.ndarray]] = defaultdict(list)

    def update(self, pred_boxes, pred_labels, pred_scores, gt_boxes, gt_labels, gt_difficult=None) -> None:
        """One image; labels < 0 are padding and dropped, on both sides."""
        pb, pl, ps = _np(pred_boxes).reshape(-1, 4), _np(pred_labels).reshape(-1), _np(pred_scores).reshape(-1)
        gb, gl = _np(gt_boxes).reshape(-1, 4), _np(gt_labels).reshape(-1)
        gd = np.zeros(len(gl)) if gt_difficult is None else _np(gt_difficult).reshape(-1)
        if not (len(pb) == len(pl) == len(ps)) or not (len(gb) == len(gl) == len(gd)):
            raise MetricError(f"VOC07MAP.update: {len(pb)} boxes / {len(pl)} labels / {len(ps)} scores predicted, "
                              f"{len(gb)} boxes / {len(gl)} labels / {len(gd)} difficult flags in the ground truth")
        keep, gkeep = pl >= 0, gl >= 0
        pb, pl, ps = pb[keep], pl[keep].astype(int), ps[keep]
        gb, gl, gd = gb[gkeep], gl[gkeep].astype(int), gd[gkeep]
        for c in np.unique(np.concatenate((pl, gl))):
            order = ps[pl == c].argsort()[::-1]
            boxes, scores = pb[pl == c][order], ps[pl == c][order]
            gt, diff = gb[gl == c], gd[gl == c]
            self._n_pos[c] += int(np.logical_not(diff).sum())
            self._scores[c].append(scores)
            self._match[c].append(self._assign(boxes, gt, diff))

    def _assign(self, boxes: np.ndarray, gt: np.ndarray, diff: np.ndarray) -> np.ndarray:
        """1 true positive, 0 false positive, -1 ignored (matched a difficult object)."""
        if len(boxes) == 0 or len(gt) == 0:
            return np.zeros(len(boxes), np.int32)
        iou = _iou_plus1(boxes, gt)
        best = iou.argmax(axis=1)
        best[iou.max(axis=1) < self.iou_thresh] = -1
        taken = np.zeros(len(gt), bool)
        out = np.zeros(len(boxes), np.int32)
        for i, g in enumerate(best):
            if g < 0:
                continue
            out[i] = -1 if diff[g] else (0 if taken[g] else 1)
            taken[g] = True
        return out

    def _curves(self, c: int) -> tuple[np.ndarray | None, np.ndarray]:
        scores = np.concatenate(self._scores[c]) if self._scores[c] else np.zeros(0)
        match = np.concatenate(self._match[c]) if self._match[c] else np.zeros(0, np.int32)
        match = match[scores.argsort()[::-1]]
        tp, fp = np.cumsum(match == 1), np.cumsum(match == 0)
        with np.errstate(divide="ignore", invalid="ignore"):
            prec = tp / (fp + tp)
        return (tp / self._n_pos[c] if self._n_pos[c] > 0 else None), prec

    @staticmethod
    def ap_11point(rec: np.ndarray | None, prec: np.ndarray) -> float:
        """Mean of the best precision at recall >= 0, 0.1, ..., 1 (summed in order: bit-exact)."""
        if rec is None:
            return float("nan")
        prec, ap = np.nan_to_num(prec), 0.0
        for t in np.arange(0.0, 1.1, 0.1):
            reached = rec >= t
            ap += (np.max(prec[reached]) if reached.any() else 0) / 11.0
        return ap

    @staticmethod
    def ap_area(rec: np.ndarray | None, prec: np.ndarray) -> float:
        """Area under the monotone precision envelope, at every recall change."""
        if rec is None:
            return float("nan")
        mrec = np.concatenate(([0.0], rec, [1.0]))
        mpre = np.maximum.accumulate(np.concatenate(([0.0], np.nan_to_num(prec), [0.0]))[::-1])[::-1]
        step = np.where(mrec[1:] != mrec[:-1])[0]
        return np.sum((mrec[step + 1] - mrec[step]) * mpre[step + 1])

    def result(self) -> dict[str, Any]:
        if not self._n_pos:
            return {"mAP": float("nan"), "mAP_area": float("nan"), "per_class": {}}
        span = range(max(self._n_pos) + 1)  # gluoncv's class range: up to the largest label seen
        curves = [self._curves(c) if c in self._n_pos else (None, None) for c in span]
        ap11 = [self.ap_11point(*rp) for rp in curves]
        area = [self.ap_area(*rp) for rp in curves]
        name = (lambda c: self.classes[c] if self.classes and c < len(self.classes) else str(c))
        per_class = {name(c): {"AP": 100 * ap11[c], "AP_area": 100 * area[c]} for c in span if c in self._n_pos}
        return {"mAP": 100 * np.nanmean(ap11), "mAP_area": 100 * np.nanmean(area), "per_class": per_class}


def _iou_plus1(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of (N,4) x (M,4) xyxy boxes after x2, y2 += 1, in the inputs' dtype (as gluoncv's bbox_iou)."""
    a, b = a.copy(), b.copy()
    a[:, 2:] += 1
    b[:, 2:] += 1
    lo, hi = np.maximum(a[:, None, :2], b[:, :2]), np.minimum(a[:, None, 2:4], b[:, 2:4])
    inter = np.prod(hi - lo, axis=2) * (lo < hi).all(axis=2)
    area_a, area_b = np.prod(a[:, 2:4] - a[:, :2], axis=1), np.prod(b[:, 2:4] - b[:, :2], axis=1)
    return inter / (area_a[:, None] + area_b - inter)


# ---------------------------------------------------------------------------- COCO (pycocotools)
def _quiet(fn, *args):
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress on stdout
        return fn(*args)


class _COCOBase:
    iou_type = ""
    names: tuple[str, ...] = ()

    def __init__(self, ann_file: str | Path):
        from pycocotools.coco import COCO
        from parity.datasets import DatasetError
        self.ann_file = Path(ann_file)
        try:
            self.gt = _quiet(COCO, str(self.ann_file))
        except (OSError, ValueError, KeyError, TypeError, AssertionError) as exc:
            raise DatasetError(f"{self.ann_file}: not a readable COCO annotation file "
                               f"({exc.__class__.__name__}: {exc})") from None
        self.results: list[dict] = []
        self.image_ids: set[int] = set()
        self.coco_eval = None

    def _image(self, image_id) -> int:
        image_id = int(image_id)
        if image_id not in self.gt.imgs:
            raise MetricError(f"{self.ann_file}: no image with id {image_id}")
        self.image_ids.add(image_id)
        return image_id

    def result(self) -> dict[str, float]:
        """pycocotools' summary stats in %, over the images ``update`` saw (gluoncv evaluates the whole
        json; the same when every image was fed). A stat pycocotools marks absent (-1) is nan."""
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
        if self.results:
            dt = _quiet(self.gt.loadRes, self.results)
        else:  # loadRes cannot take an empty list: an empty result set scores 0 where there are objects
            dt = COCO()
            dt.dataset = {"images": list(self.gt.dataset["images"]), "annotations": [],
                          "categories": list(self.gt.dataset["categories"])}
            _quiet(dt.createIndex)
        ev = COCOeval(self.gt, dt, self.iou_type)
        ev.params.imgIds = sorted(self.image_ids)
        self._configure(ev)
        for step in (ev.evaluate, ev.accumulate, ev.summarize):
            _quiet(step)
        self.coco_eval = ev
        return {n: (100 * float(v) if v >= 0 else float("nan")) for n, v in zip(self.names, ev.stats)}

    def _configure(self, ev) -> None:
        pass


class COCOBox(_COCOBase):
    """COCO's 12 box metrics. Labels are contiguous (position in the json's category list, as
    gluoncv's COCODetection); boxes xyxy in original-image pixels with gluoncv's inclusive last pixel,
    so width = x2 - x1 + ``bias`` (1; PaddleDetection's json writer: 0); detections under
    ``score_thresh`` (gluoncv's 0.05; ppdet keeps every one: 0) are dropped."""

    iou_type = "bbox"
    names = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")

    def __init__(self, ann_file: str | Path, score_thresh: float = 0.05, bias: float = 1.0):
        super().__init__(ann_file)
        self.category_ids = [c["id"] for c in self.gt.dataset["categories"]]
        self.score_thresh, self.bias = score_thresh, bias

    def update(self, image_id, boxes, scores, labels) -> None:
        image_id = self._image(image_id)
        boxes = _np(boxes).reshape(-1, 4).astype(np.float64)
        scores, labels = _np(scores).reshape(-1).astype(np.float64), _np(labels).reshape(-1).astype(int)
        if not len(boxes) == len(scores) == len(labels):
            raise MetricError(f"COCOBox.update: {len(boxes)} boxes, {len(scores)} scores, {len(labels)} labels")
        for (x1, y1, x2, y2), s, c in zip(boxes, scores, labels):
            if 0 <= c < len(self.category_ids) and s >= self.score_thresh:
                self.results.append({"image_id": image_id, "category_id": self.category_ids[c],
                                     "bbox": [x1, y1, x2 - x1 + self.bias, y2 - y1 + self.bias],
                                     "score": s})


# ppdet's get_det_res / get_seg_res: width x2 - x1, every detection kept
PPDET_JSON = {"score_thresh": 0.0, "bias": 0.0}


class COCOMask(COCOBox):
    """COCO's 12 mask metrics (iouType 'segm'): ``masks`` are pycocotools RLEs in original-image
    pixels, one per detection; labels and the score threshold as COCOBox."""

    iou_type = "segm"

    def update(self, image_id, masks, scores, labels) -> None:
        image_id = self._image(image_id)
        scores, labels = _np(scores).reshape(-1).astype(np.float64), _np(labels).reshape(-1).astype(int)
        if not len(masks) == len(scores) == len(labels):
            raise MetricError(f"COCOMask.update: {len(masks)} masks, {len(scores)} scores, {len(labels)} labels")
        for rle, s, c in zip(masks, scores, labels):
            if 0 <= c < len(self.category_ids) and s >= self.score_thresh:
                counts = rle["counts"]
                rle = {"size": list(rle["size"]), "counts": counts.decode() if isinstance(counts, bytes) else counts}
                self.results.append({"image_id": image_id, "category_id": self.category_ids[c],
                                     "segmentation": rle, "score": s})


class COCODetectron:
    """Detectron's json evaluation: box AP, plus mask AP (Mask R-CNN) or keypoint AP (Keypoint
    R-CNN) on the same detections; ppdet's COCOMetric on a Paddle Mask R-CNN (bbox + segm) is the
    box and mask part. Keypoint nets are scored, boxes too, against the person_keypoints
    json, as Detectron's keypoint datasets are; an instance's keypoint score is its box score
    (Detectron's KRCNN.KEYPOINT_CONFIDENCE 'bbox'). Box stats keep COCOBox's names; the others are
    prefixed ``mask_`` / ``keypoint_``."""

    def __init__(self, ann_file: str | Path, masks: bool = False, keypoints_ann: str | Path | None = None,
                 score_thresh: float = 0.05, bias: float = 1.0):
        self.box = COCOBox(keypoints_ann or ann_file, score_thresh, bias)
        self.mask = COCOMask(ann_file, score_thresh) if masks else None
        self.kps = COCOKeypoints(keypoints_ann, rescore=False) if keypoints_ann else None

    def update(self, image_id, boxes, scores, labels, masks=None, keypoints=None) -> None:
        self.box.update(image_id, boxes, scores, labels)
        for metric, value, what in ((self.mask, masks, "masks"), (self.kps, keypoints, "keypoints")):
            if metric is None:
                continue
            if value is None:
                raise MetricError(f"COCODetectron.update: image {image_id} has no {what} to score")
            if metric is self.mask:
                metric.update(image_id, value, scores, labels)
            else:  # person is the only class of a keypoint net
                metric.update(image_id, np.asarray(value).reshape(-1, 17, 3), scores)

    def result(self) -> dict[str, float]:
        out = self.box.result()
        for prefix, metric in (("mask", self.mask), ("keypoint", self.kps)):
            if metric is not None:
                out.update({f"{prefix}_{k}": v for k, v in metric.result().items()})
        return out


class COCOKeypoints(_COCOBase):
    """COCO keypoint AP/AR (10 stats). ``keypoints`` (K, 17, 3) = x, y, confidence in image pixels;
    ``scores`` the person boxes' scores. As gluoncv's COCOKeyPointsMetric, an instance scores
    box score x mean confidence of its joints above ``in_vis_thresh`` (gluoncv's eval scripts pass 0);
    ``rescore=False`` uses ``scores`` as given."""

    iou_type = "keypoints"
    names = ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl")

    def __init__(self, ann_file: str | Path, rescore: bool = True, in_vis_thresh: float = 0.0):
        super().__init__(ann_file)
        person = [c["id"] for c in self.gt.dataset["categories"] if c.get("name") == "person"]
        if not person:
            from parity.datasets import DatasetError
            raise DatasetError(f"{self.ann_file}: no 'person' category (expected a person_keypoints json)")
        self.category_id, self.rescore, self.in_vis_thresh = person[0], rescore, in_vis_thresh

    def update(self, image_id, keypoints, scores) -> None:
        image_id = self._image(image_id)
        kps, scores = _np(keypoints).astype(np.float64), _np(scores).reshape(-1).astype(np.float64)
        if kps.ndim != 3 or kps.shape[1:] != (17, 3) or len(kps) != len(scores):
            raise MetricError(f"COCOKeypoints.update: keypoints {kps.shape}, scores {scores.shape}; "
                              "expected (K, 17, 3) and (K,)")
        for k, s in zip(kps, scores):
            if self.rescore:
                conf = [c for c in k[:, 2].tolist() if c > self.in_vis_thresh]
                s = s * (sum(conf) / len(conf) if conf else 0.0)  # summed in joint order, as gluoncv
            self.results.append({"image_id": image_id, "category_id": self.category_id,
                                 "keypoints": k.reshape(-1).tolist(), "score": float(s)})

    def _configure(self, ev) -> None:
        ev.params.useSegm = None  # as gluoncv sets it


# ----------------------------------------------------------------------------- segmentation
class SegMetric:
    """pixAcc and mIoU as gluoncv's SegmentationMetric: labels < 0 are ignored everywhere (the
    prediction there is dropped too); labels >= num_classes (e.g. an unmapped 255) still count as
    labelled, never correct, pixels in pixAcc while the prediction there still counts in that class's
    union; mIoU is the mean over all ``num_classes`` classes, an absent class contributing IoU 0.
    Counts are integer bincounts (gluoncv's unit-width histograms give the same integers)."""

    def __init__(self, num_classes: int):
        self.num_classes = num_classes
        self.inter = np.zeros(num_classes, np.int64)
        self.union = np.zeros(num_classes, np.int64)
        self.correct = 0
        self.labeled = 0

    def _count(self, values: np.ndarray) -> np.ndarray:
        v = values[(values >= 0) & (values < self.num_classes)]
        return np.bincount(v, minlength=self.num_classes).astype(np.int64)

    def update(self, pred, label) -> None:
        pred, label = _np(pred).astype(np.int64), _np(label).astype(np.int64)
        if pred.shape != label.shape:
            raise MetricError(f"SegMetric.update: prediction {pred.shape} and label {label.shape} differ")
        valid = label >= 0
        p, t = pred[valid], label[valid]
        hit = p == t
        self.correct += int(hit.sum())
        self.labeled += int(valid.sum())
        inter = self._count(p[hit])
        self.inter += inter
        self.union += self._count(p) + self._count(t) - inter

    def result(self) -> dict[str, Any]:
        eps = np.spacing(1)  # gluoncv's guard against empty denominators
        pix = 1.0 * self.correct / (eps + self.labeled)
        iou = 1.0 * self.inter / (eps + self.union)
        return {"pixAcc": 100 * pix, "mIoU": 100 * iou.mean(), "per_class_IoU": (100 * iou).tolist()}


def metric_for(kind: str, dataset, spec=None):
    """A fresh metric for evaluating ``spec`` on ``dataset`` (a parity.datasets.Dataset of ``kind``)."""
    from parity.datasets import TASKS, DatasetError
    if kind not in TASKS:
        raise DatasetError(f"unknown dataset kind {kind!r}")
    if spec is not None and spec.task != TASKS[kind]:
        raise DatasetError(f"{dataset.root}: a {kind} dataset scores {TASKS[kind]}, and {spec.name} is a "
                           f"{spec.task} model")
    if kind in ("imagenet", "folder"):
        return TopK((1, 5) if len(dataset.classes) >= 5 else (1,))
    if kind == "voc07":
        return VOC07MAP(dataset.classes)
    if kind == "coco" and spec is not None and (spec.framework == "detectron" or _scores_masks(spec)):
        return _instance_metric(dataset, spec)
    if kind == "coco" and spec is not None and spec.framework == "paddle":
        return COCOBox(dataset.ann_file, **PPDET_JSON)
    if kind == "coco":
        return COCOBox(dataset.ann_file)
    if kind == "coco-keypoints":
        return COCOKeypoints(dataset.ann_file)
    return SegMetric(len(dataset.classes))


MASK_METRICS = ("mask AP", "mask_mAP")  # Detectron's and PaddleX's names of a published segm AP


def _scores_masks(spec) -> bool:
    return any(m.name in MASK_METRICS for m in spec.metrics)


def _instance_metric(dataset, spec) -> COCODetectron:
    """Box AP, plus the mask or keypoint AP the model's published metrics name."""
    names = {m.name for m in spec.metrics}
    kps = None
    if "keypoint AP" in names:
        from parity.datasets import DatasetError
        kps = Path(dataset.ann_file).with_name("person_keypoints_val2017.json")
        if not kps.is_file():
            raise DatasetError(f"{dataset.root}: no annotations/person_keypoints_val2017.json ({spec.name} is "
                               "scored on COCO's person keypoints)")
    return COCODetectron(dataset.ann_file, masks=_scores_masks(spec), keypoints_ann=kps,
                         **(PPDET_JSON if spec.framework == "paddle" else {}))
