"""Tiny, valid datasets of every kind ``parity.datasets`` reads, made from the real photographs
scikit-image ships (no download), with hand-placed annotations: boxes drawn around the objects in
each photograph, masks as ellipses inscribed in those boxes, COCO keypoints placed on the two people.
Tests of datasets, metrics and evaluation run every kind offline in seconds on them.

``build_tiny(kind, root, n)`` writes ``n`` images (the six photographs, then their mirror images)
into ``root`` in the layout gluoncv reads, built in a temporary sibling folder and renamed into place.
"""
from __future__ import annotations

import json
import os
import shutil
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from converters.samples import sample_photos
from parity.datasets import (COCO_CLASSES, KINDS, VOC_CLASSES, VOC_SEG_CLASSES, DatasetError, gluoncv_table)


@dataclass(frozen=True)
class Obj:
    name: str  # COCO's class name
    box: tuple[float, float, float, float]  # x1, y1, x2, y2: 0-based, x2/y2 the last pixel (gluoncv)
    difficult: int = 0
    keypoints: tuple = ()  # 17 (x, y, v), COCO order


# (x, y, visibility) for nose, eyes, ears, shoulders, elbows, wrists, hips, knees, ankles (left first)
_ASTRONAUT_KPS = ((225, 110, 2), (243, 88, 2), (207, 88, 2), (268, 98, 2), (180, 98, 2), (300, 215, 2),
                  (85, 230, 2), (330, 330, 1), (50, 380, 2), (290, 430, 1), (150, 480, 2)) + ((0, 0, 0),) * 6
_CAMERAMAN_KPS = ((255, 165, 2), (243, 150, 2), (238, 148, 1), (200, 140, 2), (0, 0, 0), (150, 175, 2),
                  (70, 200, 1), (200, 280, 2), (110, 300, 1), (215, 225, 2), (290, 200, 2), (60, 420, 1),
                  (100, 430, 1), (70, 500, 1), (120, 505, 1), (0, 0, 0), (0, 0, 0))
OBJECTS: dict[str, tuple[Obj, ...]] = {
    "astronaut": (Obj("person", (20, 15, 365, 511), keypoints=_ASTRONAUT_KPS),),
    "coffee": (Obj("dining table", (0, 0, 599, 399)), Obj("cup", (164, 18, 413, 310)),
               Obj("spoon", (316, 67, 425, 328))),
    "chelsea": (Obj("cat", (0, 0, 450, 299)),),
    "rocket": (),  # nothing of VOC's or COCO's classes: an image without objects
    "stereo_motorcycle": (Obj("motorcycle", (91, 91, 687, 456)), Obj("bench", (36, 103, 286, 310)),
                          Obj("bicycle", (0, 146, 49, 231), difficult=1)),  # cut by the frame
    "camera": (Obj("person", (0, 65, 335, 511), keypoints=_CAMERAMAN_KPS),),
}
# scene bands for segmentation: (generic class, first row as a fraction of the height)
BACKGROUND = {"astronaut": (("wall", 0.0),), "coffee": (("wall", 0.0),), "chelsea": (("wall", 0.0),),
              "rocket": (("sky", 0.0), ("floor", 0.9)), "stereo_motorcycle": (("wall", 0.0), ("floor", 0.6)),
              "camera": (("sky", 0.0), ("grass", 0.45))}
IMAGENET_SYNSETS = {"astronaut": "n04266014", "coffee": "n07920052", "chelsea": "n02123045",  # space shuttle,
                    "rocket": "n03773504", "stereo_motorcycle": "n03785016", "camera": "n04485082"}  # espresso, ...
FOLDER_CLASS = {"astronaut": "person", "coffee": "cup", "chelsea": "cat", "rocket": "rocket",
                "stereo_motorcycle": "motorcycle", "camera": "person"}
VOC_NAME = {"person": "person", "dining table": "diningtable", "cat": "cat", "motorcycle": "motorbike",
            "bicycle": "bicycle"}
# mask values per kind (PNG values before gluoncv's mapping); absent: background of that kind
SEG_VALUE = {
    "voc-seg": {"person": 15, "dining table": 11, "cat": 8, "motorcycle": 14, "bicycle": 2},
    "ade20k": {"person": 13, "dining table": 16, "cat": 127, "motorcycle": 117, "bench": 70, "bicycle": 128,
               "cup": 0, "spoon": 0, "wall": 1, "sky": 3, "floor": 4, "grass": 10},  # 0: ADE's "other"
    "cityscapes": {"person": 24, "motorcycle": 32, "bicycle": 33, "wall": 12, "sky": 23, "floor": 7,
                   "grass": 22},  # labelIds; 0 unlabeled
}
COCO_IDS = (list(range(1, 12)) + list(range(13, 26)) + [27, 28] + list(range(31, 45)) + list(range(46, 66))
            + [67, 70] + list(range(72, 83)) + list(range(84, 91)))  # COCO's 80 category ids, in order
KEYPOINT_NAMES = ("nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder",
                  "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip",
                  "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle")
_FLIP_KPS = (0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15)  # left <-> right joints


def photos(n: int) -> list[tuple[str, np.ndarray, tuple[Obj, ...]]]:
    """``n`` (photograph name, RGB image, objects): the photographs, then mirrored, then again."""
    base = sample_photos(tuple(OBJECTS))
    out = []
    for i in range(n):
        name, img = base[i % len(base)]
        objs = OBJECTS[name]
        if (i // len(base)) % 2:
            img, objs = img[:, ::-1], tuple(_mirror(o, img.shape[1]) for o in objs)
        out.append((name, np.ascontiguousarray(img), objs))
    return out


def _mirror(o: Obj, width: int) -> Obj:
    x1, y1, x2, y2 = o.box
    kps = tuple((width - 1 - o.keypoints[j][0] if o.keypoints[j][2] else 0,) + tuple(o.keypoints[j][1:])
                for j in _FLIP_KPS) if o.keypoints else ()
    return Obj(o.name, (width - 1 - x2, y1, width - 1 - x1, y2), o.difficult, kps)


def build_tiny(kind: str, root: str | Path, n: int = 6) -> Path:
    """Write a tiny ``kind`` dataset of ``n`` images into ``root`` (absent or empty); returns ``root``,
    the path ``open_dataset(kind, root)`` takes."""
    if kind not in KINDS:
        raise DatasetError(f"unknown dataset kind {kind!r} (available: {', '.join(KINDS)})")
    root = Path(root)
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise DatasetError(f"{root}: exists and is not an empty folder; a fixture is built into a new one")
    tmp = root.with_name(f".{root.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir(parents=True)
        WRITERS[kind](tmp, photos(n))
        if root.exists():
            root.rmdir()
        os.rename(tmp, root)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root


# ------------------------------------------------------------------------------------ writers
def _jpeg(img: np.ndarray, path: Path) -> None:
    from PIL import Image
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(path, quality=90)


def _mask(kind: str, name: str, img: np.ndarray, objs: tuple[Obj, ...]) -> np.ndarray:
    """Scene bands, then each object as an ellipse in its box; VOC draws its 255 ring on the border."""
    from PIL import Image, ImageDraw
    values = SEG_VALUE[kind]
    h, w = img.shape[:2]
    canvas = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(canvas)
    for cls, top in BACKGROUND[name]:
        draw.rectangle((0, int(top * h), w, h), fill=values.get(cls, 0))
    for o in objs:
        if o.name in values:
            ring = dict(outline=255, width=3) if kind == "voc-seg" else {}
            draw.ellipse(o.box, fill=values[o.name], **ring)
    return np.asarray(canvas)


def _imagenet(root: Path, items) -> None:
    table = gluoncv_table("data.imagenet.classification", "_ILSVRC2012_Attr")
    if table is None:
        raise DatasetError("the ImageNet fixture needs gluoncv's synset table (gluoncv is not installed)")
    (root / "LOC_synset_mapping.txt").write_text("".join(f"{s} {long}\n" for s, _, long in table))
    for i, (name, img, _) in enumerate(items):
        _jpeg(img, root / "val" / IMAGENET_SYNSETS[name] / f"ILSVRC2012_val_{i + 1:08d}.JPEG")


def _folder(root: Path, items) -> None:
    for i, (name, img, _) in enumerate(items):
        _jpeg(img, root / FOLDER_CLASS[name] / f"{i:04d}.jpg")


def _voc07(root: Path, items) -> None:
    base = root / "VOCdevkit" / "VOC2007"
    ids = [f"{i + 1:06d}" for i in range(len(items))]
    for vid, (name, img, objs) in zip(ids, items):
        _jpeg(img, base / "JPEGImages" / f"{vid}.jpg")
        ann = ET.Element("annotation")
        ET.SubElement(ann, "folder").text = "VOC2007"
        ET.SubElement(ann, "filename").text = f"{vid}.jpg"
        size = ET.SubElement(ann, "size")
        for tag, v in zip(("width", "height", "depth"), (img.shape[1], img.shape[0], 3)):
            ET.SubElement(size, tag).text = str(v)
        for o in objs:
            if o.name not in VOC_NAME:
                continue
            obj = ET.SubElement(ann, "object")
            for tag, v in (("name", VOC_NAME[o.name]), ("pose", "Unspecified"), ("truncated", str(o.difficult)),
                           ("difficult", str(o.difficult))):
                ET.SubElement(obj, tag).text = v
            bb = ET.SubElement(obj, "bndbox")
            for tag, v in zip(("xmin", "ymin", "xmax", "ymax"), o.box):
                ET.SubElement(bb, tag).text = str(int(v) + 1)  # VOC's XML is 1-based
        (base / "Annotations").mkdir(parents=True, exist_ok=True)
        ET.ElementTree(ann).write(base / "Annotations" / f"{vid}.xml")
    (base / "ImageSets" / "Main").mkdir(parents=True)
    (base / "ImageSets" / "Main" / "test.txt").write_text("".join(f"{i}\n" for i in ids))


def _coco_ann(ann_id: int, image_id: int, o: Obj) -> dict:
    x1, y1, x2, y2 = o.box
    w, h = x2 - x1 + 1, y2 - y1 + 1
    t = np.linspace(0, 2 * np.pi, 16, endpoint=False)  # the inscribed ellipse as a polygon
    poly = np.stack([x1 + w / 2 + w / 2 * np.cos(t), y1 + h / 2 + h / 2 * np.sin(t)], 1).round(1)
    return {"id": ann_id, "image_id": image_id, "category_id": COCO_IDS[COCO_CLASSES.index(o.name)],
            "bbox": [float(x1), float(y1), float(w), float(h)], "area": round(float(np.pi * w * h / 4), 1),
            "iscrowd": 0, "segmentation": [poly.reshape(-1).tolist()]}


def _coco_common(root: Path, items, keypoints: bool) -> None:
    images, anns = [], []
    for i, (name, img, objs) in enumerate(items):
        image_id = 1000 + 7 * i  # sparse ids: an id is not a position
        fn = f"{image_id:012d}.jpg"
        _jpeg(img, root / "val2017" / fn)
        images.append({"id": image_id, "file_name": fn, "coco_url": f"http://images.cocodataset.org/val2017/{fn}",
                       "height": int(img.shape[0]), "width": int(img.shape[1])})
        for o in objs:
            if keypoints and o.name != "person":
                continue
            a = _coco_ann(len(anns) + 1, image_id, o)
            if keypoints:
                a["keypoints"] = [int(v) for kp in o.keypoints for v in kp]
                a["num_keypoints"] = sum(1 for kp in o.keypoints if kp[2] > 0)
            anns.append(a)
    if keypoints:
        cats = [{"id": 1, "name": "person", "supercategory": "person", "keypoints": list(KEYPOINT_NAMES),
                 "skeleton": [[16, 14], [14, 12], [17, 15], [15, 13], [12, 13], [6, 12], [7, 13], [6, 7], [6, 8],
                              [7, 9], [8, 10], [9, 11], [2, 3], [1, 2], [1, 3], [2, 4], [3, 5], [4, 6], [5, 7]]}]
    else:
        cats = [{"id": cid, "name": n} for cid, n in zip(COCO_IDS, COCO_CLASSES)]
    data = {"info": {"description": "zooport tiny fixture"}, "images": images[::-1],  # unsorted on purpose
            "annotations": anns, "categories": cats}
    name = "person_keypoints_val2017.json" if keypoints else "instances_val2017.json"
    (root / "annotations").mkdir()
    (root / "annotations" / name).write_text(json.dumps(data))


def _seg_pngs(kind: str, items, image_path, mask_path, palette: bool = False) -> None:
    from PIL import Image
    for i, (name, img, objs) in enumerate(items):
        ip, mp = image_path(i), mask_path(i)
        if ip.suffix == ".png":
            ip.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(ip, compress_level=1)  # Cityscapes ships PNG photographs
        else:
            _jpeg(img, ip)
        mask = Image.fromarray(_mask(kind, name, img, objs), "L")
        if palette:
            mask = mask.convert("P")
            mask.putpalette(voc_palette())
        mp.parent.mkdir(parents=True, exist_ok=True)
        mask.save(mp)


def voc_palette() -> list[int]:
    """VOC's colour map: class bits spread over the high bits of R, G and B."""
    out = []
    for i in range(256):
        r = g = b = 0
        for j in range(8):
            r |= ((i >> (3 * j)) & 1) << (7 - j)
            g |= ((i >> (3 * j + 1)) & 1) << (7 - j)
            b |= ((i >> (3 * j + 2)) & 1) << (7 - j)
        out += [r, g, b]
    return out


def _voc_seg(root: Path, items) -> None:
    base = root / "VOCdevkit" / "VOC2012"
    ids = [f"2007_{i + 1:06d}" for i in range(len(items))]
    _seg_pngs("voc-seg", items, lambda i: base / "JPEGImages" / f"{ids[i]}.jpg",
              lambda i: base / "SegmentationClass" / f"{ids[i]}.png", palette=True)
    (base / "ImageSets" / "Segmentation").mkdir(parents=True)
    (base / "ImageSets" / "Segmentation" / "val.txt").write_text("".join(f"{i}\n" for i in ids))


def _ade20k(root: Path, items) -> None:
    base = root / "ADEChallengeData2016"
    _seg_pngs("ade20k", items, lambda i: base / "images" / "validation" / f"ADE_val_{i + 1:08d}.jpg",
              lambda i: base / "annotations" / "validation" / f"ADE_val_{i + 1:08d}.png")


def _cityscapes(root: Path, items) -> None:
    stem = "frankfurt/frankfurt_000000_{:06d}_{}.png"
    _seg_pngs("cityscapes", items, lambda i: root / "leftImg8bit" / "val" / stem.format(i, "leftImg8bit"),
              lambda i: root / "gtFine" / "val" / stem.format(i, "gtFine_labelIds"))


WRITERS = {"imagenet": _imagenet, "folder": _folder, "voc07": _voc07,
           "coco": lambda root, items: _coco_common(root, items, keypoints=False),
           "coco-keypoints": lambda root, items: _coco_common(root, items, keypoints=True),
           "voc-seg": _voc_seg, "ade20k": _ade20k, "cityscapes": _cityscapes}
assert set(WRITERS) == set(KINDS), "every dataset kind has a fixture"
assert len(COCO_IDS) == len(COCO_CLASSES) and len(VOC_SEG_CLASSES) == 21 and len(VOC_CLASSES) == 20
