"""PaddleClas AlexNet (converters/paddle/alexnet.py), without paddle: both rule tables on the
family's names, fluid == dygraph, PaddleClas's static names by hand, and the ``paddle`` switch of
the target (Paddle's inference-time Dropout scale before fc6 and fc7) against an independent torch
computation on torchvision's AlexNet, gluon's AlexNet left as it was."""
from __future__ import annotations

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from converters import registry
from converters.arch.classic import AlexNet
from converters.arch.paddle_ops import DownscaleInInfer
from converters.paddle import alexnet as pa
from converters.registry import paddleclas_eval
from test_paddle_cls_fixtures import assert_layouts_agree, convert_tensors, synthetic_source


def test_registered():
    assert [n for n in registry.names() if registry.get(n).family == "paddle.alexnet"] == ["AlexNet"]
    spec = registry.get("AlexNet")
    assert set(spec.rules) == {"dygraph", "fluid"} and spec.source_format == "paddle-checkpoint"
    assert spec.preprocess == paddleclas_eval()  # AlexNet.yaml: resize_short 256, crop 224
    assert spec.weights().url.endswith("/AlexNet_pretrained.tar")
    assert spec.torchvision is None  # torchvision's Dropouts are identities in eval


def test_both_layouts_cover_every_tensor_and_agree():
    assert len(pa.fluid_names()) == 16
    assert_layouts_agree(registry.get("AlexNet"), pa.fluid_names())


def test_static_names_follow_paddleclas_1x():
    t = pa.fluid_names()
    assert (t["_conv1._conv.weight"], t["_conv1._conv.bias"]) == ("conv1_weights", "conv1_offset")
    assert (t["_conv3.weight"], t["_conv5._conv.bias"]) == ("conv3_weights", "conv5_offset")
    assert (t["_fc6.weight"], t["_fc8.bias"]) == ("fc6_weights", "fc8_offset")


def test_fc_weights_are_transposed_and_land_on_torchvision_s_keys():
    spec = registry.get("AlexNet")
    dy = synthetic_source(spec, pa.fluid_names())
    got, _ = convert_tensors(spec, "dygraph", dy)
    assert dy["_fc6.weight"].shape == (9216, 4096)  # Paddle's [in, out]
    assert torch.equal(got["classifier.1.weight"], torch.from_numpy(dy["_fc6.weight"].T))
    assert torch.equal(got["classifier.6.bias"], torch.from_numpy(dy["_fc8.bias"]))
    assert torch.equal(got["features.8.weight"], torch.from_numpy(dy["_conv4.weight"]))
    assert list(got) == list(torchvision.models.alexnet(weights=None).state_dict())


def test_paddle_dropout_scales_by_half_at_inference():
    """Our paddle=True net equals torchvision's layers with x * 0.5 before fc6 and fc7, computed by
    hand (Paddle's downscale_in_infer Dropout, p = 0.5), and differs from the unscaled net."""
    torch.manual_seed(0)
    ours = AlexNet(paddle=True).eval()
    drops = [m for m in ours.classifier if isinstance(m, DownscaleInInfer)]
    assert all(isinstance(ours.classifier[i], nn.Linear) for i in (1, 4, 6)) and len(drops) == 2
    assert all(d.p == 0.5 for d in drops) and not any(isinstance(m, nn.Dropout) for m in ours.modules())
    tv = torchvision.models.alexnet(weights=None).eval()
    tv.load_state_dict(ours.state_dict())
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        f = torch.flatten(tv.features(x), 1)
        fc6, fc7, fc8 = tv.classifier[1], tv.classifier[4], tv.classifier[6]
        want = fc8(F.relu(fc7(F.relu(fc6(f * 0.5)) * 0.5)))
        got, unscaled = ours(x), tv(x)
    assert torch.allclose(got, want, rtol=1e-5, atol=1e-5 * want.abs().max().item())
    assert not torch.allclose(got, unscaled, rtol=1e-2, atol=1e-2 * want.abs().max().item())


def test_gluon_s_alexnet_is_unchanged():
    net = AlexNet()
    assert isinstance(net.classifier[0], nn.Linear) and isinstance(net.classifier[2], nn.Dropout)
    assert not any(isinstance(m, DownscaleInInfer) for m in net.modules())
    assert [k for k in net.state_dict() if k.startswith("classifier")][:2] == ["classifier.0.weight",
                                                                              "classifier.0.bias"]
