"""Predictions for evaluation: run one network (the converted torch module, or gluoncv's own net in
MXNet) on one preprocessed image, then map its outputs onto what the dataset's metric reads:
class scores, boxes in original-image pixels, label-aligned class maps, keypoints in image pixels.
Every mapping follows gluoncv's eval scripts (eval_ssd / eval_yolo / eval_faster_rcnn,
segmentation val, heatmap_to_coord) or the Paddle tools' (ppdet's box scaling, PaddleSeg's val at
original size), so the torch and source-framework rows go through the same arithmetic."""
from __future__ import annotations

import copy
import time
import zlib
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

from converters.errors import ZooportError

FRAMEWORKS = ("torch", "mxnet", "paddle")


def source_framework(spec: Any) -> str:
    """The --framework name of the framework a model's source runs in."""
    return {"gluon": "mxnet", "paddle": "paddle"}.get(spec.framework, spec.framework)


def has_nms_variants(spec: Any) -> bool:
    """gluoncv detectors end in DetectionNMS (mxnet/torchvision/naive variants); Paddle detectors end
    in Paddle's own multiclass_nms semantics, with no alternative to switch to."""
    return spec.task == "detection" and spec.framework == "gluon"
TOPK = 5  # classification keeps the top-5 class indices: all top-1/top-5 read, 200x less to gather


class EvalError(ZooportError):
    """An evaluation that cannot give a trustworthy number (wrong sample count, bad option)."""


def _numpy(value: Any) -> Any:
    if isinstance(value, dict):  # torchvision detection outputs: one dict per image
        return {k: _numpy(v) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return tuple(_numpy(v) for v in value)
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return value.asnumpy() if hasattr(value, "asnumpy") else np.asarray(value)


# --------------------------------------------------------------------------------------- runners


class TorchNet:
    """The converted module. A detector runs once per image: its pre-NMS rows are replayed through
    each further NMS variant (its output is its NMS stage's output, checked on every call)."""

    def __init__(self, module: torch.nn.Module):
        from converters.arch.nms import DetectionNMS
        self.module = module.eval()
        nms = getattr(module, "nms", None)
        self.nms = nms if isinstance(nms, DetectionNMS) else None
        self._copies: dict[str, torch.nn.Module] = {}

    def _nms(self, variant: str) -> torch.nn.Module:
        if variant not in self._copies:
            self._copies[variant] = copy.deepcopy(self.nms)
            self._copies[variant].variant = variant
        return self._copies[variant]

    def __call__(self, x: torch.Tensor, variants: Sequence[str | None]) -> dict[str | None, tuple[Any, float]]:
        """{nms variant: (outputs as numpy, seconds)}; a non-detector answers under None."""
        if self.nms is None:
            t = time.perf_counter()
            with torch.inference_mode():
                out = self.module(x)
            return {None: (_numpy(out), time.perf_counter() - t)}
        seen: dict[str, Any] = {}
        self.nms.variant = variants[0]
        hooks = (self.nms.register_forward_pre_hook(lambda _m, a: seen.update(args=a, t0=time.perf_counter())),
                 self.nms.register_forward_hook(lambda _m, _a, o: seen.update(out=o, t1=time.perf_counter())))
        try:
            t = time.perf_counter()
            with torch.inference_mode():
                out = self.module(x)
            total = time.perf_counter() - t
        finally:
            for h in hooks:
                h.remove()
        if out is not seen.get("out"):
            raise EvalError(f"{type(self.module).__name__}: its output is not its NMS stage's output; "
                            "NMS variants cannot be replayed")
        body = total - (seen["t1"] - seen["t0"])
        result = {variants[0]: (_numpy(out), total)}
        for v in variants[1:]:
            t = time.perf_counter()
            with torch.inference_mode():
                o = self._nms(v)(*seen["args"])
            result[v] = (_numpy(o), body + time.perf_counter() - t)
        return result


class MXNetNet:
    """gluoncv's own network, loaded by MXNet from the same source file, hybridized as gluoncv's eval
    scripts run it; its NMS is MXNet's box_nms (no other variant exists on this side)."""

    def __init__(self, result):
        from .verify import oracle_for
        oracle = oracle_for(result)
        self.mx, self.net = oracle.mx, oracle.net
        self.net.hybridize()
        self.detector = result.spec.task == "detection"

    def __call__(self, x: torch.Tensor, variants: Sequence[str | None]) -> dict[str | None, tuple[Any, float]]:
        bad = [v for v in variants if v != ("mxnet" if self.detector else None)]
        if bad:
            raise EvalError(f"the MXNet net runs its own NMS only, not {', '.join(map(str, bad))}")
        t = time.perf_counter()
        out = _numpy(self.net(self.mx.nd.array(x.numpy())))
        return {variants[0]: (out, time.perf_counter() - t)}


class PaddleNet:
    """The source net run by Paddle itself (the parity oracle: the PaddleClas/PaddleDetection/PaddleSeg
    dygraph net, or Paddle's executor on an exported program), post-processing included."""

    def __init__(self, result):
        from .verify import oracle_for
        self.oracle = oracle_for(result)

    def __call__(self, x: torch.Tensor, variants: Sequence[str | None]) -> dict[str | None, tuple[Any, float]]:
        t = time.perf_counter()
        out, _ = self.oracle.run(x.numpy(), [])
        return {variants[0]: (_numpy(out), time.perf_counter() - t)}


# ------------------------------------------------------------------------------ post-processing


@dataclass(frozen=True)
class Packed:
    """An int16 map, zlib-compressed: class maps are gathered across processes (ADE val: 2000 of them)."""

    shape: tuple[int, ...]
    data: bytes

    @classmethod
    def of(cls, arr: np.ndarray) -> "Packed":
        return cls(tuple(arr.shape), zlib.compress(np.ascontiguousarray(arr, dtype=np.int16).tobytes(), 1))

    def unpack(self) -> np.ndarray:
        return np.frombuffer(zlib.decompress(self.data), dtype=np.int16).reshape(self.shape).astype(np.int64)


def classify(out: Any, k: int = TOPK) -> np.ndarray:
    """The top-k class indices, best first; ties rank by class index (TopK.update's stable order)."""
    logits = np.asarray(out[0] if isinstance(out, tuple) else out, dtype=np.float32).reshape(-1)
    return np.argsort(-logits, kind="stable")[:k].astype(np.int32)


def detect(out: tuple, preset: str, input_hw: tuple[int, int], orig_hw: tuple[int, int],
           scale: tuple[float, float] | None = None) -> dict:
    """Valid detections (id >= 0) with boxes in original-image pixels, as gluoncv's eval scripts:
    eval_ssd / eval_yolo clip to [0, input side] (clip(0, H) on square inputs) and score VOC at input
    scale against ground truth resized by the val transform: VOC's +1 pixel IoU changes under per-axis
    scaling, so those boxes are kept too ("input_boxes", "input_scale"); COCO's metric scales each axis
    by original / input. eval_faster_rcnn clips to the last pixel (W-1, H-1) and multiplies both axes
    by im_scale = original H / resized H. ppdet (get_pred) divides by its resize factors, clips to the
    original and drops empty boxes; a Paddle Mask R-CNN's probabilities then become "masks" (RLEs)."""
    if preset == "detectron":
        return _detectron(out[0], input_hw, orig_hw, scale)
    ids, scores, boxes = (np.asarray(o)[0] for o in out[:3])
    keep = ids.reshape(-1) >= 0
    boxes = boxes.reshape(-1, 4)[keep].astype(np.float64)
    (h, w), (oh, ow) = input_hw, orig_hw
    extra = {}
    if preset == "rcnn":
        boxes = np.clip(boxes, 0, [w - 1, h - 1, w - 1, h - 1]) * (oh / h)
    elif preset == "ppdet" and scale is not None:
        # ppdet's get_pred: divide by its resize factors, clip to the original image, drop empty boxes;
        # in float32 as its tensors (float64 flips a few pasted pixels: 3 of 47M measured)
        sx, sy = scale
        f32 = np.float32
        boxes = np.clip(boxes.astype(f32) / np.array([sx, sy, sx, sy], f32), f32(0), np.array([ow, oh, ow, oh], f32))
        nonempty = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        keep[keep] = nonempty
        boxes = boxes[nonempty].astype(np.float64)
        if len(out) > 3:  # Mask R-CNN: probabilities (1, K, M, M) on the same rows
            extra = {"masks": _ppdet_masks(np.asarray(out[3])[0][keep], boxes, orig_hw)}
    else:
        clipped = np.clip(boxes, 0, [w, h, w, h])
        extra = {"input_boxes": clipped, "input_scale": (w / ow, h / oh)}
        boxes = clipped * [ow / w, oh / h, ow / w, oh / h]
    return {"boxes": boxes, "labels": ids.reshape(-1)[keep].astype(np.int64),
            "scores": scores.reshape(-1)[keep].astype(np.float64), **extra}


def _detectron(out: dict, input_hw: tuple[int, int], orig_hw: tuple[int, int],
               scale: tuple[float, float] | None) -> dict:
    """A torchvision-style dict (labels 1..80, Detectron's class index) -> contiguous 0-based labels,
    boxes divided by im_scale and clipped to the original's last pixel (Detectron's json boxes)."""
    (h, w), (oh, ow) = input_hw, orig_hw
    sx, sy = scale if scale is not None else (w / ow, h / oh)
    boxes = np.asarray(out["boxes"], dtype=np.float64).reshape(-1, 4) / [sx, sy, sx, sy]
    boxes = np.clip(boxes, 0, [ow - 1, oh - 1, ow - 1, oh - 1])
    pred = {"boxes": boxes, "labels": np.asarray(out["labels"]).reshape(-1).astype(np.int64) - 1,
            "scores": np.asarray(out["scores"]).reshape(-1).astype(np.float64)}
    if "masks" in out:  # Mask R-CNN: probabilities pasted at input size, (N, 1, h, w)
        pred["masks"] = _detectron_masks(np.asarray(out["masks"]), (oh, ow))
    if "keypoints" in out:  # Keypoint R-CNN: (N, 17, 3) x, y, 1 in input pixels
        kps = np.asarray(out["keypoints"], dtype=np.float64).reshape(-1, 17, 3).copy()
        kps[..., 0] /= sx
        kps[..., 1] /= sy
        kps[..., 2] = 1.0  # Detectron's json writes v = 1 for every joint
        pred["keypoints"] = kps
    return pred


def _rle(binary: np.ndarray) -> dict:
    """One (H, W) binary mask as a pycocotools RLE: the compact form gathered to rank 0."""
    from pycocotools import mask as mask_util
    return mask_util.encode(np.asfortranarray(binary, dtype=np.uint8))


def _detectron_masks(probs: np.ndarray, orig_hw: tuple[int, int]) -> list[dict]:
    """Each pasted probability map resized to the original image (cv2 bilinear), binarised at > 0.5
    (Detectron's MRCNN.THRESH_BINARIZE), RLE-encoded."""
    import cv2
    (oh, ow), out = orig_hw, []
    for p in probs.reshape(-1, *probs.shape[-2:]):
        if p.shape != (oh, ow):
            p = cv2.resize(p.astype(np.float32), (ow, oh), interpolation=cv2.INTER_LINEAR)
        out.append(_rle(p > 0.5))
    return out


PASTE_ROWS = 16  # rows pasted at once: a (rows, H, W, 2) sampling grid, ~40 MB at 640x480


def _ppdet_masks(probs: np.ndarray, boxes: np.ndarray, orig_hw: tuple[int, int]) -> list[dict]:
    """ppdet's MaskPostProcess + get_seg_res: each M x M map grid-sampled straight onto the original
    image at its box in original pixels (paste_masks: pixel centres, >= 0.5), RLE-encoded. Not
    _detectron_masks: Detectron pastes at input size, resizes, and keeps > 0.5."""
    from converters.arch.paddle_mask_rcnn import paste_masks
    (oh, ow), out = orig_hw, []
    for i in range(0, len(probs), PASTE_ROWS):
        rows = slice(i, i + PASTE_ROWS)
        binary = paste_masks(torch.from_numpy(np.ascontiguousarray(probs[rows], dtype=np.float32)),
                             torch.from_numpy(boxes[rows]), oh, ow).numpy()
        out += [_rle(b) for b in binary]
    return out


def gt_at_input_scale(boxes: np.ndarray, scale: tuple[float, float]) -> np.ndarray:
    """Ground truth as gluoncv's SSD/YOLO val transforms resize it: scaled per axis in float64, then
    cast to the image's float32."""
    out = np.asarray(boxes, dtype=np.float64).copy()
    sx, sy = scale
    out[:, 0::2] *= sx
    out[:, 1::2] *= sy
    return out.astype(np.float32)


def segment(out: Any) -> np.ndarray:
    """Class map of the main output (gluoncv's eval tuple is (main, aux)); first maximum on ties."""
    main = out[0] if isinstance(out, tuple) else out
    return np.asarray(main)[0].argmax(0)


def segment_at_original(out: Any, orig_hw: tuple[int, int]) -> np.ndarray:
    """PaddleSeg's val: the logits resized back to the original image (reverse_transform: bilinear,
    half-pixel centres = torch's align_corners=False), then the first maximum; its labels stay at
    the original size (val transforms do not touch them)."""
    main = out[0] if isinstance(out, tuple) else out
    logits = torch.from_numpy(np.ascontiguousarray(main, dtype=np.float32))
    if tuple(logits.shape[-2:]) != tuple(orig_hw):
        logits = torch.nn.functional.interpolate(logits, size=tuple(orig_hw), mode="bilinear", align_corners=False)
    return segment(logits.numpy())


def seg_label(mask: np.ndarray, resized_hw: tuple[int, int], crop: tuple[int, int],
              size: tuple[int, int]) -> np.ndarray:
    """The label map transformed like the image: nearest resize to the image's resized size, then
    the same crop. PIL's NEAREST on a 32-bit image: gluoncv's segmentation datasets resize their
    masks with PIL's NEAREST (its pixel-centre sampling, not OpenCV's corner sampling)."""
    from PIL import Image
    if tuple(mask.shape) != tuple(resized_hw):
        img = Image.fromarray(np.ascontiguousarray(mask, dtype=np.int32), mode="I")
        mask = np.asarray(img.resize((resized_hw[1], resized_hw[0]), Image.NEAREST), dtype=np.int64)
    y0, x0 = crop
    out = mask[y0:y0 + size[0], x0:x0 + size[1]]
    if out.shape != tuple(size):
        raise EvalError(f"label map {mask.shape} cannot be cropped to {size} at {crop}")
    return out


def keypoints(out: Any, boxes: Sequence[Sequence[float]]) -> np.ndarray:
    """(P, 17, 3) [x, y, peak] in image pixels, by gluoncv's heatmap_to_coord (the peak cell mapped
    linearly onto the box the heatmap was cut from)."""
    from converters.arch.simple_pose import heatmap_to_coord
    coords, maxvals = heatmap_to_coord(torch.from_numpy(np.asarray(out)), boxes)
    return np.concatenate([coords.numpy(), maxvals.numpy()], -1).astype(np.float64)


# ------------------------------------------------------------------------------ per-task glue


class LabelCache:
    """A sample's label map, loaded once and shared by every pipeline run on that sample."""

    def __init__(self, sample: Any):
        self.sample, self._mask = sample, None

    def mask(self) -> np.ndarray:
        if self._mask is None:
            from .datasets import load_mask
            self._mask = load_mask(self.sample)
        return self._mask


def views(spec: Any, sample: Any, pipeline: Any) -> list[tuple[torch.Tensor, Any]]:
    """The network inputs of one sample under one preprocessing: [(x (1, 3, H, W), Meta)]; a pose
    sample gives one per person box (its ground-truth boxes, as gluoncv's validation with GT boxes)."""
    from .preprocess import preprocess_meta
    if spec.task != "pose":
        x, meta = preprocess_meta(sample.path, spec.preprocess, pipeline)
        return [(x[None], meta)]
    out = []
    for box in np.asarray(sample.target["boxes"]).reshape(-1, 4):
        x, meta = preprocess_meta(sample.path, spec.preprocess, pipeline, box=tuple(float(v) for v in box))
        out.append((x[None], meta))
    return out


def postprocess(spec: Any, outs: Sequence[tuple[Any, torch.Tensor, Any]], label: LabelCache) -> Any:
    """A sample's network outputs [(output, input, Meta)] -> the compact prediction gathered to rank 0."""
    if spec.task == "pose":
        rows = [keypoints(o[0] if isinstance(o, tuple) else o, [m.box]) for o, _, m in outs]
        return np.concatenate(rows) if rows else np.zeros((0, 17, 3))
    (out, x, meta), = outs
    if spec.task == "classification":
        return classify(out)
    if spec.task == "detection":
        return detect(out, spec.preprocess.preset, tuple(x.shape[-2:]), tuple(meta.orig_hw), tuple(meta.affine[:2]))
    if spec.task == "segmentation" and spec.preprocess.preset == "paddleseg":  # scored at original size
        pred, target = segment_at_original(out, tuple(meta.orig_hw)), label.mask()
        if pred.shape != target.shape:
            raise EvalError(f"{label.sample.target}: label map {target.shape}, image {tuple(meta.orig_hw)}")
        return Packed.of(pred), Packed.of(target)
    if spec.task == "segmentation":
        pred = segment(out)
        target = seg_label(label.mask(), tuple(meta.resized_hw), tuple(meta.crop), pred.shape)
        return Packed.of(pred), Packed.of(target)
    raise EvalError(f"{spec.name}: no evaluation for task {spec.task!r}")


def update(metric: Any, spec: Any, sample: Any, pred: Any) -> None:
    """Feed one sample's prediction to the dataset's metric (rank 0, dataset order)."""
    t = sample.target
    if spec.task == "classification":
        metric.update_ranked(pred[None], np.array([t]))
    elif spec.task == "detection" and isinstance(t, dict) and "image_id" in t:  # COCO
        extra = {k: pred[k] for k in ("masks", "keypoints") if k in pred}  # Mask / Keypoint R-CNN
        metric.update(t["image_id"], pred["boxes"], pred["scores"], pred["labels"], **extra)
    elif spec.task == "detection" and "input_scale" in pred:  # VOC at input scale, as eval_ssd/eval_yolo
        metric.update(pred["input_boxes"], pred["labels"], pred["scores"],
                      gt_at_input_scale(t["boxes"], pred["input_scale"]), t["labels"], t["difficult"])
    elif spec.task == "detection":
        metric.update(pred["boxes"], pred["labels"], pred["scores"], t["boxes"], t["labels"], t["difficult"])
    elif spec.task == "segmentation":
        metric.update(pred[0].unpack(), pred[1].unpack())
    elif spec.task == "pose":
        metric.update(t["image_id"], pred, np.ones(len(pred)))  # ground-truth boxes score 1
    else:
        raise EvalError(f"{spec.name}: no metric update for task {spec.task!r}")
