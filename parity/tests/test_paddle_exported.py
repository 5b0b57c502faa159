"""Every Paddle checkpoint model also converts from an exported program (``paddle.jit.save``:
``.pdmodel`` + ``.pdiparams``, parameters named by counters). The seeded ppcls net is exported by
paddle itself; the export converts (rules aligned from the op graph), lands on exactly the weights the
dygraph checkpoint gives, and passes verify against Paddle's executor running the exported program."""
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
    """paddle.jit.save of the source net loaded from ``source`` (a seeded .pdparams)."""
    from converters.frameworks import import_paddle
    from converters.paddle import ppcls
    paddle = import_paddle()
    spec = registry.get(name)
    net = ppcls.build(spec.source_model, kwargs=spec.get_model_kwargs)
    net.set_state_dict(paddle.load(str(source)))
    h, w = spec.preprocess.size
    static = paddle.jit.to_static(net, input_spec=[paddle.static.InputSpec([None, 3, h, w], "float32", "x")],
                                  full_graph=True)
    paddle.jit.save(static, str(directory / "inference"))
    return directory


@pytest.mark.parametrize("name", ["ResNet18", "MobileNetV2"])
def test_exported_program_converts_to_the_checkpoint_s_weights(name, converted, tmp_path):
    seeded = converted(name)
    result = convert(name, weights=export(name, seeded.source, tmp_path))
    assert result.layout == "inference"
    assert all(r.status in ("mapped", "default") for r in result.mapping)
    assert result.state_dict.keys() == seeded.state_dict.keys()
    assert all(torch.equal(result.state_dict[k], seeded.state_dict[k]) for k in seeded.state_dict)
    report = verify(name, result=result, images=sample_photos()[:1])
    assert report.passed, report.layers.first_divergent
    assert report.source["layout"] == "inference" and len(report.layers.diffs) > 10


def test_an_export_of_another_net_is_refused(converted, tmp_path):
    """ResNet18's program offered as MobileNetV2: the op-graph alignment names the mismatch."""
    with pytest.raises(MappingError):
        convert("MobileNetV2", weights=export("ResNet18", converted("ResNet18").source, tmp_path))
