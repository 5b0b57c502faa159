"""parity.datasets on the tiny fixtures: every kind opens, lengths, class orders and targets are
gluoncv's, and absent or malformed roots give one-line errors naming the path and the layout."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from parity.datasets import (COCO_CLASSES, KINDS, TASKS, VOC_CLASSES, DatasetError, dataset_kind_for, load_mask,
                             open_dataset)
from parity.fixtures import IMAGENET_SYNSETS, OBJECTS, SEG_VALUE, build_tiny, photos

N = 7  # the six photographs and one mirror image
NAMES = [name for name, _, _ in photos(N)]
NUM_CLASSES = {"imagenet": 1000, "folder": 5, "voc07": 20, "coco": 80, "coco-keypoints": 1, "ade20k": 150,
               "voc-seg": 21, "cityscapes": 19}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    base = tmp_path_factory.mktemp("tiny")
    return {k: build_tiny(k, base / k, n=N) for k in KINDS}


def _copy(tiny, kind: str, tmp_path: Path) -> Path:
    return Path(shutil.copytree(tiny[kind], tmp_path / kind))


def _one_line(exc: pytest.ExceptionInfo, *needles: str) -> str:
    msg = str(exc.value)
    assert "\n" not in msg
    for needle in needles:
        assert needle in msg, (needle, msg)
    return msg


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_opens_its_fixture(tiny, kind):
    ds = open_dataset(kind, tiny[kind])
    assert (ds.kind, len(ds), len(ds.classes)) == (kind, N, NUM_CLASSES[kind])
    assert len({s.id for s in ds}) == N
    assert all(s.path.is_file() and s.kind == kind for s in ds)
    if TASKS[kind] == "segmentation":
        for s in ds:
            mask = load_mask(s)
            assert mask.dtype == np.int64 and mask.shape == Image.open(s.path).size[::-1]
            assert mask.min() >= -1 and mask.max() < len(ds.classes)


@pytest.mark.parametrize("kind", KINDS)
def test_missing_root_is_one_line_naming_path_and_layout(tmp_path, kind):
    with pytest.raises(DatasetError) as exc:
        open_dataset(kind, tmp_path / "absent")
    _one_line(exc, str(tmp_path / "absent"), "expected")


@pytest.mark.parametrize("kind", [k for k in KINDS if k != "folder"])
def test_empty_root_names_the_expected_layout(tmp_path, kind):
    with pytest.raises(DatasetError) as exc:
        open_dataset(kind, tmp_path)
    _one_line(exc, str(tmp_path), "expected")


def test_unknown_kind():
    with pytest.raises(DatasetError, match="unknown dataset kind 'kitti'"):
        open_dataset("kitti", ".")


# ------------------------------------------------------------------------------ classification
def test_imagenet_labels_index_the_1000_sorted_synsets(tiny, tmp_path):
    ds = open_dataset("imagenet", tiny["imagenet"])
    assert list(ds.classes) == sorted(ds.classes)
    assert ds.classes.index("n02123045") == 281  # tabby: ImageNet's own label index
    by_synset = {ds.classes[s.target]: s for s in ds}
    assert set(by_synset) == set(IMAGENET_SYNSETS.values())
    # without the mapping file the order comes from gluoncv's table: the same labels
    root = _copy(tiny, "imagenet", tmp_path)
    (root / "LOC_synset_mapping.txt").unlink()
    assert [s.target for s in open_dataset("imagenet", root)] == [s.target for s in ds]


def test_imagenet_full_val_folder_orders_labels_by_sorted_folders(tiny, tmp_path):
    # gluoncv's ImageFolderDataset rule: with all 1000 folders and no mapping file, sorted folder names
    val = tmp_path / "val"
    for i in range(1000):
        (val / f"n{999 - i:08d}").mkdir(parents=True)
    img = next(iter(open_dataset("imagenet", tiny["imagenet"]))).path
    shutil.copy(img, val / "n00000007" / img.name)
    ds = open_dataset("imagenet", tmp_path)
    assert len(ds) == 1 and ds[0].target == 7 and ds.classes[7] == "n00000007"


def test_imagenet_flat_val_with_solution_csv(tiny, tmp_path):
    ds = open_dataset("imagenet", tiny["imagenet"])
    flat = tmp_path / "flat"
    (flat / "val").mkdir(parents=True)
    rows = ["ImageId,PredictionString"]
    for s in ds:
        shutil.copy(s.path, flat / "val" / s.path.name)
        rows.append(f"{s.path.stem},{ds.classes[s.target]} 1 2 30 40")
    shutil.copy(tiny["imagenet"] / "LOC_synset_mapping.txt", flat)
    with pytest.raises(DatasetError) as exc:
        open_dataset("imagenet", flat)
    _one_line(exc, str(flat / "val"), "LOC_val_solution.csv")
    (flat / "LOC_val_solution.csv").write_text("\n".join(rows) + "\n")
    got = {s.id: s.target for s in open_dataset("imagenet", flat)}
    assert got == {s.id: s.target for s in ds}


def test_imagenet_rejects_a_non_synset_folder(tiny, tmp_path):
    root = _copy(tiny, "imagenet", tmp_path)
    (root / "val" / "cats").mkdir()
    with pytest.raises(DatasetError) as exc:
        open_dataset("imagenet", root)
    _one_line(exc, str(root / "val" / "cats"), "not an ImageNet synset folder")


def test_folder_labels_are_sorted_folder_indices(tiny, tmp_path):
    ds = open_dataset("folder", tiny["folder"])
    assert ds.classes == ("cat", "cup", "motorcycle", "person", "rocket")
    assert all(ds.classes[s.target] == s.path.parent.name for s in ds)
    (tmp_path / "notes.txt").write_text("no class folders here")
    with pytest.raises(DatasetError) as exc:
        open_dataset("folder", tmp_path)
    _one_line(exc, str(tmp_path), "class")


# ------------------------------------------------------------------------------------ VOC07
def test_voc07_targets_are_zero_based_boxes_in_gluoncv_class_order(tiny):
    ds = open_dataset("voc07", tiny["voc07"])
    assert ds.classes == VOC_CLASSES
    for s, name, (_, img, objs) in zip(ds, NAMES, photos(N)):
        voc = [o for o in objs if o.name in ("person", "dining table", "cat", "motorcycle", "bicycle")]
        t = s.target
        assert t["boxes"].dtype == np.float32 and t["boxes"].shape == (len(voc), 4)
        np.testing.assert_array_equal(t["boxes"], np.array([o.box for o in voc], np.float32).reshape(-1, 4))
        assert (t["width"], t["height"]) == (img.shape[1], img.shape[0])
        assert list(t["difficult"]) == [o.difficult for o in voc]
    assert [VOC_CLASSES[i] for i in ds[4].target["labels"]] == ["motorbike", "bicycle"]
    assert ds[3].target["boxes"].shape == (0, 4)  # the rocket: no VOC object


def test_voc07_skips_unknown_names_and_invalid_boxes_like_gluoncv(tiny, tmp_path):
    root = _copy(tiny, "voc07", tmp_path)
    xml = root / "VOCdevkit/VOC2007/Annotations/000001.xml"
    text = xml.read_text()
    extra = ("<object><name>Unicorn</name><difficult>0</difficult><bndbox><xmin>5</xmin><ymin>5</ymin>"
             "<xmax>50</xmax><ymax>50</ymax></bndbox></object>"
             "<object><name> Dog </name><difficult></difficult><bndbox><xmin>5</xmin><ymin>5</ymin>"
             "<xmax>50</xmax><ymax>50</ymax></bndbox></object>"
             "<object><name>cat</name><difficult>0</difficult><bndbox><xmin>60</xmin><ymin>5</ymin>"
             "<xmax>40</xmax><ymax>50</ymax></bndbox></object>")
    xml.write_text(text.replace("</annotation>", extra + "</annotation>"))
    t = open_dataset("voc07", root)[0].target
    assert [VOC_CLASSES[i] for i in t["labels"]] == ["person", "dog"]  # name stripped and lower-cased
    assert list(t["difficult"]) == [0, 0]  # an empty flag is not difficult
    np.testing.assert_array_equal(t["boxes"][1], [4, 4, 49, 49])


def test_voc07_malformed_xml_and_missing_files(tiny, tmp_path):
    root = _copy(tiny, "voc07", tmp_path)
    base = root / "VOCdevkit/VOC2007"
    (base / "Annotations/000002.xml").write_text("<annotation><size><width>10</width></size>")
    with pytest.raises(DatasetError) as exc:
        open_dataset("voc07", root)
    _one_line(exc, str(base / "Annotations/000002.xml"), "malformed VOC annotation")
    (base / "JPEGImages/000003.jpg").unlink()
    with pytest.raises(DatasetError) as exc:
        open_dataset("voc07", root)
    _one_line(exc, "1 of 14 files missing", str(base / "JPEGImages/000003.jpg"))


def test_voc07_accepts_vocdevkit_or_voc2007_as_root(tiny):
    ids = [s.id for s in open_dataset("voc07", tiny["voc07"])]
    for root in (tiny["voc07"] / "VOCdevkit", tiny["voc07"] / "VOCdevkit/VOC2007"):
        assert [s.id for s in open_dataset("voc07", root)] == ids


# ------------------------------------------------------------------------------------- COCO
def test_coco_images_sorted_by_id_labels_contiguous_boxes_inclusive(tiny):
    ds = open_dataset("coco", tiny["coco"])
    assert ds.classes == COCO_CLASSES and ds.ann_file.name == "instances_val2017.json"
    ids = [s.target["image_id"] for s in ds]
    assert ids == sorted(ids) and ids[0] == 1000  # the json lists them in reverse
    coffee = ds[1].target
    assert [COCO_CLASSES[i] for i in coffee["labels"]] == ["dining table", "cup", "spoon"]
    assert list(coffee["labels"]) == [60, 41, 44]  # contiguous, not COCO's ids 67, 47, 50
    np.testing.assert_array_equal(coffee["boxes"], np.array([o.box for o in OBJECTS["coffee"]], np.float32))
    assert ds[3].target["boxes"].shape == (0, 4)  # images without objects stay (gluoncv's val: skip_empty=False)


def test_coco_malformed_json_wrong_categories_missing_image(tiny, tmp_path):
    root = _copy(tiny, "coco", tmp_path)
    ann = root / "annotations/instances_val2017.json"
    data = json.loads(ann.read_text())
    ann.write_text("{not json")
    with pytest.raises(DatasetError) as exc:
        open_dataset("coco", root)
    _one_line(exc, str(ann), "not a COCO annotation file")
    swapped = dict(data, categories=[data["categories"][1], data["categories"][0]] + data["categories"][2:])
    ann.write_text(json.dumps(swapped))
    with pytest.raises(DatasetError) as exc:
        open_dataset("coco", root)
    _one_line(exc, str(ann), "first at index 0")
    ann.write_text(json.dumps(data))
    (root / "val2017/000000001007.jpg").unlink()
    with pytest.raises(DatasetError) as exc:
        open_dataset("coco", root)
    _one_line(exc, "1 of 7 files missing", "000000001007.jpg")


def test_coco_keypoints_targets(tiny):
    ds = open_dataset("coco-keypoints", tiny["coco-keypoints"])
    assert ds.classes == ("person",) and ds.ann_file.name == "person_keypoints_val2017.json"
    people = {s.id: s.target for s in ds if len(s.target["boxes"])}
    assert sorted(people) == ["1000", "1035", "1042"]  # astronaut, cameraman, mirrored astronaut
    np.testing.assert_array_equal(people["1000"]["keypoints"][0], np.array(OBJECTS["astronaut"][0].keypoints))
    mirrored = people["1042"]["keypoints"][0]
    assert mirrored[1, 0] == 511 - OBJECTS["astronaut"][0].keypoints[2][0]  # right eye -> left eye, x mirrored
    assert all(s.target["keypoints"].shape == (len(s.target["boxes"]), 17, 3) for s in ds)


# ------------------------------------------------------------------------------ segmentation
def test_seg_masks_follow_gluoncv_label_mappings(tiny):
    voc = open_dataset("voc-seg", tiny["voc-seg"])
    m = load_mask(voc[0])  # astronaut: background 0, person 15, 255 boundary -> -1
    assert set(np.unique(m)) == {-1, 0, 15}
    assert voc.classes[15] == "person"
    ade = open_dataset("ade20k", tiny["ade20k"])
    m = load_mask(ade[1])  # coffee: wall/table, cup and spoon are ADE "other" (0) -> -1
    raw = np.asarray(Image.open(ade[1].target))
    np.testing.assert_array_equal(m, raw.astype(np.int64) - 1)
    assert ade.classes[SEG_VALUE["ade20k"]["person"] - 1].startswith("person")
    city = open_dataset("cityscapes", tiny["cityscapes"])
    m = load_mask(city[4])  # motorcycle: wall 12 -> 3, floor=road 7 -> 0, motorcycle 32 -> 17, bicycle 33 -> 18
    assert set(np.unique(m)) == {0, 3, 17, 18}


def test_seg_bad_masks_and_missing_pairs(tiny, tmp_path, caplog):
    root = _copy(tiny, "ade20k", tmp_path)
    masks = root / "ADEChallengeData2016/annotations/validation"
    (masks / "ADE_val_00000002.png").unlink()
    ds = open_dataset("ade20k", root)  # gluoncv skips an image without a mask
    assert len(ds) == N - 1 and "skipped" in caplog.text
    Image.new("RGB", (8, 8)).save(masks / "ADE_val_00000003.png")
    with pytest.raises(DatasetError) as exc:
        ds.load_mask(1)
    _one_line(exc, str(masks / "ADE_val_00000003.png"), "single-channel")
    voc = _copy(tiny, "voc-seg", tmp_path)
    (voc / "VOCdevkit/VOC2012/SegmentationClass/2007_000002.png").unlink()
    with pytest.raises(DatasetError) as exc:
        open_dataset("voc-seg", voc)
    _one_line(exc, "1 of 14 files missing", "2007_000002.png")


# ------------------------------------------------------------------------------------ misc
def test_build_tiny_refuses_a_non_empty_root(tmp_path):
    (tmp_path / "x").write_text("")
    with pytest.raises(DatasetError, match="not an empty folder"):
        build_tiny("folder", tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["x"]  # nothing half-built left behind


def test_dataset_kind_for_every_registered_model():
    from converters import registry
    for spec in registry.specs():
        # PP-OCR: no text dataset reader yet; PaddleSeg's COCO UNet: no published metric and no COCO
        # segmentation reader; each said in one line
        if spec.task.startswith("text-") or (spec.task != "classification" and not spec.metrics):
            with pytest.raises(DatasetError, match=f"{spec.name}: no dataset kind known"):
                dataset_kind_for(spec)
            continue
        assert TASKS[dataset_kind_for(spec)] == spec.task, spec.name
    expect = {"resnet50_v1": "imagenet", "cifar_resnet20_v1": "folder", "ssd_512_resnet50_v1_voc": "voc07",
              "yolo3_darknet53_coco": "coco", "simple_pose_resnet18_v1b": "coco-keypoints",
              "fcn_resnet50_ade": "ade20k", "fcn_resnet101_voc": "voc-seg", "fcn_resnet101_coco": "voc-seg",
              "psp_resnet101_citys": "cityscapes"}
    for name, kind in expect.items():
        assert dataset_kind_for(registry.get(name)) == kind, name
