"""gluoncv Simple Pose (ResNet v1b/v1d backbones, COCO keypoints) -> converters.arch.simple_pose.

gluoncv's SimplePoseResNet copies the backbone's conv1, bn1, relu, maxpool and layer1..4 into one
HybridSequential ``resnet`` (so ``resnet.0`` is conv1, ``resnet.4`` is layer1, no classifier), with
gluoncv.nn.BatchNormCudnnOff as every norm layer (plain BatchNorm on CPU: eps 1e-5, affine).

Source layouts:
- "gluon" (``save_parameters``): the backbone's torchvision-like names under ``resnet.N``, then
  ``deconv_layers.{0,1,3,4,6,7}`` and ``final_layer``;
- "export" (``HybridBlock.export``): the backbone keeps resnetv1b.py's fixed prefix
  (``resnetv1b_``/``resnetv1d_``) with ``batchnormcudnnoff`` norms; the head is built outside any
  name scope, so its symbols take MXNet's process-wide counters: ``conv0..2`` (deconvs),
  ``conv3`` (final layer), ``batchnormcudnnoff0..2`` in a process that built nothing before."""
from __future__ import annotations

import functools
import re

from ..arch.resnet import ResNetConfig
from ..arch.simple_pose import SimplePose, SimplePoseConfig
from ..registry import Metric, ModelSpec, Preprocess, register
from ..rules import Rule, bn_rules
from ..sources import gluoncv_weights
from .resnet import BN_DEFAULTS, NOTES, V1B, V1D, v1b_symbol_layers, v1b_structural_rules

# gluoncv's pose presets (detector_to_simple_pose / SimplePoseDefaultValTransform): the person
# box enlarged 1.25x, cropped and resized to 256x192 (H, W) with mx.image's default bicubic,
# ToTensor, then ImageNet mean/std.
POSE_EVAL = Preprocess("pose", (256, 192), "exact", interp="bicubic", crop="none")
PARITY_SIZES = ((128, 96), (384, 288))  # gluon-cv also publishes 128x96 and 384x288 checkpoints

# the top-level children of gluon's ``resnet`` sequence that hold parameters (2, 3: relu, maxpool)
GLUON_BACKBONE = {r"conv1\.": r"resnet\.0\.", r"bn1\.": r"resnet\.1\.",
                  **{rf"layer{i}\.": rf"resnet\.{i + 3}\." for i in range(1, 5)}}


def gluon_backbone_rules(cfg: ResNetConfig) -> list[Rule]:
    """resnet.py's v1b/v1d table (torchvision names), re-anchored under ``resnet.N``; the
    classifier rule is dropped (the pose net has none)."""
    out = []
    for rule in v1b_structural_rules(cfg):
        if rule.repl.startswith("fc."):
            continue
        old = next((p for p in GLUON_BACKBONE if rule.pattern.startswith("^" + p)), None)
        if old is None:
            raise ValueError(f"backbone rule {rule.pattern} has no gluon prefix to move to")
        out.append(Rule("^" + GLUON_BACKBONE[old] + rule.pattern[1 + len(old):], rule.repl, rule.why))
    return out


def export_backbone_rules(cfg: ResNetConfig, prefix: str) -> list[Rule]:
    """resnet.py's v1b/v1d symbol enumeration with BatchNormCudnnOff's symbol name for the norms."""
    rules = []
    for conv, norm, conv_t, norm_t in v1b_symbol_layers(cfg):
        norm = re.sub(r"batchnorm(\d+)$", r"batchnormcudnnoff\1", norm)
        rules.append(Rule(rf"^{prefix}{conv}_weight$", f"{conv_t}.weight", f"symbol {conv}"))
        rules += bn_rules(rf"{prefix}{norm}_", f"{norm_t}.", f"symbol {norm}",
                          names=("gamma", "beta", "running_mean", "running_var"))
    return rules


def head_rules(cfg: SimplePoseConfig, layout: str) -> list[Rule]:
    """Deconv i is ``deconv_layers.3i`` with its BN at ``3i+1`` on both sides (gluon's sequence is
    torch's); export symbols are conv{i}/batchnormcudnnoff{i}, the final conv conv{n}."""
    n, rules = len(cfg.deconv_filters), []
    bias = "(weight|bias)" if cfg.deconv_bias else "(weight)"
    for i in range(n):
        conv, bn = (rf"deconv_layers\.{3 * i}\.", rf"deconv_layers\.{3 * i + 1}\.") if layout == "gluon" \
            else (f"conv{i}_", f"batchnormcudnnoff{i}_")
        rules.append(Rule(rf"^{conv}{bias}$", rf"deconv_layers.{3 * i}.\1",
                          f"deconv {i + 1}: Conv2DTranspose (in, out, kh, kw) is ConvTranspose2d's layout"))
        rules += bn_rules(bn, f"deconv_layers.{3 * i + 1}.", f"deconv {i + 1} BN")
    final = r"final_layer\." if layout == "gluon" else f"conv{n}_"
    rules.append(Rule(rf"^{final}(weight|bias)$", r"final_layer.\1", "final 1x1 conv to one heatmap per joint"))
    return rules


def rules_for(cfg: SimplePoseConfig, prefix: str) -> dict[str, list[Rule]]:
    return {"gluon": gluon_backbone_rules(cfg.backbone) + head_rules(cfg, "gluon"),
            "export": export_backbone_rules(cfg.backbone, prefix) + head_rules(cfg, "export")}


def extra_pairs(cfg: SimplePoseConfig) -> tuple[tuple[str, str], ...]:
    """Block outputs the mapping does not pair: max-pool, each stage (after the residual adds),
    each deconv's ReLU, and v1d's average-pool shortcuts."""
    pairs = [("resnet.3", "maxpool")] + [(f"resnet.{i + 3}", f"layer{i}") for i in range(1, 5)]
    pairs += [(f"deconv_layers.{3 * i + 2}", f"deconv_layers.{3 * i + 2}") for i in range(len(cfg.deconv_filters))]
    if cfg.backbone.avg_down:
        pairs += [(f"resnet.{i + 3}.0.downsample.0", f"layer{i}.0.downsample.0") for i in range(1, 5)]
    return tuple(pairs)


def _metrics(ap: float, ap50: float, ap75: float, ap_flip: float) -> tuple[Metric, ...]:
    src, data = "gluon-cv model zoo (Simple Pose, 256x192)", "COCO val2017 keypoints"
    return (Metric("AP", ap, data, src), Metric("AP50", ap50, data, src), Metric("AP75", ap75, data, src),
            Metric("AP (flip test)", ap_flip, data, src))


EXPORT_NOTE = ("Export layout: the head's symbol names carry MXNet's process-wide counters (conv0..3, "
               "batchnormcudnnoff0..2 when the net is the first built in its process, or inside a fresh "
               "mx.name.NameManager()); an export from a process that built other nets first has shifted "
               "numbers: re-export it that way, or convert the save_parameters file.")

# name, backbone depth and variant, sha1 (gluoncv model_store), AP, AP50, AP75, AP with flip test
# (gluon-cv's Simple Pose table, COCO val2017 at 256x192)
_MODELS = [
    ("simple_pose_resnet18_v1b", 18, "v1b", "f63d42ac8f83b239d4e08b636b888b8e50cd066d", 66.3, 89.2, 73.4, 68.4),
    ("simple_pose_resnet50_v1b", 50, "v1b", "e2c7b1adea31264bc9220511308b4efa89c6fc50", 71.0, 91.2, 78.6, 72.2),
    ("simple_pose_resnet50_v1d", 50, "v1d", "ba2675b6a43fc31601f0e99311b0bb115369bc82", 71.6, 91.3, 78.7, 73.3),
    ("simple_pose_resnet101_v1b", 101, "v1b", "b7ec0de1a34eb718efd4a84339cc1547ead88cbe", 72.4, 92.2, 79.8, 73.7),
    ("simple_pose_resnet101_v1d", 101, "v1d", "1f8f48fd49a23bcc73c1cd736bdc639cd1434489", 73.0, 92.2, 80.8, 74.2),
    ("simple_pose_resnet152_v1b", 152, "v1b", "ef4e033612a5fca6fc69e54c87da3ba3866d533e", 72.4, 92.1, 79.6, 74.2),
    ("simple_pose_resnet152_v1d", 152, "v1d", "3ca502ea8eaaa15f4f972d5cf139167d15ffa798", 73.4, 92.3, 80.7, 74.6),
]
BACKBONES = {"v1b": V1B, "v1d": V1D}  # gluoncv builds resnet{depth}_{variant} with BatchNormCudnnOff

for _name, _depth, _v, _sha1, _ap, _ap50, _ap75, _apf in _MODELS:
    _cfg = SimplePoseConfig(BACKBONES[_v][_depth])
    register(ModelSpec(
        name=_name, family="gluon.simple_pose", framework="gluon", task="pose",
        source_format="mxnet-params", build=functools.partial(SimplePose, _cfg),
        rules=rules_for(_cfg, f"resnet{_v}_"), defaults=BN_DEFAULTS, preprocess=POSE_EVAL,
        weights=functools.partial(gluoncv_weights, _name, _sha1), source_model=_name,
        metrics=_metrics(_ap, _ap50, _ap75, _apf), extra_pairs=extra_pairs(_cfg), parity_sizes=PARITY_SIZES,
        # the final conv starts at N(0, 0.001): give seeded heatmaps a spread like trained ones
        seed_output_std={"final_layer": 1.0},
        slow=_depth >= 101,  # ResNet-101/152 backbones: parity-full only (CI budget)
        notes=(NOTES[_v], "Head: 3x [ConvTranspose2d 4x4/2 (pad 1, no bias), BN, ReLU], 1x1 conv to "
               "17 heatmaps at 1/4 of the input.", EXPORT_NOTE),
    ))
