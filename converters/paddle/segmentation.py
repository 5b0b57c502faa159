"""PaddleX 1.x semantic segmentation (Fast-SCNN, U-Net, DeepLabV3+ on MobileNetV2 / Xception65) ->
converters.arch.fast_scnn / unet / deeplab.

Two source layouts per model, and they hold two different nets:
- "dygraph": ``paddle.save`` of a PaddleSeg 2.8 model's state dict (``paddleseg.models``), the net
  the oracle builds and runs (``source_net`` / ``source_run``); seeded sources come from it.
- "fluid": the PaddleX model-library links (PaddleSeg 0.x static model zoo): one file per variable,
  named by the static programs' ``scope()`` paths (``feature_fusion/conv_lower_res/weights``,
  ``.../BatchNorm/{gamma,beta,moving_mean,moving_variance}``) or, for MobileNet-style blocks, by
  ``conv_bn_layer`` names (``inverted_block_1_1_expand_weights``, ``..._bn_scale``).
The static nets differ from PaddleSeg 2.8's in layers (see each target's docstring), so the target
switches with ``numerics``: "paddleseg" for dygraph files, "paddlex" for fluid ones (set before the
weights load: the switch rebuilds the untrained layers). The oracle checks the "paddleseg" nets end
to end. No Paddle here runs the static programs (PaddleSeg 0.x is Paddle 1.x static-graph code):
the static U-Net equals PaddleSeg's with align_corners True and zero biases, and is checked so;
the static Xception65 DeepLabV3+ against a Paddle net written as the static one from PaddleSeg 2.8
layers (parity/tests/test_paddle_seg_xception_static.py); static Fast-SCNN and MobileNetV2
DeepLabV3+ are checked for rule coverage, shapes and forward only."""
from __future__ import annotations

import functools
import re
from typing import Iterator

import numpy as np

from ..arch.deeplab import DeepLabConfig, DeepLabV3P, MobileNetV2Features, deeplab_mobilenet_v2, deeplab_xception65
from ..arch.fast_scnn import FastSCNN, FastSCNNConfig
from ..arch.unet import UNet, UNetConfig
from ..arch.xception import XceptionConfig
from ..frameworks import paddle_build_scope
from ..registry import Metric, ModelSpec, paddleseg_eval, register
from ..rules import Ignore, Rule
from ..sources import SourceWeights
from . import mobilenet as ppcls_mobilenet
from . import xception as ppcls_xception
from .paddlex import BN_DEFAULTS

BN_DY = ("weight", "bias", "_mean", "_variance")  # paddle.nn.BatchNorm2D state-dict names
BN_SCOPE = ("BatchNorm/gamma", "BatchNorm/beta", "BatchNorm/moving_mean", "BatchNorm/moving_variance")
BN_LAYER = ("bn_scale", "bn_offset", "bn_mean", "bn_variance")  # conv_bn_layer(name): <name>_bn_scale ...
BN_TG = ("weight", "bias", "running_mean", "running_var")

Triple = tuple[str, str, str]  # (source name, target key, why)


# --------------------------------------------------------------------------- name helpers

def dy_conv_bn(prefix: str, target: str, bias: bool, conv: str = "_conv", bn: str = "_batch_norm") -> Iterator[Triple]:
    """PaddleSeg 2.x ConvBN / ConvBNReLU at ``prefix`` (``<prefix>._conv``, ``<prefix>._batch_norm``)."""
    yield f"{prefix}.{conv}.weight", f"{target}.conv.weight", f"{prefix} conv"
    if bias:
        yield f"{prefix}.{conv}.bias", f"{target}.conv.bias", f"{prefix} conv bias"
    for d, t in zip(BN_DY, BN_TG):
        yield f"{prefix}.{bn}.{d}", f"{target}.bn.{t}", f"{prefix} BN {d.lstrip('_')}"


def st_scope(scope: str, target: str, bias: bool) -> Iterator[Triple]:
    """Static ``conv`` + ``bn`` under ``scope()``: ``<scope>/weights``, ``<scope>/biases``, BatchNorm/*."""
    yield f"{scope}/weights", f"{target}.conv.weight", f"static {scope} conv"
    if bias:
        yield f"{scope}/biases", f"{target}.conv.bias", f"static {scope} conv bias"
    for s, t in zip(BN_SCOPE, BN_TG):
        yield f"{scope}/{s}", f"{target}.bn.{t}", f"static {scope} BN {s.rpartition('/')[2]}"


def st_layer(name: str, target: str) -> Iterator[Triple]:
    """Static ``conv_bn_layer(name=...)``: ``<name>_weights`` and ``<name>_bn_{scale,offset,mean,variance}``."""
    yield f"{name}_weights", f"{target}.conv.weight", f"static {name} conv"
    for s, t in zip(BN_LAYER, BN_TG):
        yield f"{name}_{s}", f"{target}.bn.{t}", f"static {name} BN {s[3:]}"


def dy_separable(prefix: str, target: str) -> Iterator[Triple]:
    """PaddleSeg 2.x SeparableConvBNReLU (its attribute really is spelled ``piontwise_conv``)."""
    yield from dy_conv_bn(f"{prefix}.depthwise_conv", f"{target}.depthwise", True)
    yield from dy_conv_bn(f"{prefix}.piontwise_conv", f"{target}.pointwise", True)


def st_separable(scope: str, target: str) -> Iterator[Triple]:
    yield from st_scope(f"{scope}/depthwise", f"{target}.depthwise", False)
    yield from st_scope(f"{scope}/pointwise", f"{target}.pointwise", False)


def rules(triples: Iterator[Triple], ignores: tuple[Ignore, ...] = ()) -> list[Rule | Ignore]:
    out: list[Rule | Ignore] = [Rule(rf"^{re.escape(s)}$", t, why) for s, t, why in triples]
    return out + list(ignores)


# --------------------------------------------------------------------------- Fast-SCNN

def fast_scnn_dygraph() -> Iterator[Triple]:
    lds, gfe, ff, cls = "learning_to_downsample", "global_feature_extractor", "feature_fusion", "classifier"
    yield from dy_conv_bn(f"{lds}.conv_bn_relu", "stem", True)
    yield from dy_separable(f"{lds}.dsconv_bn_relu1", "down1")
    yield from dy_separable(f"{lds}.dsconv_bn_relu2", "down2")
    for k in range(9):
        block = f"{gfe}.bottleneck{k // 3 + 1}.{k % 3}.block"
        for j, part in enumerate(("expand", "dw", "project")):
            yield from dy_conv_bn(f"{block}.{j}", f"bottlenecks.{k}.{part}", False)
    for i in range(4):
        yield from dy_conv_bn(f"{gfe}.ppm.stages.{i}.1", f"ppm.stages.{i}", True)
    yield from dy_conv_bn(f"{gfe}.ppm.conv_bn_relu2", "ppm.project", True)
    yield from dy_conv_bn(f"{ff}.dwconv", "fuse_dw", False)
    yield from dy_conv_bn(f"{ff}.conv_low_res", "fuse_low", True)
    yield from dy_conv_bn(f"{ff}.conv_high_res", "fuse_high", True)
    yield from dy_separable(f"{cls}.dsconv1", "cls1")
    yield from dy_separable(f"{cls}.dsconv2", "cls2")
    yield f"{cls}.conv.weight", "logit.weight", "classifier 1x1 conv"
    yield f"{cls}.conv.bias", "logit.bias", "classifier bias"


def fast_scnn_fluid() -> Iterator[Triple]:
    lds, gfe, ff = "learning_to_downsample", "global_feature_extractor", "feature_fusion"
    yield from st_scope(lds, "stem", False)
    yield from st_separable(f"{lds}/dsconv1", "down1")
    yield from st_separable(f"{lds}/dsconv2", "down2")
    for k in range(9):
        for suffix, part in (("expand", "expand"), ("dwise", "dw"), ("linear", "project")):
            yield from st_layer(f"inverted_block_{k // 3 + 1}_{k % 3 + 1}_{suffix}", f"bottlenecks.{k}.{part}")
    for i, b in enumerate((1, 2, 3, 6)):
        yield from st_scope(f"{gfe}/psp{b}", f"ppm.stages.{i}", False)
    yield from st_scope(f"{gfe}/out", "ppm.project", False)
    yield from st_scope(f"{ff}/dwconv", "fuse_dw", False)
    yield from st_scope(f"{ff}/conv_lower_res", "fuse_low", True)
    yield from st_scope(f"{ff}/conv_higher_res", "fuse_high", True)
    yield from st_separable("classifier/dsconv1", "cls1")
    yield from st_separable("classifier/dsconv2", "cls2")
    yield "classifier/weights", "logit.weight", "static classifier 1x1 conv"
    yield "classifier/biases", "logit.bias", "static classifier bias"


FAST_SCNN_IGNORE_DY = (Ignore(r"^auxlayer\..*$", "auxiliary head: training loss only, not in the eval forward"),)
FAST_SCNN_IGNORE_ST = (Ignore(r"^aux_layer_(higher|lower)/.*$", "auxiliary heads: training loss only"),)


# --------------------------------------------------------------------------- U-Net

def unet_dygraph() -> Iterator[Triple]:
    for j in (0, 1):
        yield from dy_conv_bn(f"encode.double_conv.{j}", f"inc.{j}", True)
    for i in range(4):
        for j in (0, 1):
            yield from dy_conv_bn(f"encode.down_sample_list.{i}.{j + 1}", f"down.{i}.{j}", True)
            yield from dy_conv_bn(f"decode.up_sample_list.{i}.double_conv.{j}", f"up.{i}.{j}", True)
    yield "cls.weight", "logit.weight", "classifier 3x3 conv"
    yield "cls.bias", "logit.bias", "classifier bias"


def unet_fluid() -> Iterator[Triple]:
    for j in (0, 1):
        yield from st_scope(f"encode/block1/conv{j}", f"inc.{j}", False)
    for i in range(4):
        for j in (0, 1):
            yield from st_scope(f"encode/block{i + 2}/down/conv{j}", f"down.{i}.{j}", False)
            yield from st_scope(f"decode/decode{i + 1}/up/conv{j}", f"up.{i}.{j}", False)
    yield "logit/weights", "logit.weight", "static classifier 3x3 conv (no bias)"


UNET_IGNORE_DY = (Ignore(r"^conv\.(weight|bias)$", "PaddleSeg's UNet sets self.cls = self.conv: the same layer twice"),)


def unet_from_shapes(shapes) -> UNet:
    """The class count is the checkpoint's (PaddleSeg 0.x's COCO UNet does not state it)."""
    return UNet(UNetConfig(shapes["logit.weight"][0]))


# --------------------------------------------------------------------------- DeepLabV3+ (PaddleSeg 2.8)

def mobilenet_v2_dygraph() -> Iterator[Triple]:
    """PaddleSeg 2.x's MobileNetV2 backbone names its layers as PaddleClas's (converters/paddle/
    mobilenet.py's table, which also knows their static names), minus PaddleClas's last conv."""
    for e in ppcls_mobilenet.v2_layers():
        if e.dy_conv.startswith("conv9."):
            continue
        yield f"backbone.{e.dy_conv}.weight", f"backbone.{e.conv}.weight", f"backbone {e.dy_conv} conv"
        for d, t in zip(BN_DY, BN_TG):
            yield f"backbone.{e.dy_bn}.{d}", f"backbone.{e.norm}.{t}", f"backbone {e.dy_bn} BN {d.lstrip('_')}"


def deeplab_head_dygraph(ratios: int = 3) -> Iterator[Triple]:
    aspp, dec = "head.aspp", "head.decoder"
    yield from dy_conv_bn(f"{aspp}.aspp_blocks.0", "aspp.branches.0", True)
    for i in range(1, ratios + 1):
        yield from dy_separable(f"{aspp}.aspp_blocks.{i}", f"aspp.branches.{i}")
    yield from dy_conv_bn(f"{aspp}.global_avg_pool.1", "aspp.pool", False)
    yield from dy_conv_bn(f"{aspp}.conv_bn_relu", "aspp.project", True)
    yield from dy_conv_bn(f"{dec}.conv_bn_relu1", "decoder.reduce", True)
    yield from dy_separable(f"{dec}.conv_bn_relu2", "decoder.sep1")
    yield from dy_separable(f"{dec}.conv_bn_relu3", "decoder.sep2")
    yield f"{dec}.conv.weight", "logit.weight", "decoder classifier 1x1 conv"
    yield f"{dec}.conv.bias", "logit.bias", "decoder classifier bias"


def mobilenet_v2_fluid() -> Iterator[Triple]:
    """The static seg MobileNetV2 (PaddleX ``nets/mobilenet_v2.py``): PaddleClas 1.x's names."""
    for e in ppcls_mobilenet.v2_layers():
        if e.st_conv == "conv9":
            continue
        yield from st_layer(e.st_conv, f"backbone.{e.conv.rpartition('.')[0]}")


def deeplab_head_fluid(ratios: int = 3) -> Iterator[Triple]:
    """The static program's scopes: encoder/{image_pool,aspp0..3,concat}, decoder/{concat,
    separable_conv1,2}, logit. A net trained without ASPP and decoder has only ``logit``."""
    yield from st_scope("encoder/image_pool", "aspp.pool", False)
    yield from st_scope("encoder/aspp0", "aspp.branches.0", False)
    for i in range(1, ratios + 1):
        yield from st_separable(f"encoder/aspp{i}", f"aspp.branches.{i}")
    yield from st_scope("encoder/concat", "aspp.project", False)
    yield from st_scope("decoder/concat", "decoder.reduce", False)
    yield from st_separable("decoder/separable_conv1", "decoder.sep1")
    yield from st_separable("decoder/separable_conv2", "decoder.sep2")
    yield "logit/weights", "logit.weight", "static classifier 1x1 conv"
    yield "logit/biases", "logit.bias", "static classifier bias"


def deeplab_from_shapes(shapes) -> DeepLabV3P:
    """Class count from the classifier; ASPP and decoder present or not (PaddleSeg 0.x's
    Cityscapes MobileNetV2 has neither)."""
    head = "aspp.project.conv.weight" in shapes
    cfg = DeepLabConfig(shapes["logit.weight"][0], numerics="paddleseg" if head else "paddlex", head=head)
    return DeepLabV3P(MobileNetV2Features, cfg)


def xception65_dygraph() -> Iterator[Triple]:
    """PaddleSeg 2.x's Xception65_deeplab names its layers as PaddleClas's (converters/paddle/
    xception.py's table), without the classifier."""
    for e in ppcls_xception.tensors(XceptionConfig(16), "xception_65"):
        if not hasattr(e, "dy_conv"):
            continue  # the Linear classifier
        yield f"backbone.{e.dy_conv}.weight", f"backbone.{e.conv}.weight", f"backbone {e.dy_conv} conv"
        for d, t in zip(BN_DY, BN_TG):
            yield f"backbone.{e.dy_bn}.{d}", f"backbone.{e.norm}.{t}", f"backbone {e.dy_bn} BN {d.lstrip('_')}"


def xception65_fluid() -> Iterator[Triple]:
    """The static trunk (PaddleX 1.x ``nets/xception.py``, PaddleSeg 0.x ``backbone/xception.py``)
    names its variables as PaddleClas 1.x's Xception65_deeplab: converters/paddle/xception.py's
    static names (``xception_65/<flow>/block<i>/separable_conv<j>/{depthwise,pointwise}/...``)."""
    for e in ppcls_xception.tensors(XceptionConfig(16), "xception_65"):
        if not hasattr(e, "st_conv"):
            continue  # the Linear classifier
        yield f"{e.st_conv}{e.st_conv_suffix}", f"backbone.{e.conv}.weight", f"static {e.st_conv} conv"
        for s, t in zip(e.st_bn_suffixes, BN_TG):
            yield f"{e.st_bn}{s}", f"backbone.{e.norm}.{t}", f"static {e.st_bn} BN {s.rpartition('/')[2]}"


def _build_deeplab(backbone: str, seed: int | None, **kwargs):
    """PaddleSeg's DeepLabV3P on ``backbone`` (a paddleseg.models.backbones factory), low-level
    feature from the backbone's first output, ASPP on its last."""
    from ..frameworks import import_paddle, import_paddleseg
    paddle, paddleseg = import_paddle(), import_paddleseg()
    with paddle_build_scope(paddle, seed):
        trunk = paddleseg.cvlibs.manager.BACKBONES[backbone]()  # the registry: _os8 nets are not exported
        net = paddleseg.models.DeepLabV3P(backbone=trunk, **{"backbone_indices": (0, 3), **kwargs})
    net.eval()
    return net


# --------------------------------------------------------------------------- the source framework

def _build_paddleseg(factory: str, seed: int | None, **kwargs):
    from ..frameworks import import_paddle, import_paddleseg
    paddle, paddleseg = import_paddle(), import_paddleseg()
    with paddle_build_scope(paddle, seed):
        net = getattr(paddleseg.models, factory)(**kwargs)
    net.eval()
    return net


def run_logits(net, x: np.ndarray) -> np.ndarray:
    """PaddleSeg's eval forward returns a list of logits; the first is the prediction at input size."""
    from ..frameworks import import_paddle
    paddle = import_paddle()
    with paddle.no_grad():
        return net(paddle.to_tensor(np.ascontiguousarray(x, dtype=np.float32)))[0].numpy()


# --------------------------------------------------------------------------- registration

SEG = "https://paddleseg.bj.bcebos.com/models/"


def seg_weights(name: str, url: str) -> SourceWeights:
    """A PaddleSeg 0.x model-zoo archive (a fluid checkpoint directory); no hashes are published."""
    stem = url.rsplit("/", 1)[1].split(".")[0]
    return SourceWeights(name=name, sha1=None, url=url, filename=stem, archive="tar")


def miou(value: float) -> tuple[Metric, ...]:
    return (Metric("mIoU", value, "Cityscapes val", "PaddleX model library"),)


FAST_SCNN_NOTES = (
    "PaddleSeg 2.8 FastSCNN (dygraph) and PaddleSeg 0.x / PaddleX 1.x static Fast-SCNN (the link) differ "
    "in layers, not only numerics (see converters/arch/fast_scnn.py); numerics 'paddleseg' / 'paddlex' "
    "picks the net. The oracle checks the PaddleSeg 2.8 net; the static net's rules are checked for "
    "coverage and shapes, its forward by unit tests only.",
    "Input: (x / 255 - 0.5) / 0.5; the static checkpoints were trained on cv2's BGR (PaddleSeg 2.x feeds "
    "RGB). Cityscapes eval runs the whole 1024x2048 frame; parity runs 512x512 stand-ins.",
    "Output: logits (B, 19, H, W) at input size; the auxiliary heads are training-only and ignored.",
)

register(ModelSpec(
    name="FastSCNN", family="paddle.segmentation", framework="paddle", task="segmentation",
    source_format="paddle-checkpoint", build=functools.partial(FastSCNN, FastSCNNConfig(19)),
    rules={"dygraph": rules(fast_scnn_dygraph(), FAST_SCNN_IGNORE_DY),
           "fluid": rules(fast_scnn_fluid(), FAST_SCNN_IGNORE_ST)},
    preprocess=paddleseg_eval((512, 512), "BGR"),
    weights=functools.partial(seg_weights, "FastSCNN", f"{SEG}fast_scnn_cityscape.tar"),
    source_model="FastSCNN", defaults=BN_DEFAULTS, metrics=miou(69.64), notes=FAST_SCNN_NOTES,
    source_net=functools.partial(_build_paddleseg, "FastSCNN", num_classes=19, enable_auxiliary_loss=True),
    source_run=run_logits, numerics={"dygraph": "paddleseg", "fluid": "paddlex"}))

DEEPLAB_NOTES = (
    "Ported: PaddleSeg 2.8's DeepLabV3P (converters/arch/deeplab.py) on PaddleSeg's MobileNetV2 "
    "(= PaddleClas's trunk, output stride 32, low-level feature 24 ch at 1/4), aspp_ratios (1, 6, 12, 18), "
    "align_corners False; the oracle checks it end to end on 'dygraph' files.",
    "'fluid' (the link, PaddleSeg 0.x static): numerics 'paddlex' rebuilds the static net (bias-free convs, "
    "ReLU after depthwise BNs, image pool first, ASPP output x 0.1 by fluid's inference dropout, MobileNetV2 at "
    "output stride 16 without dilation, decoder fed block 2's 144-ch depthwise output, align_corners True); "
    "mobilenet_cityscapes was trained with ENCODER_WITH_ASPP / ENABLE_DECODER False, so that file holds only "
    "the backbone and the classifier, and the net is built without ASPP and decoder (read from the file). "
    "No Paddle oracle runs the static net (PaddleSeg 2.8 cannot): rules and forward are unit-tested only.",
    "Input: (x / 255 - 0.5) / 0.5 (the static checkpoints expect BGR); output logits (B, 19, H, W) at input size.",
)

register(ModelSpec(
    name="DeepLabv3_MobileNetV2_x1.0", family="paddle.segmentation", framework="paddle", task="segmentation",
    source_format="paddle-checkpoint", build=functools.partial(deeplab_mobilenet_v2, 19),
    build_from_shapes=deeplab_from_shapes,
    rules={"dygraph": rules(iter([*mobilenet_v2_dygraph(), *deeplab_head_dygraph()])),
           "fluid": rules(iter([*mobilenet_v2_fluid(), *deeplab_head_fluid()]))},
    numerics={"dygraph": "paddleseg", "fluid": "paddlex"},
    preprocess=paddleseg_eval((512, 512), "BGR"),
    weights=functools.partial(seg_weights, "DeepLabv3_MobileNetV2_x1.0", f"{SEG}mobilenet_cityscapes.tgz"),
    source_model="DeepLabV3P", defaults=BN_DEFAULTS, metrics=miou(69.8), notes=DEEPLAB_NOTES,
    source_net=functools.partial(_build_deeplab, "MobileNetV2_x1_0", num_classes=19),
    source_run=run_logits, slow=True))  # ~45 s for the sweep's photographs at 512x512

UNET_NOTES = (
    "PaddleSeg 2.8 UNet (use_deconv False) and the static PaddleSeg 0.x / PaddleX 1.x UNet (upsample_mode "
    "bilinear) are one net except conv biases (2.8: every conv; static: none) and the resize (align_corners "
    "False / True): numerics 'paddleseg' / 'paddlex'. The oracle checks the 2.8 net; the static one is checked "
    "against PaddleSeg's net run with align_corners True and zero biases (parity/tests/test_paddle_seg.py).",
    "unet_coco_v3: COCO instance masks turned into semantic labels by PaddleSeg 0.x; the class count is read "
    "from the checkpoint (81 = 80 + background assumed for seeded sources); no published mIoU.",
    "Input: (x / 255 - 0.5) / 0.5 (the static checkpoint expects BGR); output logits (B, C, H, W) at input size.",
)

register(ModelSpec(
    name="UNet", family="paddle.segmentation", framework="paddle", task="segmentation",
    source_format="paddle-checkpoint", build=functools.partial(UNet, UNetConfig(81)),
    build_from_shapes=unet_from_shapes,
    rules={"dygraph": rules(unet_dygraph(), UNET_IGNORE_DY), "fluid": rules(unet_fluid())},
    preprocess=paddleseg_eval((512, 512), "BGR"),
    weights=functools.partial(seg_weights, "UNet", f"{SEG}unet_coco_v3.tgz"),
    source_model="UNet", defaults=BN_DEFAULTS, notes=UNET_NOTES,
    source_net=functools.partial(_build_paddleseg, "UNet", num_classes=81),
    source_run=run_logits, numerics={"dygraph": "paddleseg", "fluid": "paddlex"}, slow=True))

XCEPTION_NOTES = (
    "Ported: PaddleSeg 2.8's DeepLabV3P on Xception65_deeplab (converters/arch/xception.py's net at output stride "
    "16: exit block 1 unstrided; low-level feature = entry block 1's 128 ch at 1/4), aspp_ratios (1, 6, 12, 18), "
    "align_corners False; the oracle checks it on 'dygraph' files.",
    "'fluid' (the link, xception65_bn_cityscapes, PaddleSeg 0.x static): numerics 'paddlex'. Verified from PaddleX "
    "1.x nets/xception.py (6c50396) + nets/segmentation/deeplabv3p.py (d272926) and PaddleSeg 0.x pdseg/models/"
    "modeling/deeplab.py (0090fd6; the Xception65 Cityscapes config sets ASPP_WITH_SEP_CONV and "
    "DECODER_USE_SEP_CONV): the trunk's names are the classification Xception65's (converters/paddle/xception.py), "
    "its strides and dilations PaddleSeg 2.8's (output stride 16); the decoder reads entry block 2's second "
    "separable conv (256 ch at 1/4, decode_points=2); the head is the static MobileNetV2 model's (separable ASPP "
    "and decoder convs with ReLU after the depthwise BNs, bias-free convs, image pool first, ASPP output x 0.1, "
    "align_corners True). Checked against a Paddle net written as the static one from PaddleSeg 2.8 layers, "
    "at 129x161 (parity/tests/test_paddle_seg_xception_static.py).",
    "Input: (x / 255 - 0.5) / 0.5; output logits (B, 19, H, W) at input size.",
)

register(ModelSpec(
    name="DeepLabv3_Xception65", family="paddle.segmentation", framework="paddle", task="segmentation",
    source_format="paddle-checkpoint", build=functools.partial(deeplab_xception65, 19),
    rules={"dygraph": rules(iter([*xception65_dygraph(), *deeplab_head_dygraph()])),
           "fluid": rules(iter([*xception65_fluid(), *deeplab_head_fluid()]))},
    numerics={"dygraph": "paddleseg", "fluid": "paddlex"},
    preprocess=paddleseg_eval((512, 512), "BGR"),
    weights=functools.partial(seg_weights, "DeepLabv3_Xception65", f"{SEG}xception65_bn_cityscapes.tgz"),
    source_model="DeepLabV3P", defaults=BN_DEFAULTS, metrics=miou(79.3), notes=XCEPTION_NOTES,
    source_net=functools.partial(_build_deeplab, "Xception65_deeplab", num_classes=19, backbone_indices=(0, 1)),
    source_run=run_logits, slow=True))
