"""Every Paddle checkpoint model also converts from an exported program (``paddle.jit.save``:
``.pdmodel`` + ``.pdiparams``, parameters named by counters). The seeded source net (ppcls, ppdet) is
exported by paddle itself; the export converts (rules aligned from the op graph), lands on exactly the
weights the dygraph checkpoint gives, and passes verify against Paddle's executor running the exported
program, post-processing included. (paddle 3.3.1's to_static with the legacy IR cannot export ppcls's
MobileNetV3 (its hardswish multiply), ppdet's MobileNetV3 in PP-YOLO Tiny (its SE's paddle.multiply:
"multiply(): argument (position 1) must be Value, but got Variable") or ppdet's Faster / Mask R-CNN (the
RPN's data-dependent ``if num_rois > post_nms_top_n``: "logical_not(): ... must be Value, but got
Variable"), with full_graph True or False. PaddleSeg's Fast-SCNN export also fetches its auxiliary head's
logits: the aligner leaves that head out, as the checkpoint conversion does.)"""
from __future__ import annotations

import importlib.util

import pytest
import torch

from converters import convert, registry
from converters.errors import MappingError
from parity.verify import verify
from converters.samples import sample_photos

pytestmark = [pytest.mark.oracle,
              pytest.mark.skipif(importlib.util.find_spec("paddle") is None, reason="paddle is not installed")]


def export(name: str, source, directory):
    """paddle.jit.save of the source net loaded from ``source`` (a seeded .pdparams); ppdet detectors
    with PaddleDetection's three inputs, as its export_model writes them."""
    from converters.frameworks import import_paddle
    from converters.paddle import ppcls, ppdet_io
    paddle = import_paddle()
    spec = registry.get(name)
    net = spec.source_net(None) if spec.source_net else ppcls.build(spec.source_model, kwargs=spec.get_model_kwargs)
    net.set_state_dict(paddle.load(str(source)))
    h, w = spec.preprocess.size
    image = paddle.static.InputSpec([None, 3, h, w], "float32", "image")
    if spec.task == "detection":
        inputs = [{"image": image, **{k: paddle.static.InputSpec([None, 2], "float32", k) for k in ppdet_io.FEEDS[1:]}}]
    else:
        inputs = [image]
    paddle.jit.save(paddle.jit.to_static(net, input_spec=inputs, full_graph=True), str(directory / "model"))
    return directory


@pytest.mark.parametrize("name", [
    "ResNet18", "MobileNetV2", "YOLOv3_MobileNetV1", "FastSCNN",
    # 512x512 nets already slow in the sweep: 20-62 s and 41-120 s here on 2 busy cores (niced)
    pytest.param("DeepLabv3_MobileNetV2_x1.0", marks=pytest.mark.slow),
    pytest.param("HRNet_W18", marks=pytest.mark.slow)])
def test_exported_program_converts_to_the_checkpoint_s_weights(name, converted, tmp_path):
    seeded = converted(name)
    result = convert(name, weights=export(name, seeded.source, tmp_path))
    assert result.layout == "inference"
    # what the checkpoint conversion ignores (an auxiliary head) the export ignores too, tensor for tensor
    ignored = [r for r in result.mapping if r.status == "ignored"]
    assert len(ignored) == sum(r.status == "ignored" for r in seeded.mapping)
    assert all(r.status in ("mapped", "default") for r in result.mapping if r not in ignored)
    assert result.state_dict.keys() == seeded.state_dict.keys()
    assert all(torch.equal(result.state_dict[k], seeded.state_dict[k]) for k in seeded.state_dict)
    report = verify(name, result=result, images=sample_photos()[:1])
    assert report.passed, report.layers.first_divergent
    assert report.source["layout"] == "inference" and len(report.layers.diffs) > 10
    if report.detections is not None:  # Paddle's executor ran yolo_box and multiclass_nms3 itself
        assert report.detections.identical == report.detections.reference > 10
        assert result.manifest["metadata"]["numerics"] == "ppdet"


def test_an_export_of_another_net_is_refused(converted, tmp_path):
    """ResNet18's program offered as MobileNetV2: the op-graph alignment names the mismatch."""
    with pytest.raises(MappingError):
        convert("MobileNetV2", weights=export("ResNet18", converted("ResNet18").source, tmp_path))
