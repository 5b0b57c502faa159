"""Evaluation datasets from local folders, in the layouts gluoncv's own dataset classes read, with the
same image order, class order and target conventions, so a folder gluoncv evaluates works here as is.

Kinds and what gluoncv does that we keep (facts read from gluoncv 0.10.5's data package):
- imagenet: ``val/<synset>/*`` (mx ImageFolderDataset: sorted folders, sorted .jpg/.jpeg/.png files).
  Labels index the 1000 synsets in sorted order, which is the folder order on a full val folder; a
  partial folder keeps the 1000-class indices (gluoncv would renumber it). Kaggle's flat
  ``val/*.JPEG`` + ``LOC_val_solution.csv`` also works.
- voc07: ``VOCdevkit/VOC2007``: ids from ImageSets/Main/test.txt, boxes 1-based in the XML become
  0-based (x - 1), unknown class names and invalid boxes are skipped, ``difficult`` kept for the metric.
- coco / coco-keypoints: ``annotations/{instances,person_keypoints}_val2017.json`` + ``val2017/``;
  images sorted by id, contiguous labels = position in the json's category list, boxes
  (x, y, x + w - 1, y + h - 1) clipped to the last pixel.
- ade20k (``ADEChallengeData2016`` validation: mask - 1, so 0 "other" becomes -1 = ignored), voc-seg
  (``VOCdevkit/VOC2012`` val: 255 boundary becomes -1), cityscapes (gtFine labelIds -> 19 trainIds,
  the rest -1). Targets are mask paths; ``load_mask`` applies the mapping.
- folder: one folder per class, sorted (CIFAR-10's class names sort into its label order)."""
from __future__ import annotations

import ast
import csv
import importlib.util
import json
import logging
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

import numpy as np

from converters.errors import ZooportError

log = logging.getLogger(__name__)

IMAGE_EXTS = (".jpg", ".jpeg", ".png")  # mx ImageFolderDataset's list, compared lower-cased

LAYOUTS = {
    "imagenet": "ILSVRC2012 val as gluoncv reads it: val/<synset>/*.JPEG (or flat val/*.JPEG beside "
                "LOC_val_solution.csv)",
    "voc07": "VOCdevkit/VOC2007 with ImageSets/Main/test.txt, Annotations/<id>.xml, JPEGImages/<id>.jpg",
    "coco": "a COCO root with annotations/instances_val2017.json and val2017/*.jpg",
    "coco-keypoints": "a COCO root with annotations/person_keypoints_val2017.json and val2017/*.jpg",
    "ade20k": "ADEChallengeData2016 with images/validation/*.jpg and annotations/validation/*.png",
    "voc-seg": "VOCdevkit/VOC2012 with ImageSets/Segmentation/val.txt, JPEGImages/<id>.jpg, "
               "SegmentationClass/<id>.png",
    "cityscapes": "a Cityscapes root with leftImg8bit/val/<city>/*_leftImg8bit.png and "
                  "gtFine/val/<city>/*_gtFine_labelIds.png",
    "folder": "one sub-folder per class holding .jpg/.jpeg/.png images",
}
KINDS = tuple(LAYOUTS)
TASKS = {"imagenet": "classification", "folder": "classification", "voc07": "detection",
         "coco": "detection", "coco-keypoints": "pose", "ade20k": "segmentation",
         "voc-seg": "segmentation", "cityscapes": "segmentation"}

VOC_CLASSES = ("aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
               "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
               "train", "tvmonitor")
VOC_SEG_CLASSES = ("background", "airplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
                   "chair", "cow", "diningtable", "dog", "horse", "motorcycle", "person",
                   "potted-plant", "sheep", "sofa", "train", "tv")  # gluoncv's segmentation names
COCO_CLASSES = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog",
    "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag",
    "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite", "baseball bat",
    "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle", "wine glass", "cup", "fork",
    "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange", "broccoli", "carrot", "hot dog",
    "pizza", "donut", "cake", "chair", "couch", "potted plant", "bed", "dining table", "toilet", "tv",
    "laptop", "mouse", "remote", "keyboard", "cell phone", "microwave", "oven", "toaster", "sink",
    "refrigerator", "book", "clock", "vase", "scissors", "teddy bear", "hair drier", "toothbrush")
CITYSCAPES_CLASSES = ("road", "sidewalk", "building", "wall", "fence", "pole", "traffic light",
                      "traffic sign", "vegetation", "terrain", "sky", "person", "rider", "car", "truck",
                      "bus", "train", "motorcycle", "bicycle")
CITYSCAPES_LABEL_IDS = (7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33)
ADE_NUM_CLASSES = 150


class DatasetError(ZooportError):
    """A dataset path is missing or malformed; names the path and the layout that was expected."""

    hint = "point --data at the dataset root (see the layout in the message)"


@dataclass(frozen=True)
class Sample:
    id: str
    path: Path  # the image file
    target: Any  # int label | dict of arrays | mask path (see the module docstring)
    kind: str = ""  # the dataset kind, so load_mask knows the label mapping


@dataclass(frozen=True)
class Dataset:
    kind: str
    root: Path
    classes: tuple[str, ...]
    samples: tuple[Sample, ...]
    ann_file: Path | None = None  # coco kinds: the json pycocotools evaluates against

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> Sample:
        return self.samples[i]

    def __iter__(self):
        return iter(self.samples)

    def load_mask(self, i: int) -> np.ndarray:
        return load_mask(self.samples[i])


def open_dataset(kind: str, root: str | Path) -> Dataset:
    if kind not in READERS:
        raise DatasetError(f"unknown dataset kind {kind!r} (available: {', '.join(KINDS)})")
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DatasetError(f"{root}: no such directory (expected {LAYOUTS[kind]})")
    ds = READERS[kind](root)
    if not ds.samples:
        raise DatasetError(f"{root}: no {kind} samples found (expected {LAYOUTS[kind]})")
    return ds


# ------------------------------------------------------------------------------------ helpers
def _base(root: Path, kind: str, subdirs: tuple[str, ...], marker: str) -> Path:
    """The first of root/<subdir> holding ``marker``; a one-line error naming root if none does."""
    for sub in subdirs:
        if (root / sub / marker).exists():
            return root / sub
    raise DatasetError(f"{root}: no {marker} under it (expected {LAYOUTS[kind]})")


def _require(paths: list[Path], root: Path, kind: str) -> None:
    """All problems at once: how many files are missing and the first few."""
    missing = [p for p in paths if not p.is_file()]
    if missing:
        shown = ", ".join(str(p) for p in missing[:3]) + (", ..." if len(missing) > 3 else "")
        raise DatasetError(f"{root}: {len(missing)} of {len(paths)} files missing: {shown} "
                           f"(expected {LAYOUTS[kind]})")


def _ids(split_file: Path) -> list[str]:
    return [line.strip() for line in split_file.read_text().splitlines() if line.strip()]


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTS)


@lru_cache(maxsize=None)
def gluoncv_table(module: str, name: str) -> tuple | None:
    """A literal table from the installed gluoncv's source, read as data (no import: gluoncv needs
    MXNet); for long class lists (ImageNet synsets, ADE20K names) we do not retype. None if absent."""
    spec = importlib.util.find_spec("gluoncv")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent.joinpath(*module.split(".")).with_suffix(".py")
    if not path.is_file():
        return None
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == name for t in node.targets):
            return tuple(ast.literal_eval(node.value))
    return None


# ---------------------------------------------------------------------------- classification
def _synsets(root: Path, folders: list[str], places: tuple[Path, ...]) -> tuple[str, ...]:
    """Label order: a LOC_synset_mapping.txt / synsets.txt in ``places`` (one synset per line, first
    token), else all 1000 sorted folders (gluoncv's order), else the 1000 synsets of gluoncv's table."""
    for name in ("LOC_synset_mapping.txt", "synsets.txt"):
        for where in places:
            f = where / name
            if f.is_file():
                out = tuple(line.split()[0] for line in f.read_text().splitlines() if line.strip())
                if len(set(out)) != len(out) or not out:
                    raise DatasetError(f"{f}: expected one unique synset per line")
                return out
    if len(folders) == 1000:
        return tuple(sorted(folders))
    table = gluoncv_table("data.imagenet.classification", "_ILSVRC2012_Attr")
    if table is None:
        raise DatasetError(f"{root}: {len(folders)} synset folders and no LOC_synset_mapping.txt; "
                           "the label order needs all 1000 folders or that file")
    return tuple(row[0] for row in table)


def _imagenet(root: Path) -> Dataset:
    val = next((d for d in (root / "val", root / "ILSVRC/Data/CLS-LOC/val", root) if d.is_dir()), root)
    folders = sorted(p.name for p in val.iterdir() if p.is_dir())
    if folders:
        classes = _synsets(root, folders, (root, root.parent) if val == root else (root,))
        index = {s: i for i, s in enumerate(classes)}
        unknown = [f for f in folders if f not in index]
        if unknown:
            raise DatasetError(f"{val / unknown[0]}: not an ImageNet synset folder ({len(unknown)} such; "
                               f"expected {LAYOUTS['imagenet']})")
        samples = [Sample(p.stem, p, index[f], "imagenet") for f in folders for p in _images(val / f)]
        return Dataset("imagenet", root, classes, tuple(samples))
    solution = next((d / "LOC_val_solution.csv" for d in (root, val.parent)
                     if (d / "LOC_val_solution.csv").is_file()), None)
    if solution is None:
        raise DatasetError(f"{val}: neither synset sub-folders nor a LOC_val_solution.csv beside it "
                           f"(expected {LAYOUTS['imagenet']})")
    classes = _synsets(solution.parent, [], (solution.parent,))
    index = {s: i for i, s in enumerate(classes)}
    labels = {}
    with solution.open(newline="") as fh:
        for row in csv.DictReader(fh):
            try:
                labels[row["ImageId"]] = index[row["PredictionString"].split()[0]]
            except (KeyError, IndexError, TypeError):
                raise DatasetError(f"{solution}: malformed row {row!r} (expected ImageId,PredictionString "
                                   "starting with a synset)") from None
    images = _images(val)
    unlabeled = [p.name for p in images if p.stem not in labels]
    if unlabeled:
        raise DatasetError(f"{solution}: no label for {len(unlabeled)} images in {val} (first {unlabeled[0]})")
    return Dataset("imagenet", root, classes, tuple(Sample(p.stem, p, labels[p.stem], "imagenet") for p in images))


def _folder(root: Path) -> Dataset:
    classes = tuple(sorted(p.name for p in root.iterdir() if p.is_dir()))
    if not classes:
        raise DatasetError(f"{root}: no class sub-folders (expected {LAYOUTS['folder']})")
    samples = [Sample(f"{c}/{p.stem}", p, i, "folder") for i, c in enumerate(classes) for p in _images(root / c)]
    return Dataset("folder", root, classes, tuple(samples))


# --------------------------------------------------------------------------------- detection
def _voc_boxes(xml: Path) -> dict:
    try:
        tree = ET.parse(xml).getroot()
        size = tree.find("size")
        width, height = float(size.find("width").text), float(size.find("height").text)
        boxes, labels, difficult = [], [], []
        for obj in tree.iter("object"):
            name = obj.find("name").text.strip().lower()
            if name not in VOC_CLASSES:
                continue
            d = obj.find("difficult")
            try:
                diff = int(d.text) if d is not None and d.text else 0
            except ValueError:
                diff = 0  # gluoncv: an unparsable flag means not difficult
            bb = obj.find("bndbox")
            x1, y1, x2, y2 = (float(bb.find(k).text) - 1 for k in ("xmin", "ymin", "xmax", "ymax"))
            if not (0 <= x1 < width and 0 <= y1 < height and x1 < x2 <= width and y1 < y2 <= height):
                log.warning("%s: invalid box %s skipped (as gluoncv does)", xml, (x1, y1, x2, y2))
                continue
            boxes.append((x1, y1, x2, y2))
            labels.append(VOC_CLASSES.index(name))
            difficult.append(diff)
    except (ET.ParseError, AttributeError, TypeError, ValueError) as exc:
        raise DatasetError(f"{xml}: malformed VOC annotation ({exc.__class__.__name__}: {exc}); expected "
                           "<size><width/><height/></size> and <object><name/><bndbox>xmin..ymax</bndbox>") from None
    return {"boxes": np.asarray(boxes, np.float32).reshape(-1, 4), "labels": np.asarray(labels, np.int64),
            "difficult": np.asarray(difficult, np.int64), "width": int(width), "height": int(height)}


def _voc07(root: Path) -> Dataset:
    base = _base(root, "voc07", ("VOC2007", "VOCdevkit/VOC2007", "."), "ImageSets/Main/test.txt")
    ids = _ids(base / "ImageSets/Main/test.txt")
    xmls = [base / "Annotations" / f"{i}.xml" for i in ids]
    jpgs = [base / "JPEGImages" / f"{i}.jpg" for i in ids]
    _require(xmls + jpgs, base, "voc07")
    samples = [Sample(i, j, _voc_boxes(x), "voc07") for i, j, x in zip(ids, jpgs, xmls)]
    return Dataset("voc07", root, VOC_CLASSES, tuple(samples))


def _coco_json(root: Path, kind: str, name: str) -> tuple[Path, dict]:
    ann = root / "annotations" / name
    if not ann.is_file():
        raise DatasetError(f"{root}: no annotations/{name} (expected {LAYOUTS[kind]})")
    try:
        data = json.loads(ann.read_text())
        data["images"], data["annotations"], data["categories"]  # noqa: B018 - presence check
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise DatasetError(f"{ann}: not a COCO annotation file ({exc.__class__.__name__}: {exc}); expected "
                           "a json object with images, annotations and categories") from None
    return ann, data


def _coco_images(root: Path, kind: str, data: dict) -> list[tuple[dict, Path]]:
    """Images sorted by id; the path from coco_url's last two parts, as gluoncv resolves it."""
    out = []
    for entry in sorted(data["images"], key=lambda e: e["id"]):
        parts = entry.get("coco_url", "").split("/")[-2:]
        out.append((entry, root.joinpath(*parts) if len(parts) == 2 else root / "val2017" / entry["file_name"]))
    _require([p for _, p in out], root, kind)
    return out


def _coco_box(bbox, width: float, height: float) -> tuple[float, float, float, float]:
    """gluoncv's xywh -> xyxy (inclusive last pixel) and clip to [0, size - 1]."""
    x, y, w, h = (float(v) for v in bbox)
    x2, y2 = x + max(w - 1, 0.0), y + max(h - 1, 0.0)
    return (min(max(x, 0.0), width - 1), min(max(y, 0.0), height - 1),
            min(max(x2, 0.0), width - 1), min(max(y2, 0.0), height - 1))


def _by_image(data: dict) -> dict[int, list[dict]]:
    out: dict[int, list[dict]] = {}
    for a in data["annotations"]:
        out.setdefault(a["image_id"], []).append(a)
    return out


def _coco(root: Path) -> Dataset:
    ann, data = _coco_json(root, "coco", "instances_val2017.json")
    names = tuple(c["name"] for c in data["categories"])
    if names != COCO_CLASSES:
        first = next((i for i, (a, b) in enumerate(zip(names, COCO_CLASSES)) if a != b), min(len(names), 80))
        raise DatasetError(f"{ann}: categories differ from COCO's 80 in gluoncv's order (first at index "
                           f"{first}, {len(names)} categories); the detectors' labels would not line up")
    contiguous = {c["id"]: i for i, c in enumerate(data["categories"])}
    anns, samples = _by_image(data), []
    for entry, path in _coco_images(root, "coco", data):
        w, h = entry["width"], entry["height"]
        boxes, labels, crowd = [], [], []
        for a in anns.get(entry["id"], []):
            if a.get("area", 0) < 0 or a.get("ignore", 0) == 1:
                continue
            box = _coco_box(a["bbox"], w, h)
            if a.get("area", 0) > 0 and box[2] > box[0] and box[3] > box[1]:  # gluoncv's validity rule
                boxes.append(box)
                labels.append(contiguous[a["category_id"]])
                crowd.append(int(a.get("iscrowd", 0)))
        target = {"image_id": entry["id"], "boxes": np.asarray(boxes, np.float32).reshape(-1, 4),
                  "labels": np.asarray(labels, np.int64), "iscrowd": np.asarray(crowd, np.int64),
                  "width": w, "height": h}
        samples.append(Sample(str(entry["id"]), path, target, "coco"))
    return Dataset("coco", root, COCO_CLASSES, tuple(samples), ann_file=ann)


def _coco_keypoints(root: Path) -> Dataset:
    ann, data = _coco_json(root, "coco-keypoints", "person_keypoints_val2017.json")
    if [c["name"] for c in data["categories"]] != ["person"]:
        raise DatasetError(f"{ann}: expected one category, 'person' (a person_keypoints json)")
    anns, samples = _by_image(data), []
    for entry, path in _coco_images(root, "coco-keypoints", data):
        w, h = entry["width"], entry["height"]
        boxes, kps = [], []
        for a in anns.get(entry["id"], []):
            k = np.asarray(a.get("keypoints", [0] * 51), np.float32).reshape(17, 3)
            box = _coco_box(a["bbox"], w, h)
            # gluoncv keeps non-crowd people with a labelled joint and a box of positive area
            if a.get("iscrowd", 0) or k.max() == 0 or (k[:, 2] > 0).sum() < 1:
                continue
            if a.get("area", 0) <= 0 or box[2] <= box[0] or box[3] <= box[1]:
                continue
            boxes.append(box)
            kps.append(k)
        target = {"image_id": entry["id"], "boxes": np.asarray(boxes, np.float32).reshape(-1, 4),
                  "keypoints": np.asarray(kps, np.float32).reshape(-1, 17, 3), "width": w, "height": h}
        samples.append(Sample(str(entry["id"]), path, target, "coco-keypoints"))
    return Dataset("coco-keypoints", root, ("person",), tuple(samples), ann_file=ann)


# ------------------------------------------------------------------------------ segmentation
def _pairs(kind: str, base: Path, pairs: list[tuple[str, Path, Path]]) -> tuple[Sample, ...]:
    """gluoncv skips an image whose mask is absent (with a print); so do we, with a warning."""
    kept = [(i, img, m) for i, img, m in pairs if m.is_file()]
    if len(kept) < len(pairs):
        log.warning("%s: %d images without a mask skipped (as gluoncv does)", base, len(pairs) - len(kept))
    return tuple(Sample(i, img, m, kind) for i, img, m in kept)


def _ade20k(root: Path) -> Dataset:
    base = _base(root, "ade20k", ("ADEChallengeData2016", "."), "images/validation")
    ann = base / "annotations/validation"
    imgs = sorted(p for p in (base / "images/validation").iterdir() if p.name.endswith(".jpg"))
    names = gluoncv_table("data.ade20k.segmentation", "CLASSES")
    classes = names if names and len(names) == ADE_NUM_CLASSES else tuple(f"ade{i}" for i in range(1, 151))
    return Dataset("ade20k", root, classes, _pairs("ade20k", base, [(p.stem, p, ann / f"{p.stem}.png") for p in imgs]))


def _voc_seg(root: Path) -> Dataset:
    base = _base(root, "voc-seg", ("VOC2012", "VOCdevkit/VOC2012", "."), "ImageSets/Segmentation/val.txt")
    ids = _ids(base / "ImageSets/Segmentation/val.txt")
    jpgs = [base / "JPEGImages" / f"{i}.jpg" for i in ids]
    pngs = [base / "SegmentationClass" / f"{i}.png" for i in ids]
    _require(jpgs + pngs, base, "voc-seg")  # gluoncv asserts every listed pair exists
    samples = tuple(Sample(i, j, m, "voc-seg") for i, j, m in zip(ids, jpgs, pngs))
    return Dataset("voc-seg", root, VOC_SEG_CLASSES, samples)


def _cityscapes(root: Path) -> Dataset:
    base = _base(root, "cityscapes", (".", "cityscapes"), "leftImg8bit/val")
    imgs = sorted((base / "leftImg8bit/val").rglob("*.png"))
    pairs = [(p.stem.replace("_leftImg8bit", ""), p,
              base / "gtFine/val" / p.parent.name / p.name.replace("leftImg8bit", "gtFine_labelIds")) for p in imgs]
    return Dataset("cityscapes", root, CITYSCAPES_CLASSES, _pairs("cityscapes", base, pairs))


_CITY_LUT = np.full(256, -1, np.int64)
_CITY_LUT[list(CITYSCAPES_LABEL_IDS)] = np.arange(len(CITYSCAPES_LABEL_IDS))


def load_mask(sample: Sample) -> np.ndarray:
    """int64 HxW class indices as gluoncv's datasets hand them to SegmentationMetric (-1 = ignored)."""
    from PIL import Image
    path = Path(sample.target)
    try:
        with Image.open(path) as im:
            raw = np.asarray(im)
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{path}: not a readable mask image ({exc})") from None
    if raw.ndim != 2:
        raise DatasetError(f"{path}: a {raw.shape} array; expected a single-channel (palette or grey) PNG of "
                           "class indices")
    mask = raw.astype(np.int64)
    if sample.kind == "voc-seg":
        mask[mask == 255] = -1  # VOC's object boundaries
    elif sample.kind == "ade20k":
        mask -= 1  # 0 is "other": not one of the 150 classes
    elif sample.kind == "cityscapes":
        mask = _CITY_LUT[np.clip(raw, 0, 255).astype(np.int64)]
    else:
        raise DatasetError(f"{path}: sample of kind {sample.kind!r} has no mask")
    return mask


READERS: dict[str, Callable[[Path], Dataset]] = {
    "imagenet": _imagenet, "voc07": _voc07, "coco": _coco, "coco-keypoints": _coco_keypoints,
    "ade20k": _ade20k, "voc-seg": _voc_seg, "cityscapes": _cityscapes, "folder": _folder}


def dataset_kind_for(spec) -> str:
    """The kind a model is evaluated on, from its task and its published metrics' dataset text."""
    text = " ".join(m.dataset for m in spec.metrics).lower()
    name = spec.name.lower()
    rules = {  # (kind, words in the metrics' dataset text, model-name suffixes), first match wins
        "classification": (("folder", ("cifar", "digits"), ("_digits",)), ("imagenet", ("imagenet",), ())),
        "detection": (("voc07", ("voc",), ("_voc",)), ("coco", ("coco",), ("_coco",))),
        "pose": (("coco-keypoints", ("coco",), ("_coco",)),),
        # COCO-trained segmenters predict VOC's 21 classes ("MS-COCO val, VOC's 21 classes"): VOC val
        # is the local set with those classes
        "segmentation": (("ade20k", ("ade20k",), ("_ade",)), ("cityscapes", ("cityscapes",), ("_citys",)),
                         ("voc-seg", ("voc",), ("_voc", "_coco"))),
    }
    for kind, words, suffixes in rules.get(spec.task, ()):
        if any(w in text for w in words) or name.endswith(suffixes):
            return kind
    if spec.task == "classification":
        return "imagenet"
    raise DatasetError(f"{spec.name}: no dataset kind known for a {spec.task} model evaluated on "
                       f"{text.strip()!r} (kinds: {', '.join(KINDS)})")
