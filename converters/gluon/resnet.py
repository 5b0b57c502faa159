"""gluoncv ImageNet ResNets -> converters.arch.resnet.ResNet (one target, configured per model).

Two gluoncv code bases, with different structural names:
- ``model_zoo/resnet.py``: v1 (post-activation, stride on the bottleneck's first 1x1 conv, 1x1 body
  convs with a bias) and v2 (pre-activation, a BatchNorm on the input, a final BN-ReLU); everything
  sits in a ``features`` sequence, the classifier is ``output``;
- ``model_zoo/resnetv1b.py``: v1b (torchvision's layout: stride on the 3x3 conv, no conv biases),
  v1c (deep 3x3 stem), v1d (deep stem + average-pool projection shortcut), GroupNorm, and the pruned
  nets (v1b/v1d with per-layer widths); names already follow torchvision (``layer1.0.conv1``).

Two source layouts each: "gluon" (``save_parameters``: structural names such as
``features.4.0.body.0.weight``) and "export" (``HybridBlock.export``: symbol names such as
``resnetv10_stage1_conv0_weight``, numbered per name scope in creation order)."""
from __future__ import annotations

import functools
import re
from dataclasses import replace
from typing import Iterator

import numpy as np
import torchvision
from torch import nn

from ..arch.resnet import ResNet, ResNetConfig, config_from_shapes
from ..errors import ZooportError
from ..fixups import Fixup
from ..registry import Metric, ModelSpec, imagenet_eval, register
from ..rules import Default, Rule, bn_rules
from ..sources import gluoncv_weights

BN_DEFAULTS = (Default(r"^.*num_batches_tracked$", 0, "torch BN step counter; unused in eval, MXNet has none"),)

# depth -> (block, blocks per stage), as gluoncv's resnet_spec / resnetv1b constructors have them
DEPTHS = {18: ("basic", (2, 2, 2, 2)), 34: ("basic", (3, 4, 6, 3)), 50: ("bottleneck", (3, 4, 6, 3)),
          101: ("bottleneck", (3, 4, 23, 3)), 152: ("bottleneck", (3, 8, 36, 3))}
WIDTHS = {"basic": (64, 64, 128, 256, 512), "bottleneck": (64, 256, 512, 1024, 2048)}
# gluon's BatchNorm and gluoncv's GroupNorm both default to epsilon 1e-5; no ResNet overrides it
EPS = 1e-5


def _base(depth: int, **kw) -> ResNetConfig:
    block, layers = DEPTHS[depth]
    return ResNetConfig(block, layers, WIDTHS[block], bn_eps=EPS, **kw)


# v1: BottleneckV1 strides its first 1x1 conv and leaves use_bias=True on both 1x1 body convs
V1 = {d: _base(d, stride_in_1x1=True, bias_1x1=DEPTHS[d][0] == "bottleneck") for d in DEPTHS}
V1_50 = V1[50]
# v2: BottleneckV2 strides its 3x3 conv; no biases; input BN(scale=False, center=False)
V2 = {d: _base(d, stride_in_1x1=False, preact=True, input_bn=True) for d in DEPTHS}
# v1b: torchvision's layout; v1c: deep stem 3x3/2 (32), 3x3 (32), 3x3 (64); v1d: + avg-pool shortcut
V1B = {d: _base(d, stride_in_1x1=False) for d in DEPTHS}
V1C = {d: replace(V1B[d], deep_stem=(32, 32)) for d in (50, 101, 152)}
V1D = {d: replace(V1C[d], avg_down=True) for d in (50, 101, 152)}
# gluoncv.nn.GroupNorm: ngroups=32 by default (resnet50_v1b_gn keeps it), eps 1e-5
V1B_50_GN = replace(V1B[50], norm="gn", gn_groups=32)

IMAGENET_EVAL = imagenet_eval(224)  # short side 256, centre crop 224

# gluon BatchNorm(scale=False) runs the op with fix_gamma=True: the stored gamma is read as 1.
# (center=False only freezes beta's training; the op still adds the stored beta, so it is mapped.)
FIX_GAMMA_INPUT_BN = Fixup("mxnet_fix_gamma", (nn.BatchNorm2d,), "weight", lambda a: np.ones_like(a),
                           "v2 input BatchNorm(scale=False) runs with fix_gamma=True: stored gamma read as 1",
                           where=r"^data_bn$")

GLUON_BN = ("gamma", "beta", "running_mean", "running_var")


def _norm_rules(src: str, dst: str, why: str, cfg: ResNetConfig, names: tuple[str, ...] = GLUON_BN) -> list[Rule]:
    """BN: four rules (affine + moving statistics); GroupNorm: gamma and beta only (no statistics)."""
    if cfg.norm == "gn":
        return [Rule(rf"^{src}gamma$", rf"{dst}weight", f"{why}: GroupNorm gamma is torch's weight"),
                Rule(rf"^{src}beta$", rf"{dst}bias", f"{why}: GroupNorm beta is torch's bias")]
    return bn_rules(src, dst, why, names=names)


def _block_layers(cfg: ResNetConfig) -> tuple[str, ...]:
    """Target names of one block's conv/BN pairs in gluon's creation order (body, then downsample)."""
    return ("conv1", "conv2", "conv3") if cfg.block == "bottleneck" else ("conv1", "conv2")


# ------------------------------------------------------------------------ v1 (model_zoo/resnet.py)


def structural_rules(cfg: ResNetConfig, src: str = "", dst: str = "") -> list[Rule]:
    """v1 rules for ``save_parameters`` names; ``src``/``dst`` prefix both sides (used by SSD)."""
    s, rules = re.escape(src), []
    rules.append(Rule(rf"^{s}features\.0\.weight$", f"{dst}conv1.weight", "stem 7x7 conv"))
    rules += bn_rules(rf"{s}features\.1\.", f"{dst}bn1.", "stem BN")
    for i in range(len(cfg.layers)):
        stage = rf"{s}features\.{i + 4}\.(\d+)\."  # features[0:4] is the stem
        for k, name in enumerate(_block_layers(cfg)):
            rules.append(Rule(rf"^{stage}body\.{3 * k}\.(weight|bias)$", rf"{dst}layer{i + 1}.\1.{name}.\2",
                              f"stage {i + 1} body conv {k + 1}"))
            rules += bn_rules(rf"{stage}body\.{3 * k + 1}\.", rf"{dst}layer{i + 1}.\1.bn{k + 1}.",
                              f"stage {i + 1} body BN {k + 1}")
        rules.append(Rule(rf"^{stage}downsample\.0\.weight$", rf"{dst}layer{i + 1}.\1.downsample.0.weight",
                          f"stage {i + 1} projection shortcut conv"))
        rules += bn_rules(rf"{stage}downsample\.1\.", rf"{dst}layer{i + 1}.\1.downsample.1.",
                          f"stage {i + 1} projection shortcut BN")
    rules.append(Rule(rf"^{s}output\.(weight|bias)$", rf"{dst}fc.\1", "classifier (Dense is [out, in] like Linear)"))
    return rules


def _symbol_layers(cfg: ResNetConfig) -> Iterator[tuple[str, str, str, str]]:
    """v1 (symbol conv, symbol BN, target conv, target BN) in gluon's creation order: numbering is
    per name scope (stem, then each stage), body convs first, then the projection shortcut."""
    yield "conv0", "batchnorm0", "conv1", "bn1"
    for i, n in enumerate(cfg.layers):
        stage, k = f"stage{i + 1}_", 0
        for j in range(n):
            block = f"layer{i + 1}.{j}."
            for p, name in enumerate(_block_layers(cfg)):
                yield f"{stage}conv{k}", f"{stage}batchnorm{k}", block + name, f"{block}bn{p + 1}"
                k += 1
            if j == 0 and cfg.has_projection(i):  # the target's own shortcut condition
                yield f"{stage}conv{k}", f"{stage}batchnorm{k}", block + "downsample.0", block + "downsample.1"
                k += 1


def symbol_rules(cfg: ResNetConfig, src: str, dst: str = "", moving: str = "running",
                 classifier: bool = True) -> list[Rule]:
    """v1 rules for symbol names (export layout, or a SymbolBlock inside a detector). ``src`` is the
    regex prefix before ``conv0`` (e.g. ``resnetv10_``); ``moving`` names the BN statistics."""
    rules = []
    for conv, bn, conv_t, bn_t in _symbol_layers(cfg):
        rules.append(Rule(rf"^{src}{conv}_(weight|bias)$", rf"{dst}{conv_t}.\1", f"symbol {conv}"))
        rules += bn_rules(rf"{src}{bn}_", f"{dst}{bn_t}.", f"symbol {bn}",
                          names=("gamma", "beta", f"{moving}_mean", f"{moving}_var"))
    if classifier:
        rules.append(Rule(rf"^{src}dense0_(weight|bias)$", rf"{dst}fc.\1", "classifier (Dense is [out, in])"))
    return rules


# ------------------------------------------------------------------------ v2 (model_zoo/resnet.py)


def v2_structural_rules(cfg: ResNetConfig) -> list[Rule]:
    """features = [input BN, conv, BN, relu, max-pool, stage1..4, BN, relu, pool, flatten]; blocks
    hold bn1, conv1, bn2, conv2[, bn3, conv3] and a bare-conv ``downsample``."""
    n_conv = len(_block_layers(cfg))
    rules = [*bn_rules(r"features\.0\.", "data_bn.", "input BN (scale=False: gamma read as 1, see fix-up)"),
             Rule(r"^features\.1\.weight$", "conv1.weight", "stem 7x7 conv"),
             *bn_rules(r"features\.2\.", "bn1.", "stem BN")]
    for i in range(len(cfg.layers)):
        stage, t = rf"features\.{i + 5}\.(\d+)\.", rf"layer{i + 1}.\1."  # features[0:5] is the stem
        for k in range(1, n_conv + 1):
            rules += bn_rules(rf"{stage}bn{k}\.", rf"{t}bn{k}.", f"stage {i + 1} pre-activation BN {k}")
            rules.append(Rule(rf"^{stage}conv{k}\.weight$", rf"{t}conv{k}.weight", f"stage {i + 1} conv {k}"))
        rules.append(Rule(rf"^{stage}downsample\.weight$", rf"{t}downsample.weight",
                          f"stage {i + 1} projection shortcut (a bare 1x1 conv on the pre-activated input)"))
    rules += bn_rules(rf"features\.{len(cfg.layers) + 5}\.", "final_bn.", "final BN (before ReLU and pool)")
    rules.append(Rule(r"^output\.(weight|bias)$", r"fc.\1", "classifier (Dense is [out, in] like Linear)"))
    return rules


def _v2_symbol_layers(cfg: ResNetConfig) -> Iterator[tuple[str, str]]:
    """(symbol layer, target layer) in creation order: per block bn1, conv1, bn2, conv2, ..., then
    the projection conv; BN and conv counters run separately per stage name scope."""
    yield "batchnorm0", "data_bn"
    yield "conv0", "conv1"
    yield "batchnorm1", "bn1"
    for i, n in enumerate(cfg.layers):
        stage, b, c = f"stage{i + 1}_", 0, 0
        for j in range(n):
            block = f"layer{i + 1}.{j}."
            for k in range(1, len(_block_layers(cfg)) + 1):
                yield f"{stage}batchnorm{b}", f"{block}bn{k}"
                yield f"{stage}conv{c}", f"{block}conv{k}"
                b, c = b + 1, c + 1
            if j == 0 and cfg.has_projection(i):
                yield f"{stage}conv{c}", f"{block}downsample"
                c += 1
    yield "batchnorm2", "final_bn"


def v2_symbol_rules(cfg: ResNetConfig, src: str) -> list[Rule]:
    rules = []
    for sym, tgt in _v2_symbol_layers(cfg):
        if sym.rpartition("_")[2].startswith("conv"):
            rules.append(Rule(rf"^{src}{sym}_weight$", f"{tgt}.weight", f"symbol {sym}"))
        else:
            rules += bn_rules(rf"{src}{sym}_", f"{tgt}.", f"symbol {sym}")
    rules.append(Rule(rf"^{src}dense0_(weight|bias)$", r"fc.\1", "classifier (Dense is [out, in])"))
    return rules


# ------------------------------------------------------------- v1b/c/d, GN (model_zoo/resnetv1b.py)


def _projection_layers(cfg: ResNetConfig) -> tuple[str, str]:
    """(conv, norm) positions in ``downsample``: v1d puts the average pool at 0."""
    return ("1", "2") if cfg.avg_down else ("0", "1")


def v1b_structural_rules(cfg: ResNetConfig) -> list[Rule]:
    """gluon's names are torchvision's apart from the norm parameters (``gamma``/``beta``); the deep
    stem is ``conv1`` = [conv, norm, relu, conv, norm, relu, conv]."""
    rules: list[Rule] = []
    if cfg.deep_stem:
        for k in range(len(cfg.deep_stem)):
            rules.append(Rule(rf"^conv1\.{3 * k}\.weight$", f"conv1.{3 * k}.weight", f"deep stem 3x3 conv {k + 1}"))
            rules += _norm_rules(rf"conv1\.{3 * k + 1}\.", f"conv1.{3 * k + 1}.", f"deep stem norm {k + 1}", cfg)
        last = 3 * len(cfg.deep_stem)
        rules.append(Rule(rf"^conv1\.{last}\.weight$", f"conv1.{last}.weight", "deep stem last 3x3 conv"))
    else:
        rules.append(Rule(r"^conv1\.weight$", "conv1.weight", "stem 7x7 conv"))
    rules += _norm_rules(r"bn1\.", "bn1.", "stem norm", cfg)
    convs = "".join(str(k + 1) for k in range(len(_block_layers(cfg))))
    pc, pn = _projection_layers(cfg)
    for i in range(1, len(cfg.layers) + 1):
        stage = rf"layer{i}\.(\d+)\."
        rules.append(Rule(rf"^{stage}conv([{convs}])\.weight$", rf"layer{i}.\1.conv\2.weight", f"stage {i} body conv"))
        for k in range(1, len(convs) + 1):
            rules += _norm_rules(rf"{stage}bn{k}\.", rf"layer{i}.\1.bn{k}.", f"stage {i} body norm {k}", cfg)
        rules.append(Rule(rf"^{stage}downsample\.{pc}\.weight$", rf"layer{i}.\1.downsample.{pc}.weight",
                          f"stage {i} projection shortcut conv" + (" (after the average pool)" if cfg.avg_down else "")))
        rules += _norm_rules(rf"{stage}downsample\.{pn}\.", rf"layer{i}.\1.downsample.{pn}.",
                             f"stage {i} projection shortcut norm", cfg)
    rules.append(Rule(r"^fc\.(weight|bias)$", r"fc.\1", "classifier (Dense is [out, in] like Linear)"))
    return rules


def v1b_symbol_layers(cfg: ResNetConfig) -> Iterator[tuple[str, str, str, str]]:
    """(symbol conv, symbol norm or "", target conv, target norm): the stem in the root scope
    (``conv0``.. and ``batchnorm0``..), each stage's blocks in ``layers{i}_`` and its projection in
    ``down{i}_``, counters running over the whole stage in creation order."""
    norm = "groupnorm" if cfg.norm == "gn" else "batchnorm"
    n = len(cfg.deep_stem)
    for k in range(n):
        yield f"conv{k}", f"{norm}{k}", f"conv1.{3 * k}", f"conv1.{3 * k + 1}"
    yield f"conv{n}", f"{norm}{n}", f"conv1.{3 * n}" if n else "conv1", "bn1"
    pc, pn = _projection_layers(cfg)
    for i, blocks in enumerate(cfg.layers, start=1):
        k = 0
        for j in range(blocks):
            for p, name in enumerate(_block_layers(cfg), start=1):
                yield f"layers{i}_conv{k}", f"layers{i}_{norm}{k}", f"layer{i}.{j}.{name}", f"layer{i}.{j}.bn{p}"
                k += 1
        if cfg.has_projection(i - 1):
            yield f"down{i}_conv0", f"down{i}_{norm}0", f"layer{i}.0.downsample.{pc}", f"layer{i}.0.downsample.{pn}"


def v1b_symbol_rules(cfg: ResNetConfig, src: str) -> list[Rule]:
    rules = []
    for conv, norm, conv_t, norm_t in v1b_symbol_layers(cfg):
        rules.append(Rule(rf"^{src}{conv}_weight$", f"{conv_t}.weight", f"symbol {conv}"))
        rules += _norm_rules(rf"{src}{norm}_", f"{norm_t}.", f"symbol {norm}", cfg)
    rules.append(Rule(rf"^{src}dense0_(weight|bias)$", r"fc.\1", "classifier (Dense is [out, in])"))
    return rules


def _avgpool_pairs(cfg: ResNetConfig) -> tuple[tuple[str, str], ...]:
    """v1d: compare each projection's average pool directly (ceil mode, padding excluded)."""
    if not cfg.avg_down:
        return ()
    return tuple((f"layer{i}.0.downsample.0", f"layer{i}.0.downsample.0") for i in range(1, len(cfg.layers) + 1))


# ------------------------------------------------------------------------------------ registry


def _metrics(top1: float, top5: float) -> tuple[Metric, ...]:
    return (Metric("top1", top1, "ImageNet val", "gluon-cv model zoo"),
            Metric("top5", top5, "ImageNet val", "gluon-cv model zoo"))


def _widths_from_checkpoint(name: str):
    def build():
        raise ZooportError(f"{name}: a pruned net's widths come from its checkpoint; build it with "
                           "spec.build_from_shapes (converters.pipeline.build_target)")
    return build


NOTES = {
    "v1": "ResNet v1: stride on the bottleneck's first 1x1 conv; its 1x1 body convs have a bias; BN eps 1e-5.",
    "v2": ("ResNet v2 (pre-activation): BN(scale=False, center=False) on the input (fix_gamma: gamma read "
           "as 1, beta added); BN-ReLU before every conv; projection = bare 1x1 conv on the pre-activated "
           "input; stride on the 3x3; final BN-ReLU; BN eps 1e-5."),
    "v1b": "ResNet v1b: torchvision's layout (stride on the 3x3 conv, no conv biases); BN eps 1e-5.",
    "v1c": "ResNet v1c: v1b with a deep stem (3x3/2 32, 3x3 32, 3x3 64, each conv-BN-ReLU but the last).",
    "v1d": ("ResNet v1d: v1c with an average-pool projection shortcut: AvgPool(stride, ceil_mode=True, "
            "count_include_pad=False), then a stride-1 1x1 conv and BN."),
    "gn": ("ResNet v1b with GroupNorm (32 groups, eps 1e-5) in place of every BatchNorm. No export "
           "layout: gluoncv's GroupNorm reshapes with x.shape, so the net cannot be hybridized/exported."),
    "pruned": ("Pruned: per-layer widths are read from the checkpoint's shapes (gluoncv keeps the unpruned "
               "net's projection-shortcut placement)."),
}

# name, config, kind, sha1 (gluoncv model_store), top-1, top-5 (gluon-cv model zoo)
_PLAIN = [
    *[(f"resnet{d}_v1", V1[d], "v1", sha, t1, t5) for d, sha, t1, t5 in (
        (18, "a0666292f0a30ff61f857b0b66efc0228eb6a54b", 70.93, 89.92),
        (34, "48216ba99a8b1005d75c0f3a0c422301a0473233", 74.37, 91.87),
        (50, "cc729d95031ca98cf2ff362eb57dee4d9994e4b2", 77.36, 93.57),
        (101, "d988c13d6159779e907140a638c56f229634cb02", 78.34, 94.01),
        (152, "acfd09703b113143af9c33898bad8b6154fd6fb0", 79.22, 94.64))],
    *[(f"resnet{d}_v2", V2[d], "v2", sha, t1, t5) for d, sha, t1, t5 in (
        (18, "a81db45fd7b7a2d12ab97cd88ef0a5ac48b8f657", 71.00, 89.92),
        (34, "9d6b80bbc35169de6b6edecffdd6047c56fdd322", 74.40, 92.08),
        (50, "ecdde35339c1aadbec4f547857078e734a76fb49", 77.11, 93.43),
        (101, "18e93e4f48947e002547f50eabbcc9c83e516aa6", 78.53, 94.17),
        (152, "f2695542de38cf7e71ed58f02893d82bb409415e", 79.21, 94.31))],
    *[(f"resnet{d}_v1b", V1B[d], "v1b", sha, t1, t5) for d, sha, t1, t5 in (
        (18, "2d9d980c990442f826f20781ed039851e78dabe3", 70.94, 89.83),
        (34, "8e16b84814e84f64d897854003f049872991eaa6", 74.65, 92.08),
        (50, "0ecdba34691be172036ddf244ff1b2eade75ffde", 77.67, 93.82),
        (101, "a455932aa95cb7dcfa05fd040b9b5a5660733c39", 79.20, 94.61),
        (152, "a5a61ee1ce5ab7c09720775b223360f3c60e211d", 79.69, 94.74))],
    ("resnet50_v1b_gn", V1B_50_GN, "gn", "48ddf358d5acc879f76740dae695be67d96beea6", 77.36, 93.59),
    *[(f"resnet{d}_v1c", V1C[d], "v1c", sha, t1, t5) for d, sha, t1, t5 in (
        (50, "2a4e070854db538595cc7ee02e1a914bdd49ca02", 78.03, 94.09),
        (101, "064858f23f9878bfbbe378a88ccb25d612b149a1", 79.60, 94.75),
        (152, "75babab699e1c93f5da3c1ce4fd0092d1075f9a0", 80.01, 94.96))],
    *[(f"resnet{d}_v1d", V1D[d], "v1d", sha, t1, t5) for d, sha, t1, t5 in (
        (50, "117a384ecf61490eb31ea147eb0e61e6d2b8a449", 79.15, 94.58),
        (101, "1b2b825feff86b0354642a4ab59f9b6e35e47338", 80.51, 95.12),
        (152, "cddbc86ff24a5544f57242ded0acb14ef1fbd437", 80.61, 95.34))],
]

# gluoncv name, its model-store name (the file is stored under the pre-rename name), base config,
# sha1, top-1, top-5
_PRUNED = [
    ("resnet18_v1b_0.89", "resnet18_v1b_2.6x", V1B[18], "54f7742b1f8939ef8e59ede3469bfa5eb6e247fa", 67.2, 87.45),
    ("resnet50_v1d_0.86", "resnet50_v1d_1.8x", V1D[50], "a230c33f7966ab761597328686b28d0545e4ea30", 78.02, 93.82),
    ("resnet50_v1d_0.48", "resnet50_v1d_3.6x", V1D[50], "0d3e69bb033d1375c3734419bbc653c3a474ea53", 74.66, 92.34),
    ("resnet50_v1d_0.37", "resnet50_v1d_5.9x", V1D[50], "9982ae4985b14e1c0ab25342a9f08bc4773b3998", 70.71, 89.74),
    ("resnet50_v1d_0.11", "resnet50_v1d_8.8x", V1D[50], "6a25eeceb7d27bd9c05fa2bf250c55d3960ad4c7", 63.22, 84.79),
    ("resnet101_v1d_0.76", "resnet101_v1d_1.9x", V1D[101], "a872796b63fb883116831db3454711421a628154", 79.46, 94.69),
    ("resnet101_v1d_0.73", "resnet101_v1d_2.2x", V1D[101], "712fccb185921a596baebe9246ff6c994b88591b", 78.89, 94.48),
]

# torchvision.models.resnet* is this very architecture (BasicBlock/Bottleneck with the stride on
# the 3x3, no biases, BN eps 1e-5) and our keys are its keys: v1b, and v1 with basic blocks
TORCHVISION = {f"resnet{d}_v1b": getattr(torchvision.models, f"resnet{d}") for d in DEPTHS}
TORCHVISION.update({f"resnet{d}_v1": getattr(torchvision.models, f"resnet{d}") for d in (18, 34)})

def _rules(cfg: ResNetConfig, kind: str, prefix: str) -> dict[str, list[Rule]]:
    if cfg.norm == "gn":  # gluoncv's GroupNorm cannot be hybridized, so MXNet cannot export the net
        return {"gluon": v1b_structural_rules(cfg)}
    if kind == "v1":
        return {"gluon": structural_rules(cfg), "export": symbol_rules(cfg, r"resnetv1\d+_")}  # any instance counter
    if kind == "v2":
        return {"gluon": v2_structural_rules(cfg), "export": v2_symbol_rules(cfg, r"resnetv2\d+_")}
    # resnetv1b.py names its nets with a fixed prefix (no instance counter)
    return {"gluon": v1b_structural_rules(cfg), "export": v1b_symbol_rules(cfg, prefix)}


def _v1b_prefix(name: str) -> str:
    """resnetv1b.py's fixed name_prefix: resnetv1b_ (v1b, GN and the pruned 18), else resnetv1c_/d_."""
    return "resnetv1d_" if "_v1d" in name else "resnetv1c_" if "_v1c" in name else "resnetv1b_"


for _name, _cfg, _kind, _sha1, _top1, _top5 in _PLAIN:
    register(ModelSpec(
        name=_name, family="gluon.resnet", framework="gluon", task="classification",
        source_format="mxnet-params", build=functools.partial(ResNet, _cfg),
        rules=_rules(_cfg, _kind, _v1b_prefix(_name)),
        fixups=(FIX_GAMMA_INPUT_BN,) if _kind == "v2" else (),
        defaults=BN_DEFAULTS, preprocess=IMAGENET_EVAL,
        weights=functools.partial(gluoncv_weights, _name, _sha1),
        source_model=_name, seed_output_std={"output" if _kind in ("v1", "v2") else "fc": 3.0},
        metrics=_metrics(_top1, _top5), extra_pairs=_avgpool_pairs(_cfg),
        torchvision=TORCHVISION.get(_name),
        parity_images=6 if _name == "resnet50_v1" else 3,
        notes=(NOTES[_kind],),
    ))

for _name, _store, _cfg, _sha1, _top1, _top5 in _PRUNED:
    register(ModelSpec(
        name=_name, family="gluon.resnet", framework="gluon", task="classification",
        source_format="mxnet-params", build=_widths_from_checkpoint(_name),
        build_from_shapes=lambda shapes, cfg=_cfg: ResNet(config_from_shapes(cfg, shapes)),
        rules=_rules(_cfg, "pruned", _v1b_prefix(_name)), defaults=BN_DEFAULTS, preprocess=IMAGENET_EVAL,
        weights=functools.partial(gluoncv_weights, _store, _sha1),
        source_model=_name, seed_output_std={"fc": 3.0}, metrics=_metrics(_top1, _top5),
        extra_pairs=_avgpool_pairs(_cfg),
        notes=(NOTES["v1d" if _cfg.avg_down else "v1b"], NOTES["pruned"]),
    ))
