"""parity/preprocess.py without MXNet: stages, ladder, presets, geometry and meta, errors, and the
JPEG corpus (parity/tests/test_preprocess_variants.py holds the oracle comparisons)."""
from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

from converters import registry
from converters.errors import ZooportError
from converters.samples import sample_photos
from parity import preprocess as pp
from parity.jpegs import CASES, build_corpus
from parity.preprocess import (PRESETS, VARIANTS, PreprocessError, Stages, ladder, pixels, preprocess,
                               preprocess_meta, resolve, variant_name)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return build_corpus(tmp_path_factory.mktemp("jpegs"))


@pytest.fixture(scope="module")
def photo():
    return sample_photos(("chelsea",))[0][1]  # 300x451: odd long side


# ------------------------------------------------------------------------------- stages, ladder

def test_variants_are_the_issue_s_four():
    assert VARIANTS == {"mxnet": None, "cv2-exact": Stages(), "pil": Stages("pil", "pil", "round"),
                        "torchvision": Stages("pil", "torchvision", "round")}
    assert [variant_name(v) for v in VARIANTS] == list(VARIANTS)
    assert variant_name(Stages(crop="round", color="BGR")) == "crop=round,color=BGR"


@pytest.mark.parametrize("field,value", [("decoder", "simplejpeg"), ("resize", "bilinear"), ("crop", "ceil"),
                                         ("color", "rgb")])
def test_stages_reject_unknown_choices(field, value):
    with pytest.raises(PreprocessError, match=f"Stages.{field}='{value}'"):
        Stages(**{field: value})


def test_ladder_moves_one_field_at_a_time_in_order():
    steps = ladder("torchvision")
    assert [f for f, _ in steps] == ["decoder", "resize", "crop"]
    assert [s for _, s in steps] == [Stages("pil"), Stages("pil", "torchvision"), Stages("pil", "torchvision", "round")]
    assert ladder("cv2-exact") == [] and ladder("mxnet") == []
    assert ladder(Stages(color="BGR")) == [("color", Stages(color="BGR"))]
    assert [f for f, _ in ladder(Stages("pil", color="BGR"))] == ["decoder", "color"]


def test_ladder_for_a_preset_skips_what_its_source_already_does():
    # gluoncv's segmentation pipeline is Pillow's: the typical port *is* the source there
    assert ladder("pil", "segmentation") == []
    assert [f for f, _ in ladder("torchvision", "segmentation")] == ["resize"]
    assert [f for f, _ in ladder("pil", "imagenet")] == ["decoder", "resize", "crop"]


def test_defaults_resolve_to_the_record_s_source():
    seg = PRESETS["segmentation"]
    assert resolve(Stages(), seg) == Stages("pil", "pil", "round") == resolve(VARIANTS["pil"], seg)
    assert resolve(Stages(resize="torchvision"), seg) == Stages("pil", "torchvision", "round")
    assert resolve(VARIANTS["pil"], PRESETS["imagenet"]) == VARIANTS["pil"]
    assert resolve(Stages(), PRESETS["imagenet"]) == Stages()


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_presets_are_the_registry_s_records(preset):
    records = {s.preprocess for s in registry.specs() if s.preprocess.preset == preset}
    if not records:
        pytest.skip(f"no registered model uses preset {preset!r}")
    assert PRESETS[preset] in records


# -------------------------------------------------------------------------------- geometry, meta

def test_imagenet_geometry_floor_short_side_and_floor_crop(photo):
    x, meta = preprocess_meta(photo, "imagenet", "cv2-exact")
    assert x.dtype == torch.float32 and tuple(x.shape) == (3, 224, 224)
    assert meta.orig_hw == (300, 451) and meta.resized_hw == (256, 256 * 451 // 300)  # 384
    assert meta.crop == ((256 - 224) // 2, (384 - 224) // 2) == (16, 80)
    pts = np.array([[0.0, 0.0], [451.0, 300.0], [123.4, 56.7]])
    assert np.allclose(meta.to_original(meta.to_input(pts)), pts)
    assert np.allclose(meta.to_input([[80 * 451 / 384, 16 * 300 / 256]]), 0)  # the crop's corner


@pytest.mark.parametrize("hw,crop", [((257, 303), 224), ((300, 451), 224), ((341, 1000), 299), ((480, 481), 480),
                                     ((481, 1021), 480)])
def test_round_crop_is_torchvision_center_crop(hw, crop):
    from torchvision.transforms import v2
    h, w = hw
    grid = torch.arange(h * w).reshape(1, h, w)
    got = v2.CenterCrop(crop)(grid)
    y0, x0 = pp._offset(h, crop, "round"), pp._offset(w, crop, "round")
    assert torch.equal(got, grid[:, y0:y0 + crop, x0:x0 + crop])
    assert pp._offset(w, crop, "floor") == int((w - crop) / 2)  # mx.image.center_crop


def test_rcnn_rounds_sizes_and_caps_the_long_side():
    plan = pp._plan(PRESETS["rcnn"], Stages(), (172, 448))  # 600/172 * 448 = 1563 > 1000: long side capped
    assert plan.resize_hw == (int(np.round(172 * 1000 / 448)), 1000) == (384, 1000)
    assert pp._plan(PRESETS["rcnn"], Stages(), (427, 640)).resize_hw == (600, int(np.round(640 * 600 / 427)))


def test_ssd_interp_9_picks_by_direction():
    assert [pp.cv2_interp("mxnet-9", (100, 100), hw) for hw in [(512, 512), (50, 60), (512, 60), (100, 100)]] \
        == [2, 3, 1, 1]  # OpenCV codes: bicubic, area, bilinear, bilinear


def test_pose_meta_maps_the_upscaled_box_onto_the_input(photo):
    box = (100.5, 40.25, 260.0, 280.75)
    x, meta = preprocess_meta(photo, "pose", "cv2-exact", box=box)
    assert tuple(x.shape) == (3, 256, 192)
    up = pp.upscale_box(box, photo.shape[:2])
    assert meta.box == up and up[0] == 100.5 - (260.0 - 100.5) / 2 * 0.25
    y0, x0 = meta.crop
    assert (x0, y0) == (int(up[0]), int(up[1]))
    h, w = photo.shape[:2]
    corner = meta.to_input([[x0, y0], [min(int(up[2]), w), min(int(up[3]), h)]])
    assert np.allclose(corner, [[0, 0], [192, 256]])


def test_pose_default_box_upscales_to_the_whole_frame():
    up = pp.upscale_box(pp.default_pose_box((300, 451)), (300, 451))
    assert np.allclose(up, (0, 0, 451, 300))


# --------------------------------------------------------------------------- pipelines, no MXNet

def test_normalize_divides_as_mxnet_does():
    v = np.arange(256, dtype=np.uint8)
    img = np.stack([v, v, v], -1).reshape(16, 16, 3)
    rec = PRESETS["imagenet"]
    got = pp.normalize(img, rec)
    x = torch.from_numpy(img).permute(2, 0, 1).float()
    mean, std = torch.tensor(rec.mean).view(3, 1, 1), torch.tensor(rec.std).view(3, 1, 1)
    assert torch.equal(got, (x / 255 - mean) / std)
    # why the order is pinned: multiplying by reciprocals moves some values by one ulp
    assert not torch.equal(got, (x * (1 / 255) - mean) * (1 / std))


def test_bgr_stage_only_swaps_channels(photo):
    rgb = pixels(photo, "imagenet", "cv2-exact")
    assert np.array_equal(pixels(photo, "imagenet", Stages(color="BGR")), rgb[..., ::-1])


def test_cubic_keeps_size_and_constants():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (37, 55, 3), dtype=np.uint8)
    assert np.array_equal(pp.cubic_opencv342(img, (37, 55)), img)
    flat = np.full((20, 30, 3), 173, np.uint8)
    assert np.array_equal(pp.cubic_opencv342(flat, (61, 17)), np.full((61, 17, 3), 173, np.uint8))


@pytest.mark.parametrize("preset", ["imagenet", "ssd", "rcnn"])
def test_torchvision_antialias_tracks_pillow_within_a_level(photo, preset):
    """torchvision's uint8 antialiased bilinear reproduces Pillow's up to rounding (measured: at most
    1 level on 26 JPEGs for every bilinear preset)."""
    d = np.abs(pixels(photo, preset, "pil").astype(int) - pixels(photo, preset, "torchvision"))
    assert d.max() <= 1


def test_arrays_skip_the_decoder(photo):
    for variant in ("cv2-exact", "pil", "torchvision"):
        assert torch.equal(preprocess(photo, "imagenet", variant), preprocess(photo.copy(), "imagenet", variant))


def test_existing_callers_positional_record(photo):
    spec = registry.get("ssd_512_resnet50_v1_voc").preprocess
    assert torch.equal(preprocess(photo, spec), preprocess(photo, "ssd", "cv2-exact"))


# ----------------------------------------------------------------------------------------- errors

@pytest.mark.parametrize("preset,variant,match", [("imagenett", "cv2-exact", "unknown preprocessing preset"),
                                                  ("imagenet", "cv2", "unknown preprocessing variant")])
def test_unknown_names(photo, preset, variant, match):
    with pytest.raises(PreprocessError, match=match):
        preprocess(photo, preset, variant)


@pytest.mark.parametrize("bad", [np.zeros((8, 8), np.uint8), np.zeros((8, 8, 4), np.uint8),
                                 np.zeros((8, 8, 3), np.float32)])
def test_bad_arrays(bad):
    with pytest.raises(PreprocessError, match="HxWx3 uint8"):
        preprocess(bad)


@pytest.mark.parametrize("variant", ["cv2-exact", "pil"])
def test_bad_files_name_the_file(tmp_path, variant):
    missing, junk = tmp_path / "missing.jpg", tmp_path / "junk.jpg"
    junk.write_bytes(b"not a jpeg at all")
    for path, why in ((missing, "no such image file"), (junk, "not an image")):
        with pytest.raises(PreprocessError, match=f"{path.name}: {why}") as err:
            preprocess(path, "imagenet", variant)
        assert isinstance(err.value, ZooportError) and "\n" not in str(err.value)


# ------------------------------------------------------------------------------------------ corpus

def test_corpus_covers_what_real_datasets_mix(corpus):
    from PIL import Image, JpegImagePlugin
    assert len(corpus) == len(CASES) >= 20
    seen = []
    for path in corpus:
        with Image.open(path) as im:
            seen.append((im.mode, JpegImagePlugin.get_sampling(im), bool(im.info.get("progressive")), im.size))
    modes = {m for m, *_ in seen}
    samplings = {s for m, s, *_ in seen if m == "RGB"}
    assert modes == {"RGB", "L", "CMYK"} and samplings == {0, 1, 2}  # 4:4:4, 4:2:2, 4:2:0
    assert any(p for _, _, p, _ in seen) and any(not p for _, _, p, _ in seen)
    sizes = [s for *_, s in seen]
    assert any(Image.open(p).getexif().get(0x0112, 1) != 1 for p in corpus)  # an EXIF-rotated file
    assert any(w % 2 and h % 2 for w, h in sizes) and min(min(s) for s in sizes) < 32
    assert any(h > w for w, h in sizes) and any(w > 2 * h for w, h in sizes)  # portrait, very wide
    assert not list(corpus[0].parent.glob(".*.tmp"))


def test_corpus_is_deterministic(corpus, tmp_path):
    again = build_corpus(tmp_path)
    digest = (lambda p: hashlib.sha256(p.read_bytes()).hexdigest())
    assert [digest(p) for p in again] == [digest(p) for p in corpus]


def test_exif_orientation_is_not_applied(corpus):
    """libmxnet (OpenCV 3.4.2) and Pillow decode pixels as stored; cv2 4.x's imread would rotate."""
    import cv2
    path = next(p for p in corpus if "exif" in p.name)
    stored = pp.decode(path, "opencv")
    assert np.array_equal(stored, pp.decode(path, "pil"))
    rotated = cv2.imread(str(path), cv2.IMREAD_COLOR)[..., ::-1]
    assert rotated.shape == (stored.shape[1], stored.shape[0], 3)
    assert np.array_equal(rotated, np.rot90(stored, -1))  # orientation 6: turn 90 degrees clockwise


def test_decoders_agree_except_pillow_on_cmyk(corpus):
    """cv2 and Pillow decode every colour and grayscale JPEG identically; Pillow's CMYK conversion
    is off by one level (measured: on 99.9% of values of both CMYK files)."""
    for path in corpus:
        a, b = pp.decode(path, "opencv"), pp.decode(path, "pil")
        d = np.abs(a.astype(int) - b)
        assert d.max() == (1 if "cmyk" in path.name else 0), path.name
