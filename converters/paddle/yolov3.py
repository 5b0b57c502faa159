"""PaddleX YOLOv3 (DarkNet53 / MobileNetV1 / ResNet34 / MobileNetV3_large on COCO) ->
converters.arch.paddle_yolo.PaddleYOLOv3.

Source net (seeding and the parity oracle): PaddleDetection 2.6's dygraph ``YOLOv3`` built in Python
with the kwargs of ``configs/yolov3/_base_/yolov3_*.yml`` @ v2.6.0: backbone, ``YOLOv3FPN``,
``YOLOv3Head`` (9 anchors, masks [[6,7,8],[3,4,5],[0,1,2]]), ``BBoxPostProcess`` with ``YOLOBox``
(conf_thresh 0.005, clip_bbox) and ``MultiClassNMS`` (score 0.01, nms_top_k 1000, keep_top_k 100,
iou 0.45, normalized=True by the class default), 80 classes. It runs with im_shape = the network
input (H, W) and scale_factor = 1, so its boxes are in network-input pixels, as ours.

Two layouts: "dygraph" (``paddle.save`` of that net's state dict: ``backbone.*``,
``neck.yolo_block.<i>.conv_module.conv<j>`` / ``.route`` / ``.tip``, ``neck.yolo_transition.<i>``
with ``.conv`` / ``.batch_norm``, ``yolo_head.yolo_output.<i>``) and "fluid" (the PaddleX model
library's PaddleDetection 0.x static checkpoints: a conv-BN unit ``<name>`` is
``<name>.conv.weights`` + ``<name>.bn.{scale,offset,mean,var}`` for ``yolo_block.<i>.<j>.<0|1>``,
``yolo_block.<i>.2``, ``yolo_block.<i>.tip``, ``yolo_transition.<i>``; ``yolo_output.<i>.conv.weights``
/ ``.bias``; backbones as their static nets name them: DarkNet ``yolo_input``,
``yolo_input.downsample``, ``stage.<s>.<b>.<0|1>``, ``stage.<s>.downsample``; MobileNetV1 ``conv1``,
``conv2_1_dw`` / ``_sep`` .. ``conv6_*`` with ``_weights`` / ``_bn_scale`` ..; ResNet34
``conv1_weights`` / ``bn_conv1_*``, ``res<s>{a,b..}_branch2{a,b}``, ``_branch1``, ``bn<s>..``;
MobileNetV3 ``conv1``, ``conv<n>_{expand,depthwise,linear}``, ``conv<n>_se_<k>_{weights,offset}``)."""
from __future__ import annotations

import functools
from typing import Callable, Iterator

import numpy as np

from ..arch.darknet import DarkNetConfig
from ..arch.mobilenet_v3 import CONFIGS as MOBILENET_V3_BLOCKS
from ..arch.paddle_yolo import (ANCHOR_MASKS, ANCHORS, NUMERICS, MobileNetV3Config, PaddleYOLOConfig,
                                 PaddleYOLOv3)
from ..frameworks import paddle_build_scope
from ..registry import Metric, ModelSpec, ppdet_eval, register
from ..sources import SourceWeights
from . import ppcls, ppdet_io
from .mobilenet import V1 as MOBILENET_V1, V1_NAMES
from .paddlex import BN_DEFAULTS, ConvBN, Tensor, layout_tables
from .resnet import config as resnet_config

DETECTION_ZOO = "https://paddlemodels.bj.bcebos.com/object_detection/"
KEEP_TOP_K = NUMERICS["ppdet"].keep_top_k
YOLO_BN = (".scale", ".offset", ".mean", ".var")  # static "<unit>.bn.var"


def _yolo_unit(dygraph: str, fluid: str, target: str) -> ConvBN:
    """A ppdet darknet-style ConvBNLayer (``conv``, ``batch_norm``); static ``<fluid>.conv.weights``."""
    return ConvBN(f"{dygraph}.conv", f"{dygraph}.batch_norm", f"{fluid}.conv", f"{fluid}.bn",
                  f"{target}.conv", f"{target}.bn", st_bn_suffixes=YOLO_BN, st_conv_suffix=".weights")


# -- backbones: (dygraph ppdet, static PaddleX 1.x, target) ---------------------------------------
def darknet53() -> Iterator[ConvBN]:
    yield _yolo_unit("backbone.conv0", "yolo_input", "backbone.net.stem")
    for s, n in enumerate((1, 2, 8, 8, 4)):
        down = "backbone.downsample0" if s == 0 else f"backbone.stage.{s - 1}.downsample"
        fluid = "yolo_input.downsample" if s == 0 else f"stage.{s - 1}.downsample"
        yield _yolo_unit(f"{down}.conv_bn_layer", fluid, f"backbone.net.stages.{s}.down")
        for b in range(n):
            block = f"backbone.stage.{s}." + ("basicblock0" if b == 0 else f"stage.{s}.{b}")
            for k in range(2):
                yield _yolo_unit(f"{block}.conv{k + 1}", f"stage.{s}.{b}.{k}",
                                 f"backbone.net.stages.{s}.blocks.{b}.conv{k + 1}")


def mobilenet_v1() -> Iterator[ConvBN]:
    def unit(dy: str, st: str, ours: str) -> ConvBN:
        return ConvBN(f"backbone.{dy}._conv", f"backbone.{dy}._batch_norm", st, f"{st}_bn",
                      f"backbone.net.{ours}.conv", f"backbone.net.{ours}.bn")

    yield unit("conv1", "conv1", "stem")
    for i, name in enumerate(V1_NAMES):
        yield unit(f"{name}._depthwise_conv", f"{name}_dw", f"blocks.{i}.dw")
        yield unit(f"{name}._pointwise_conv", f"{name}_sep", f"blocks.{i}.pw")


RESNET34 = resnet_config(34, False)


def resnet34() -> Iterator[ConvBN]:
    def unit(dy: str, st: str, conv: str, norm: str) -> ConvBN:
        bn = "bn_" + st if st == "conv1" else "bn" + st[3:]  # static BN names drop "res"
        return ConvBN(f"backbone.{dy}.conv", f"backbone.{dy}.norm", st, bn, f"backbone.net.{conv}",
                      f"backbone.net.{norm}")

    yield unit("conv1.conv1", "conv1", "conv1", "bn1")
    for s, n in enumerate(RESNET34.layers):
        for j in range(n):
            name, ours = f"res{s + 2}{chr(97 + j)}", f"layer{s + 1}.{j}"
            for p in range(2):
                yield unit(f"res{s + 2}.{name}.branch2{'ab'[p]}", f"{name}_branch2{'ab'[p]}",
                           f"{ours}.conv{p + 1}", f"{ours}.bn{p + 1}")
            if j == 0:  # every stage's first block projects (ResNet < 50 too, in both frameworks)
                yield unit(f"res{s + 2}.{name}.short", f"{name}_branch1", f"{ours}.downsample.0",
                           f"{ours}.downsample.1")


MOBILENET_V3_LARGE = MobileNetV3Config("large", 1.0)


def mobilenet_v3_large() -> Iterator[ConvBN | Tensor]:
    """ppdet ``conv<n>.{expand,bottleneck,linear}_conv`` / ``mid_se.conv<k>``; static PaddleDetection
    0.x ``conv<n>_{expand,depthwise,linear}`` and ``conv<n>_se_<k>_{weights,offset}``."""
    def unit(dy: str, st: str, ours: str) -> ConvBN:
        return ConvBN(f"backbone.{dy}.conv", f"backbone.{dy}.bn", st, f"{st}_bn", f"backbone.net.{ours}.conv",
                      f"backbone.net.{ours}.bn")

    yield unit("conv1", "conv1", "stem")
    for i, block in enumerate(MOBILENET_V3_BLOCKS[MOBILENET_V3_LARGE.arch]):
        n = i + 2
        for dy, st, ours in (("expand_conv", "expand", "expand"), ("bottleneck_conv", "depthwise", "dw"),
                             ("linear_conv", "linear", "project")):
            yield unit(f"conv{n}.{dy}", f"conv{n}_{st}", f"blocks.{i}.{ours}")
        if block.se:
            for k, ours in ((1, "reduce"), (2, "expand")):
                dy, tg = f"backbone.conv{n}.mid_se.conv{k}", f"backbone.net.blocks.{i}.se.{ours}"
                yield Tensor(f"{dy}.weight", f"conv{n}_se_{k}_weights", f"{tg}.weight", "squeeze-excite 1x1 conv")
                yield Tensor(f"{dy}.bias", f"conv{n}_se_{k}_offset", f"{tg}.bias", "squeeze-excite 1x1 conv bias")


# -- neck and head ----------------------------------------------------------------------------------
BLOCK_UNITS = (("conv0", "0.0"), ("conv1", "0.1"), ("conv2", "1.0"), ("conv3", "1.1"), ("route", "2"))


def neck_and_head() -> Iterator[ConvBN | Tensor]:
    for i in range(3):
        for j, (dy, st) in enumerate(BLOCK_UNITS):
            yield _yolo_unit(f"neck.yolo_block.{i}.conv_module.{dy}", f"yolo_block.{i}.{st}",
                             f"yolo_blocks.{i}.body.{j}")
        yield _yolo_unit(f"neck.yolo_block.{i}.tip", f"yolo_block.{i}.tip", f"yolo_blocks.{i}.tip")
        if i < 2:
            yield _yolo_unit(f"neck.yolo_transition.{i}", f"yolo_transition.{i}", f"transitions.{i}")
    for i in range(3):
        yield Tensor(f"yolo_head.yolo_output.{i}.weight", f"yolo_output.{i}.conv.weights", f"yolo_outputs.{i}.weight",
                     f"output {i} predictor 1x1 conv")
        yield Tensor(f"yolo_head.yolo_output.{i}.bias", f"yolo_output.{i}.conv.bias", f"yolo_outputs.{i}.bias",
                     f"output {i} predictor bias")


def tensors(backbone: Callable[[], Iterator[ConvBN]]) -> list[ConvBN | Tensor]:
    return [*backbone(), *neck_and_head()]


# -- the source net (ppdet), for seeding and the oracle ----------------------------------------------
def _ppdet_backbone(kind: str):
    """ppdet backbone with the v2.6.0 config kwargs (norm_type sync_bn, as the configs: on one
    device ppdet builds plain BatchNorm2D for it)."""
    if kind == "darknet53":
        from ppdet.modeling.backbones.darknet import DarkNet
        return DarkNet(depth=53, return_idx=[2, 3, 4], norm_type="sync_bn")
    if kind == "mobilenet_v1":
        from ppdet.modeling.backbones.mobilenet_v1 import MobileNet
        return MobileNet(scale=1, feature_maps=[4, 6, 13], with_extra_blocks=False, extra_block_filters=[],
                         norm_type="sync_bn")
    if kind == "mobilenet_v3_large":
        from ppdet.modeling.backbones.mobilenet_v3 import MobileNetV3
        return MobileNetV3(model_name="large", scale=1., with_extra_blocks=False, extra_block_filters=[],
                           feature_maps=[7, 13, 16], norm_type="sync_bn")
    if kind == "resnet34":
        from ppdet.modeling.backbones.resnet import ResNet
        return ResNet(depth=34, return_idx=[1, 2, 3], freeze_at=-1, freeze_norm=False, norm_decay=0.,
                      norm_type="sync_bn")
    raise ValueError(f"unknown YOLOv3 backbone {kind!r}")


def source_net(kind: str, seed: int | None = None):
    from ..frameworks import import_paddle, import_ppdet
    paddle = import_paddle()
    import_ppdet()
    from ppdet.modeling.architectures.yolo import YOLOv3
    from ppdet.modeling.heads.yolo_head import YOLOv3Head
    from ppdet.modeling.layers import MultiClassNMS, YOLOBox
    from ppdet.modeling.necks.yolo_fpn import YOLOv3FPN
    from ppdet.modeling.post_process import BBoxPostProcess
    post = NUMERICS["ppdet"]
    with paddle_build_scope(paddle, seed):
        backbone = _ppdet_backbone(kind)
        neck = YOLOv3FPN(in_channels=[s.channels for s in backbone.out_shape], norm_type="sync_bn")
        head = YOLOv3Head(in_channels=[s.channels for s in neck.out_shape], anchors=[list(a) for a in ANCHORS],
                          anchor_masks=[list(m) for m in ANCHOR_MASKS], num_classes=80, loss=None)
        decode = YOLOBox(num_classes=80, conf_thresh=post.conf_thresh, downsample_ratio=32, clip_bbox=True)
        nms = MultiClassNMS(keep_top_k=post.keep_top_k, score_threshold=post.score_threshold,
                            nms_threshold=post.nms_threshold, nms_top_k=post.nms_top_k)
        net = YOLOv3(backbone=backbone, neck=neck, yolo_head=head,
                     post_process=BBoxPostProcess(num_classes=80, decode=decode, nms=nms))
        if seed is not None:
            _sparse_objectness(net, paddle)
    net.eval()
    return net


OBJECTNESS_BIAS = -5.5  # seeded nets: ~1% of anchors reach the NMS threshold (about -10 after scaling)


def _sparse_objectness(net, paddle) -> None:
    """Seeded sources only: a negative objectness bias (before seed_output_std scales the layer), so
    that a few hundred boxes per class, not all of them, reach NMS: real suppression work, cheap."""
    for conv in net.yolo_head.yolo_outputs:
        bias = conv.bias.numpy().copy()
        bias.reshape(3, -1)[:, 4] = OBJECTNESS_BIAS
        conv.bias.set_value(bias)


def source_run(net, x: np.ndarray):
    """ppdet's eval forward on a batch -> (ids, scores, boxes) (B, 100, 1|1|4), -1 padded."""
    from ..frameworks import import_paddle
    paddle = import_paddle()
    out = net({k: paddle.to_tensor(v) for k, v in ppdet_io.feeds(x).items()})
    return ppdet_io.pad_detections(out["bbox"].numpy(), out["bbox_num"].numpy(), KEEP_TOP_K)


# -- registration ----------------------------------------------------------------------------------
def _weights(name: str, stem: str) -> SourceWeights:
    """A PaddleDetection 0.x model-zoo .tar (a fluid checkpoint directory) or ``.pdparams`` (a
    fluid.save pickle); the zoo lists no hashes."""
    if stem.endswith(".pdparams"):
        return SourceWeights(name=name, sha1=None, url=f"{DETECTION_ZOO}{stem}", filename=stem, archive="none")
    return SourceWeights(name=name, sha1=None, url=f"{DETECTION_ZOO}{stem}.tar", filename=stem, archive="tar")


NOTES = (
    "PaddleDetection 2.6 YOLOv3: backbone, YOLOv3FPN (conv-BN-LeakyReLU(0.1) units, BN eps 1e-5, nearest 2x "
    "upsample, upsampled route concatenated before the backbone map), 1x1 predictors, yolo_box decoding, "
    "multiclass_nms (rows grouped by label ascending, as Paddle returns them).",
    "Boxes are in network-input pixels: the oracle runs ppdet with im_shape = the input (H, W) and "
    "scale_factor = 1; PaddleX 1.x decodes to the original image size instead (divide by the resize factors).",
    "numerics: 'ppdet' (dygraph layout: conf_thresh 0.005, NMS normalized=True) or 'paddlex' (fluid layout, "
    "PaddleX 1.x static: conf_thresh 0.01, NMS normalized=False, +1 pixel IoU).",
    "Seeded sources set the objectness bias to -5.5 before scaling the predictors (about -10 after): ~1% of "
    "anchors reach NMS.",
)

# zooport (= PaddleX) name, backbone kind, target backbone config, body cuts, entries, .tar stem,
# COCO box mAP (PaddleX model library), eval input size, slow. The configs evaluate at 608x608;
# YOLOv3_MobileNetV1, the family's CI model, is registered at 320x320 to keep CI parity cheap.
MODELS = (
    ("YOLOv3_MobileNetV1", "mobilenet_v1", MOBILENET_V1, (4, 6, 13), mobilenet_v1, "yolov3_mobilenet_v1", 29.3,
     320, False),
    ("YOLOv3_DarkNet53", "darknet53", DarkNetConfig(bn_eps=1e-5, leaky_slope=0.1), (3, 4, 5), darknet53,
     "yolov3_darknet", 38.9, 608, True),
    ("YOLOv3_ResNet34", "resnet34", RESNET34, (2, 3, 4), resnet34, "yolov3_r34", 36.2, 608, True),
    # PaddleX links a single .pdparams for it (a fluid.save pickle of static names, read as "fluid")
    ("YOLOv3_MobileNetV3_large", "mobilenet_v3_large", MOBILENET_V3_LARGE, (6, 12, 15), mobilenet_v3_large,
     "yolov3_mobilenet_v3.pdparams", 31.6, 608, True),
)
SEED_STD = 2.0  # predictor logits' spread on the calibration photographs: scores spread over (0, 1)

for _name, _kind, _bcfg, _cuts, _entries, _stem, _map, _size, _slow in MODELS:
    _cfg = PaddleYOLOConfig(backbone=_bcfg, cuts=_cuts)
    _dygraph, _fluid, _table = layout_tables(tensors(_entries))
    register(ModelSpec(
        name=_name, family="paddle.yolov3", framework="paddle", task="detection", source_format="paddle-checkpoint",
        build=functools.partial(PaddleYOLOv3, _cfg), rules={"dygraph": _dygraph, "fluid": _fluid},
        defaults=BN_DEFAULTS, preprocess=ppdet_eval((_size, _size), False),
        weights=functools.partial(_weights, _name, _stem),
        source_model="YOLOv3", metrics=(Metric("mAP", _map, "COCO val2017 (bbox)", "PaddleX model library"),),
        seed_output_std={"yolo_head.yolo_output": SEED_STD}, notes=NOTES,
        source_net=functools.partial(source_net, _kind), source_run=source_run,
        numerics={"dygraph": "ppdet", "fluid": "paddlex", "inference": "ppdet"},
        floor_points={"score": "score_out", "box": "box_out"}, slow=_slow,
        parity_images=2))  # 2 x 100 detections; torch's float64 floor run of depthwise convs is slow
    ppcls.register_fluid_names(_name, functools.partial(dict, _table))
