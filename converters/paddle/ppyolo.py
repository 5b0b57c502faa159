"""PaddleX PPYOLO (``paddlex.det.PPYOLO``: ResNet50_vd_ssld with DCNv2 in its last stage, CoordConv,
SPP, DropBlock, IoU-aware head, scale_x_y 1.05, matrix NMS; COCO) -> converters.arch.ppyolo.PPYOLO.

Source net (seeding and the parity oracle): PaddleDetection 2.6's dygraph ``YOLOv3`` with the kwargs of
``configs/ppyolo/_base_/ppyolo_r50vd_dcn.yml`` @ v2.6.0: ``ResNet(depth=50, variant="d",
return_idx=[1, 2, 3], dcn_v2_stages=[3])``, ``PPYOLOFPN(coord_conv, drop_block (block 3, keep 0.9),
spp)``, ``YOLOv3Head(iou_aware, iou_aware_factor=0.4)``, ``YOLOBox(conf_thresh=0.01, clip_bbox,
scale_x_y=1.05)``, ``MatrixNMS(keep_top_k=100, score_threshold=0.01, post_threshold=0.01,
nms_top_k=-1, background_label=-1)``; PaddleX 1.x's defaults (``PPYOLO.__init__`` and
``nets/detection/yolo_v3.py`` with use_matrix_nms) are the same, normalized=False in both.

Two layouts: "dygraph" (that net's state dict: backbone ``conv1.conv1_<k>``, ``res<n>.res<n><x>.
branch2{a,b,c}`` with ``.conv`` / ``.norm``, DCN units' ``.conv_offset``, projections ``.short`` or
(stride 2, variant d) ``.short.conv``; neck ``yolo_block.<i>.conv_module.{conv0..conv3,spp,route}`` and
``.tip``, CoordConv units one ``.conv`` deeper) and "fluid" (PaddleX 1.x / PaddleDetection 0.x static
names: ``conv1_<k>_weights`` / ``bnv1_<k>_*``, ``res5a_branch2b_weights`` + ``res5a_branch2b_conv_offset.
{w_0,b_0}``, ``bn5a_branch2b_*``; ``yolo_block.<i>.<j>.<0|1>``, ``yolo_block.0.1.spp.conv``,
``yolo_block.<i>.2``, ``.tip``, ``yolo_transition.<i>``, ``yolo_output.<i>.conv.*``). PaddleX links one
``ppyolo_2x.pdparams``: a fluid.save pickle of the static names, read as "fluid".

PPYOLOv2 (PaddleX 2.x ``paddlex.det.PPYOLOv2``, PaddleDetection 2.x ``ppyolov2_r50vd_dcn_365e_coco``):
the same backbone, decoding and NMS with ``PPYOLOPAN`` (Mish, CSP blocks, SPP, DropBlock; no CoordConv)
and iou_aware_factor 0.5, evaluated at 640x640; dygraph layout only (no static release).

PPYOLOTiny (PaddleX 2.x ``paddlex.det.PPYOLOTiny``, PaddleDetection ``ppyolo_tiny_650e_coco``):
MobileNetV3 large x0.5, ``PPYOLOTinyFPN``, no IoU branch, multiclass NMS, 320x320; dygraph only."""
from __future__ import annotations

import functools
from typing import Iterator

import numpy as np

from ..arch.ppyolo import PPYOLO, POST, PPYOLOConfig
from ..arch.paddle_yolo import ANCHOR_MASKS, MobileNetV3Config, PaddleYOLOConfig, PostProcess
from ..frameworks import paddle_build_scope
from ..registry import Metric, ModelSpec, ppdet_eval, register
from ..sources import SourceWeights
from . import ppcls, ppdet_io
from .paddlex import BN_DEFAULTS, ConvBN, Tensor, layout_tables
from .resnet import _block_name, config as resnet_config
from .yolov3 import _weights, _yolo_unit, mobilenet_v3_large

RESNET50_VD = resnet_config(50, True)
DCN_STAGES = (3,)  # res5


def _unit(dygraph: str, fluid: str, conv: str, norm: str) -> ConvBN:
    """A ppdet ResNet ConvNormLayer (``conv``, ``norm``); static BN ``bn<name without "res"/"conv">``."""
    return ConvBN(f"{dygraph}.conv", f"{dygraph}.norm", fluid, "bn" + fluid[3:], conv, norm)


def resnet50_vd(dcn_stages: tuple[int, ...] = DCN_STAGES) -> Iterator[ConvBN | Tensor]:
    cfg = RESNET50_VD
    for k, (conv, norm) in enumerate((("conv1.0", "conv1.1"), ("conv1.3", "conv1.4"), ("conv1.6", "bn1"))):
        yield _unit(f"backbone.conv1.conv1_{k + 1}", f"conv1_{k + 1}", f"backbone.net.{conv}", f"backbone.net.{norm}")
    for s, n in enumerate(cfg.layers):
        for j in range(n):
            name, ours = _block_name(50, s, j), f"backbone.net.layer{s + 1}.{j}"
            dy = f"backbone.res{s + 2}.{name}"
            for p in range(3):
                yield _unit(f"{dy}.branch2{'abc'[p]}", f"{name}_branch2{'abc'[p]}", f"{ours}.conv{p + 1}",
                            f"{ours}.bn{p + 1}")
                if p == 1 and s in dcn_stages:
                    for dy_t, st_t, tg_t in (("weight", "w_0", "weight"), ("bias", "b_0", "bias")):
                        yield Tensor(f"{dy}.branch2b.conv_offset.{dy_t}", f"{name}_branch2b_conv_offset.{st_t}",
                                     f"{ours}.conv2.conv_offset.{tg_t}", "DCNv2 offset/mask conv")
            if j == 0:  # stride-2 stages pool first (variant d): ppdet nests the unit as ``short.conv``
                short = f"{dy}.short" + (".conv" if s > 0 else "")
                yield _unit(short, f"{name}_branch1", f"{ours}.downsample.1", f"{ours}.downsample.2")


def neck_and_head(coord: bool = True, spp: bool = True) -> Iterator[ConvBN | Tensor]:
    inner = ".conv" if coord else ""  # a CoordConv wraps its conv-BN unit one level deeper
    for i in range(3):
        units = [("conv0", "0.0", inner), ("conv1", "0.1", ""), ("conv2", "1.0", inner)]
        if spp and i == 0:
            units.append(("spp", "1.spp", ".conv"))  # SPP's unit is its ``conv``; static "<block>.1.spp.conv"
        units += [("conv3", "1.1", ""), ("route", "2", inner)]
        for j, (dy, st, deeper) in enumerate(units):
            target = f"yolo_blocks.{i}.body.{j}" + (".conv" if dy == "spp" else "")
            st_name = f"yolo_block.{i}.{st}" + (".conv" if dy == "spp" else "")
            yield _yolo_unit(f"neck.yolo_block.{i}.conv_module.{dy}{deeper}", st_name, target)
        yield _yolo_unit(f"neck.yolo_block.{i}.tip{inner}", f"yolo_block.{i}.tip", f"yolo_blocks.{i}.tip")
        if i < 2:
            yield _yolo_unit(f"neck.yolo_transition.{i}", f"yolo_transition.{i}", f"transitions.{i}")
    yield from predictors()


def predictors() -> Iterator[Tensor]:
    for i in range(3):
        yield Tensor(f"yolo_head.yolo_output.{i}.weight", f"yolo_output.{i}.conv.weights", f"yolo_outputs.{i}.weight",
                     f"output {i} predictor 1x1 conv (IoU channels first)")
        yield Tensor(f"yolo_head.yolo_output.{i}.bias", f"yolo_output.{i}.conv.bias", f"yolo_outputs.{i}.bias",
                     f"output {i} predictor bias")


def pan_neck_and_head() -> Iterator[ConvBN | Tensor]:
    """PP-YOLOv2's PPYOLOPAN (dygraph names only): CSP blocks ``neck.fpn.<i>`` / ``neck.pan.<i>`` with
    ``conv1`` (left), ``conv2`` (right), ``conv3``, ``conv_module.<j>.<0|1>`` (``spp.conv`` for the deepest
    FPN block's 1.1), ``neck.fpn_transition.<i>``, ``neck.pan_transition.<i>``."""
    def unit(dy: str, target: str) -> ConvBN:
        return _yolo_unit(dy, dy, f"neck.{target}")  # no static twin: the "fluid" name is a placeholder

    def csp(dy: str, target: str, spp: bool) -> Iterator[ConvBN]:
        yield from (unit(f"{dy}.conv{k}", f"{target}.conv{k}") for k in (1, 2))
        for j, n in enumerate(("0.0", "0.1", "1.0", "spp" if spp else "1.1", "2.0", "2.1")):
            deeper = ".conv" if n == "spp" else ""
            yield unit(f"{dy}.conv_module.{n}{deeper}", f"{target}.body.{j}{deeper}")
        yield unit(f"{dy}.conv3", f"{target}.conv3")

    for i in range(3):
        yield from csp(f"neck.fpn.{i}", f"fpn_blocks.{i}", i == 0)
        if i < 2:
            yield unit(f"neck.fpn_transition.{i}", f"fpn_transitions.{i}")
    for i in range(2):
        yield unit(f"neck.pan_transition.{i}", f"pan_transitions.{i}")
        yield from csp(f"neck.pan.{i}", f"pan_blocks.{i}", False)
    yield from predictors()


def tiny_neck_and_head() -> Iterator[ConvBN | Tensor]:
    """PP-YOLO tiny's PPYOLOTinyFPN (dygraph names only): ``neck.spp.conv``, blocks
    ``neck.yolo_block.<i>.conv_module.yolo_block.<i>.{0,1,2,route}`` and ``.tip``, ``neck.yolo_transition.<i>``."""
    def unit(dy: str, target: str) -> ConvBN:
        return _yolo_unit(dy, dy, target)

    yield unit("neck.spp.conv", "neck.spp.conv")
    for i in range(3):
        for j, n in enumerate(("0", "1", "2", "route")):
            yield unit(f"neck.yolo_block.{i}.conv_module.yolo_block.{i}.{n}", f"neck.blocks.{i}.body.{j}")
        yield unit(f"neck.yolo_block.{i}.tip", f"neck.blocks.{i}.tip")
        if i < 2:
            yield unit(f"neck.yolo_transition.{i}", f"neck.transitions.{i}")
    yield from predictors()


def tensors(version: str = "v1") -> list[ConvBN | Tensor]:
    if version == "tiny":
        return [*mobilenet_v3_large(), *tiny_neck_and_head()]
    return [*resnet50_vd(), *(neck_and_head() if version == "v1" else pan_neck_and_head())]


YOLO = PaddleYOLOConfig(backbone=RESNET50_VD, cuts=(2, 3, 4), scale_x_y=1.05)
CONFIG = PPYOLOConfig(yolo=YOLO)
# ppyolov2_r50vd_dcn.yml: PPYOLOPAN (Mish, 3 conv pairs per CSP block, SPP, DropBlock), no CoordConv,
# iou_aware_factor 0.5; decoding and matrix NMS as PP-YOLO's
CONFIG_V2 = PPYOLOConfig(yolo=YOLO, coord_conv=False, iou_aware_factor=0.5, neck="pan")
# ppyolo_tiny.yml: MobileNetV3 large x0.5 (ppdet feature_maps [7, 13, 16]), PPYOLOTinyFPN (160, 128, 96,
# SPP, DropBlock), no IoU branch, its own anchors; yolo_box conf 0.005; multiclass_nms (score 0.005,
# nms_top_k 1000, IoU 0.45, keep 100, normalized=True by the class default); evaluated at 320x320
TINY_ANCHORS = ((10, 15), (24, 36), (72, 42), (35, 87), (102, 96), (60, 170), (220, 125), (128, 222), (264, 266))
MOBILENET_V3_LARGE_X0_5 = MobileNetV3Config("large", 0.5)
CONFIG_TINY = PPYOLOConfig(
    yolo=PaddleYOLOConfig(backbone=MOBILENET_V3_LARGE_X0_5, cuts=(6, 12, 15), anchors=TINY_ANCHORS, scale_x_y=1.05),
    dcn_stages=(), coord_conv=False, iou_aware_factor=None, neck="tiny",
    post=PostProcess(conf_thresh=0.005, normalized=True, score_threshold=0.005))
CONFIGS = {"v1": CONFIG, "v2": CONFIG_V2, "tiny": CONFIG_TINY}


# -- the source net (ppdet), for seeding and the oracle ----------------------------------------------
def source_net(version: str, seed: int | None = None):
    from ..frameworks import import_paddle, import_ppdet
    paddle = import_paddle()
    import_ppdet()
    from ppdet.modeling.architectures.yolo import YOLOv3
    from ppdet.modeling.heads.yolo_head import YOLOv3Head
    from ppdet.modeling.layers import YOLOBox
    from ppdet.modeling.post_process import BBoxPostProcess
    cfg = CONFIGS[version]
    p = cfg.post
    with paddle_build_scope(paddle, seed):
        backbone, neck = _ppdet_backbone_and_neck(version)
        head = YOLOv3Head(in_channels=[s.channels for s in neck.out_shape],
                          anchors=[list(a) for a in cfg.yolo.anchors], anchor_masks=[list(m) for m in ANCHOR_MASKS],
                          num_classes=80, loss=None, iou_aware=cfg.iou_aware_factor is not None,
                          iou_aware_factor=cfg.iou_aware_factor or 0.4)
        decode = YOLOBox(num_classes=80, conf_thresh=p.conf_thresh, downsample_ratio=32, clip_bbox=True,
                         scale_x_y=cfg.yolo.scale_x_y)
        net = YOLOv3(backbone=backbone, neck=neck, yolo_head=head,
                     post_process=BBoxPostProcess(num_classes=80, decode=decode, nms=_ppdet_nms(p)))
        if seed is not None:
            _seed_extras(net, np.random.default_rng(seed), 0 if cfg.iou_aware_factor is None else 3)
    net.eval()
    return net


def _ppdet_backbone_and_neck(version: str):
    from ppdet.modeling.backbones.mobilenet_v3 import MobileNetV3
    from ppdet.modeling.backbones.resnet import ResNet
    from ppdet.modeling.necks.yolo_fpn import PPYOLOFPN, PPYOLOPAN, PPYOLOTinyFPN
    if version == "tiny":
        backbone = MobileNetV3(model_name="large", scale=0.5, with_extra_blocks=False, extra_block_filters=[],
                               feature_maps=[7, 13, 16], norm_type="sync_bn")
        channels = [s.channels for s in backbone.out_shape]
        return backbone, PPYOLOTinyFPN(in_channels=channels, detection_block_channels=list(CONFIG_TINY.tiny_widths),
                                       spp=True, drop_block=True, norm_type="sync_bn")
    backbone = ResNet(depth=50, variant="d", return_idx=[1, 2, 3], dcn_v2_stages=list(DCN_STAGES), freeze_at=-1,
                      freeze_norm=False, norm_decay=0., norm_type="sync_bn")
    channels = [s.channels for s in backbone.out_shape]
    if version == "v1":
        return backbone, PPYOLOFPN(in_channels=channels, coord_conv=True, drop_block=True, block_size=3,
                                   keep_prob=0.9, spp=True, norm_type="sync_bn")
    return backbone, PPYOLOPAN(in_channels=channels, drop_block=True, block_size=3, keep_prob=0.9, spp=True,
                               norm_type="sync_bn")


def _ppdet_nms(p):
    from ppdet.modeling.layers import MatrixNMS, MultiClassNMS
    if isinstance(p, PostProcess):
        return MultiClassNMS(keep_top_k=p.keep_top_k, score_threshold=p.score_threshold,
                             nms_threshold=p.nms_threshold, nms_top_k=p.nms_top_k)  # normalized: class default
    return MatrixNMS(keep_top_k=p.keep_top_k, score_threshold=p.score_threshold, post_threshold=p.post_threshold,
                     nms_top_k=p.nms_top_k, use_gaussian=p.use_gaussian, gaussian_sigma=p.gaussian_sigma,
                     normalized=p.normalized, background_label=-1)


OBJECTNESS_BIAS = -7.0  # seeded nets: about -12 after scaling, so that ~1% of anchors pass conf_thresh
OFFSET_STD = 0.004  # seeded DCN offset convs: offsets of a pixel or two, masks spread over (0, 1)


def _seed_extras(net, rng: np.random.Generator, iou_channels: int) -> None:
    """Seeded sources only. Paddle zero-initialises every DCN offset conv (then the DCN is a plain
    conv at half strength): give them random weights, so that offsets are fractional and masks vary.
    And a negative objectness bias (before seed_output_std scales the predictors), so that a few
    hundred boxes per class reach NMS, not all of them."""
    for name, layer in net.named_sublayers():
        if name.endswith(".conv_offset"):
            layer.weight.set_value(rng.normal(0, OFFSET_STD, layer.weight.shape).astype(np.float32))
            layer.bias.set_value(rng.uniform(-1, 1, layer.bias.shape).astype(np.float32))
    for conv in net.yolo_head.yolo_outputs:
        bias = conv.bias.numpy().copy()
        bias[iou_channels:].reshape(3, -1)[:, 4] = OBJECTNESS_BIAS  # after the IoU channels: per anchor (5 + C)
        conv.bias.set_value(bias)


def source_run(net, x: np.ndarray):
    """ppdet's eval forward on a batch -> (ids, scores, boxes) (B, 100, 1|1|4), -1 padded."""
    from ..frameworks import import_paddle
    paddle = import_paddle()
    out = net({k: paddle.to_tensor(v) for k, v in ppdet_io.feeds(x).items()})
    return ppdet_io.pad_detections(out["bbox"].numpy(), out["bbox_num"].numpy(), POST.keep_top_k)  # 100 for all


# -- registration ----------------------------------------------------------------------------------
NOTES = (
    "PaddleDetection 2.6 PP-YOLO (ppyolo_r50vd_dcn.yml): ResNet50-vd with DCNv2 (torchvision's deform_conv2d, "
    "modulated) in res5, PPYOLOFPN with CoordConv and SPP (DropBlock is an identity at eval), IoU-aware "
    "objectness conf^0.6 * iou^0.4, yolo_box with scale_x_y 1.05 and clip, matrix_nms (linear decay, "
    "normalized=False, thresholds 0.01, 100 kept; rows by decayed score across classes).",
    "numerics: 'ppdet' (dygraph layout: ppdet 2.x's CoordConv grid i / (2 (W - 1)) - 1) or 'paddlex' (fluid "
    "layout: PaddleX 1.x's grid 2 i / (W - 1) - 1); post-processing is the same.",
    "Boxes are in network-input pixels (the oracle runs ppdet with im_shape = input, scale_factor = 1).",
    "Seeded sources: random DCN offset convs (Paddle zero-initialises them) and an objectness bias of -7 "
    "before the predictors are scaled.",
)
SEED_STD = 2.0
PPDET_ZOO = "https://paddledet.bj.bcebos.com/models/"  # PaddleX 2.x's pretrain_weights links there
V2_FILE = "ppyolov2_r50vd_dcn_365e_coco.pdparams"
TINY_FILE = "ppyolo_tiny_650e_coco.pdparams"
NOTES_TINY = (
    "PaddleDetection 2.6 PP-YOLO tiny (ppyolo_tiny.yml): MobileNetV3 large x0.5, PPYOLOTinyFPN (SPP on the "
    "deepest map, blocks of 1x1 and 5x5 depthwise conv-BN-LeakyReLU units, widths 160/128/96), no IoU branch, "
    "its own anchors, yolo_box conf 0.005 with scale_x_y 1.05, multiclass_nms (score 0.005, IoU 0.45, "
    "normalized=True); evaluated at 320x320.",
    "Boxes are in network-input pixels (the oracle runs ppdet with im_shape = input, scale_factor = 1).",
)

_dygraph, _fluid, _table = layout_tables(tensors("v1"))
register(ModelSpec(
    name="PPYOLO", family="paddle.ppyolo", framework="paddle", task="detection", source_format="paddle-checkpoint",
    build=functools.partial(PPYOLO, CONFIG), rules={"dygraph": _dygraph, "fluid": _fluid},
    defaults=BN_DEFAULTS, preprocess=ppdet_eval((608, 608), False),
    weights=functools.partial(_weights, "PPYOLO", "ppyolo_2x.pdparams"),
    source_model="PPYOLO", metrics=(Metric("mAP", 45.9, "COCO val2017 (bbox)", "PaddleX model library"),),
    seed_output_std={"yolo_head.yolo_output": SEED_STD}, notes=NOTES,
    source_net=functools.partial(source_net, "v1"), source_run=source_run,
    numerics={"dygraph": "ppdet", "fluid": "paddlex", "inference": "ppdet"},
    floor_points={"score": "score_out", "box": "box_out"}, slow=True, parity_images=2))
ppcls.register_fluid_names("PPYOLO", functools.partial(dict, _table))

# PP-YOLOv2 (PaddleX 2.x ``paddlex.det.PPYOLOv2`` / PaddleDetection 2.x ppyolov2_r50vd_dcn_365e_coco):
# dygraph checkpoints only (no PaddleX 1.x static release)
_dygraph_v2, _, _table_v2 = layout_tables(tensors("v2"))
NOTES_V2 = (
    "PaddleDetection 2.6 PP-YOLOv2 (ppyolov2_r50vd_dcn.yml): PP-YOLO's backbone, decoding and matrix NMS; "
    "PPYOLOPAN neck (CSP blocks of Mish conv-BN units, SPP in the deepest, top-down then bottom-up with "
    "3x3 stride-2 transitions), IoU-aware factor 0.5, no CoordConv; evaluated at 640x640.",
    NOTES[2], NOTES[3],
)
register(ModelSpec(
    name="PPYOLOv2", family="paddle.ppyolo", framework="paddle", task="detection",
    source_format="paddle-checkpoint", build=functools.partial(PPYOLO, CONFIG_V2), rules={"dygraph": _dygraph_v2},
    defaults=BN_DEFAULTS, preprocess=ppdet_eval((640, 640), False),
    weights=functools.partial(SourceWeights, name="PPYOLOv2", sha1=None, url=f"{PPDET_ZOO}{V2_FILE}",
                              filename=V2_FILE, archive="none"),
    source_model="PPYOLOv2", metrics=(Metric("mAP", 49.1, "COCO val2017 (bbox)", "PaddleDetection model zoo"),),
    seed_output_std={"yolo_head.yolo_output": SEED_STD}, notes=NOTES_V2,
    source_net=functools.partial(source_net, "v2"), source_run=source_run,
    numerics={"dygraph": "ppdet", "inference": "ppdet"},
    floor_points={"score": "score_out", "box": "box_out"}, slow=True, parity_images=2))

# PP-YOLO tiny (PaddleX 2.x ``paddlex.det.PPYOLOTiny`` / PaddleDetection ppyolo_tiny_650e_coco): dygraph only
_dygraph_tiny, _, _table_tiny = layout_tables(tensors("tiny"))
register(ModelSpec(
    name="PPYOLOTiny", family="paddle.ppyolo", framework="paddle", task="detection",
    source_format="paddle-checkpoint", build=functools.partial(PPYOLO, CONFIG_TINY), rules={"dygraph": _dygraph_tiny},
    defaults=BN_DEFAULTS, preprocess=ppdet_eval((320, 320), False),
    weights=functools.partial(SourceWeights, name="PPYOLOTiny", sha1=None, url=f"{PPDET_ZOO}{TINY_FILE}",
                              filename=TINY_FILE, archive="none"),
    source_model="PPYOLOTiny", metrics=(Metric("mAP", 20.6, "COCO val2017 (bbox)", "PaddleDetection model zoo"),),
    seed_output_std={"yolo_head.yolo_output": SEED_STD}, notes=NOTES_TINY,
    source_net=functools.partial(source_net, "tiny"), source_run=source_run,
    numerics={"dygraph": "ppdet", "inference": "ppdet"},
    floor_points={"score": "score_out", "box": "box_out"}, parity_images=2))
