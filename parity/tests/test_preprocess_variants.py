"""Preprocessing parity against gluoncv's own transforms (the ``mxnet`` variant), on a corpus of 26 real
JPEG files (parity/jpegs.py: 4:4:4 / 4:2:2 / 4:2:0, progressive, grayscale, CMYK, EXIF-rotated,
17x23 to 1411x1411) decoded from their paths.

``cv2-exact`` equals ``mxnet`` bit for bit on every preset: no preset needs an exception. One step
needed own code: libmxnet links OpenCV 3.4.2, whose uint8 INTER_CUBIC (SSD/YOLO when both sides
grow, every pose crop) is not cv2 4.x's; cv2 4.11's kernel is off by one level on ~3% of values of
every such image (measured: 16/26 SSD-512, 10/26 YOLO-416, 26/26 pose inputs), so
``cubic_opencv342`` recomputes 3.4.2's arithmetic. Bilinear, area and nearest match cv2 4.x exactly.
And cv2 4.x's imread applies EXIF orientation where libmxnet's does not: decoding passes
IMREAD_IGNORE_ORIENTATION.

The other variants' uint8 differences are measured and pinned to what they are (bounds below are
the measured values with headroom, so a change of kernel or rounding shows up)."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from converters import registry
from converters.samples import sample_photos
from parity import preprocess as pp
from parity.jpegs import build_corpus
from parity.preprocess import PRESETS, Stages, pixel_differences, pixels, preprocess, preprocess_meta

pytestmark = pytest.mark.oracle


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return build_corpus(tmp_path_factory.mktemp("jpegs"))


@pytest.fixture(scope="module")
def mx():
    from converters.frameworks import import_mxnet
    return import_mxnet()


def _cmyk(path) -> bool:
    return "cmyk" in path.name


# ------------------------------------------------------------------------------ cv2-exact == mxnet

@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_cv2_exact_equals_gluoncv_bit_for_bit(corpus, preset):
    for path in corpus:
        ref, meta = preprocess_meta(path, preset, "mxnet")
        got, got_meta = preprocess_meta(path, preset, "cv2-exact")
        assert got.dtype == ref.dtype == torch.float32
        assert got.shape == ref.shape and torch.equal(got, ref), path.name
        assert got_meta == meta and tuple(ref.shape[1:]) == meta.input_hw
        # gluoncv's tensor is its uint8 stage (mxnet's pixels) through the shared float tail; the tail
        # is injective on uint8, so cv2-exact's pixels equal gluoncv's too
        assert torch.equal(pp.normalize(pixels(path, preset, "mxnet"), PRESETS[preset]), ref), path.name


def _registry_records():
    """Every distinct record in the registry, at each parity size too (verify's --size)."""
    out = {}
    for spec in registry.specs():
        if spec.prepare is not None:  # PP-OCR: image-dependent sizes, the model's own contract (tests/test_ocr_post.py)
            continue
        for size in (spec.preprocess.size, *spec.parity_sizes):
            rec = spec.preprocess if size == spec.preprocess.size else dataclasses.replace(spec.preprocess, size=size)
            out.setdefault(rec, spec.name)
    return out


@pytest.mark.parametrize("record,model", [pytest.param(r, n, id=f"{n}@{r.size[0]}x{r.size[1]}")
                                          for r, n in _registry_records().items()])
def test_every_registry_record_on_arrays_and_paths(corpus, record, model):
    """Existing callers pass a model's record and an RGB array (sample photos): cv2-exact is the
    reference there too, for every record size the parity suite runs."""
    arrays = sample_photos(("chelsea", "camera"))
    for name, image in arrays + [(p.name, p) for p in corpus[::6]]:
        assert torch.equal(preprocess(image, record), preprocess(image, record, "mxnet")), name


def test_explicit_pose_boxes(corpus):
    from converters.frameworks import import_gluoncv
    gcv_pose = import_gluoncv().data.transforms.pose
    rng = np.random.default_rng(0)
    for path in corpus[::3]:
        h, w = pp.decode(path, "opencv").shape[:2]
        x0, y0 = rng.uniform(0, w / 2), rng.uniform(0, h / 2)
        box = (x0, y0, rng.uniform(x0 + 2, w), rng.uniform(y0 + 2, h))
        ref, meta = preprocess_meta(path, "pose", "mxnet", box=box)
        assert torch.equal(preprocess(path, "pose", "cv2-exact", box=box), ref), path.name
        up = gcv_pose.upscale_bbox_fn(list(box), np.zeros((h, w, 3)), scale=1.25)
        assert meta.box == tuple(up)


def test_cubic_equals_libmxnet_on_random_sizes(mx):
    rng = np.random.default_rng(1)
    for _ in range(40):
        img = rng.integers(0, 256, (int(rng.integers(2, 80)), int(rng.integers(2, 80)), 3), dtype=np.uint8)
        h, w = int(rng.integers(1, 200)), int(rng.integers(1, 200))
        ref = mx.image.imresize(mx.nd.array(img, dtype="uint8"), w, h, interp=2).asnumpy()
        assert np.array_equal(pp.cubic_opencv342(img, (h, w)), ref), (img.shape, h, w)


@pytest.mark.parametrize("preset", ["imagenet", "segmentation"])  # mx.image.imread; Pillow
def test_mxnet_variant_names_bad_files(tmp_path, preset):
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(b"not a jpeg at all")
    for path, why in ((tmp_path / "missing.jpg", "no such image file"), (junk, "not an image")):
        with pytest.raises(pp.PreprocessError, match=f"{path.name}: {why}"):
            preprocess(path, preset, "mxnet")


def test_decoders_are_libmxnet_s(corpus, mx):
    for path in corpus:
        assert np.array_equal(pp.decode(path, "opencv"), mx.image.imread(str(path)).asnumpy()), path.name


# --------------------------------------------------------------------- the other variants, measured

@pytest.fixture(scope="module")
def differences(corpus):
    """Against cv2-exact, which equals gluoncv's pixels on every file (tested above) and is faster."""
    extra = {"imagenet": (Stages(decoder="pil"), Stages(crop="round")), "pose": (Stages(crop="round"),),
             "segmentation": (Stages(decoder="pil"),)}
    return {p: pixel_differences(corpus, p, ("pil", "torchvision", *extra.get(p, ())), against="cv2-exact")
            for p in PRESETS}


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_pil_port_differences(corpus, differences, preset):
    """The typical port (Pillow decode, antialiased resize, rounded crop). Measured mean/max levels
    on the 26 JPEGs: imagenet 1.60/181, cifar 2.37/39 (the stand-in 32x32 resize), ssd 1.00/48,
    yolo 0.88/48, rcnn 0.30/45, pose 2.39/155; segmentation 0/0 (gluoncv's is Pillow's pipeline)."""
    pil = differences[preset]["pil"]
    assert not pil["shape_differs"]
    if preset == "segmentation":
        assert pil["exact_images"] == len(corpus)
        return
    # identical only where no resampling happens: a JPEG already at the network input size
    unresized = {p.name for p in corpus if not _cmyk(p) and _unresized(p, PRESETS[preset])}
    assert {r["image"] for r in pil["per_image"] if r["max_abs"] == 0} == unresized
    assert 0.2 <= pil["mean_abs"] <= 3 and pil["max_abs"] >= 30  # antialiasing moves edges by tens of levels
    assert 0.25 <= pil["differing"] <= 0.75


def _unresized(path, record) -> bool:
    hw = pp.decode(path, "opencv").shape[:2]
    return pp._plan(record, Stages(), hw).resize_hw in (None, hw)


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_torchvision_port_is_the_pil_port_up_to_rounding(corpus, differences, preset):
    """torchvision v2's antialiased uint8 resize reproduces Pillow's up to rounding: at most 1 level
    for bilinear (measured 1 on every bilinear preset), 7 for bicubic (pose, measured 7)."""
    tv = pixel_differences(corpus, preset, ("torchvision",), against="pil")["torchvision"]
    assert tv["max_abs"] <= (8 if preset == "pose" else 1) and tv["mean_abs"] < 0.03
    assert abs(differences[preset]["torchvision"]["mean_abs"] - differences[preset]["pil"]["mean_abs"]) < 0.03


@pytest.mark.parametrize("preset", ["imagenet", "segmentation"])
def test_pillow_decoder_only_changes_cmyk(differences, corpus, preset):
    rows = {r["image"]: r for r in differences[preset]["decoder=pil"]["per_image"]}
    for path in corpus:
        if preset == "segmentation":  # the source decodes with Pillow already
            assert rows[path.name]["max_abs"] == 0
        elif _cmyk(path):
            assert 1 <= rows[path.name]["max_abs"] <= 2, path.name  # +-1 decode, through a bilinear resize
        else:
            assert rows[path.name]["max_abs"] == 0, path.name


@pytest.mark.parametrize("preset", ["imagenet", "pose"])
def test_rounded_crop_moves_pixels_exactly_where_offsets_differ(corpus, differences, preset):
    """Rounded crop offsets change the input exactly on the images where floor and round disagree
    (imagenet: a one-pixel shift on 4/26 images here; pose: a box corner moves, 6/26)."""
    rows = {r["image"]: r for r in differences[preset]["crop=round"]["per_image"]}
    moved = 0
    for path in corpus:
        hw = pp.decode(path, "opencv").shape[:2]
        floor, rnd = (pp._plan(PRESETS[preset], Stages(crop=c), hw).crop for c in ("floor", "round"))
        assert (floor != rnd) == (rows[path.name]["max_abs"] > 0), path.name
        assert max(abs(i - j) for i, j in zip(floor, rnd)) <= 1
        moved += floor != rnd
    assert moved >= 1  # the corpus exercises the rounding

