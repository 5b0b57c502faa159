"""Rule tables shared by the Detectron families: ResNet body, FPN, ignores, AffineChannel defaults.

Detectron names a block ``res<stage>_<index>_branch<2a|2b|2c|1>`` and an FPN level by the last
block's ``_sum`` blob (``fpn_inner_res4_5_sum_lateral`` for R-50, ``..._res4_22_sum_...`` for
R-101), so the tables are built per body from its block counts: a name from another depth does not
match."""
from __future__ import annotations

from ..arch.detectron import BODIES
from ..rules import Default, Ignore, Rule

IGNORES = (
    Ignore(r"^.*_momentum$", "SGD momentum of a trainable blob (training state, not a weight)"),
    Ignore(r"^(lr|iter)$", "training scalar (learning rate / iteration counter), not a weight"),
)

# Detectron's AffineChannel (y = x * s + b) has no statistics: FrozenBatchNorm2d with mean 0 and
# var 1 - eps computes (x - 0) * s / sqrt(1 - eps + eps) + b = x * s + b (1 - eps + eps is 1.0 in fp32).
AFFINE_DEFAULTS = (
    Default(r"^.*\.running_mean$", 0.0, "affine_channel: Detectron's AffineChannel has no mean (0)"),
    Default(r"^.*\.running_var$", 1.0 - 1e-5, "affine_channel: var 1 - eps, so the frozen BN is x * s + b"),
)


def _affine(src: str, dst: str, what: str) -> list[Rule]:
    return [Rule(rf"^{src}_bn_s$", f"{dst}.weight", f"{what}: AffineChannel scale -> frozen BN weight"),
            Rule(rf"^{src}_bn_b$", f"{dst}.bias", f"{what}: AffineChannel bias -> frozen BN bias")]


def body_rules(body: str, prefix: str, res5: str | None = None) -> list[Rule]:
    """conv1 + res2..res5 onto torchvision's ResNet under ``prefix`` (``res5``: where the res5
    stage lives instead, C4's box head)."""
    rules = [Rule(r"^conv1_w$", f"{prefix}conv1.weight", "stem 7x7 conv (no bias: AffineChannel follows)"),
             *_affine("res_conv1", f"{prefix}bn1", "stem")]
    for s, n in zip((2, 3, 4, 5), BODIES[body][0]):
        dst = res5 if (s == 5 and res5 is not None) else f"{prefix}layer{s - 1}."
        idx = rf"([0-9]|[1-9][0-9])" if n > 10 else rf"([0-{n - 1}])"
        for br, k in (("2a", 1), ("2b", 2), ("2c", 3)):
            rules.append(Rule(rf"^res{s}_{idx}_branch{br}_w$", rf"{dst}\1.conv{k}.weight",
                              f"res{s} bottleneck branch{br} conv"))
            rules += _affine(rf"res{s}_{idx}_branch{br}", rf"{dst}\1.bn{k}", f"res{s} branch{br}")
        rules.append(Rule(rf"^res{s}_0_branch1_w$", f"{dst}0.downsample.0.weight", f"res{s} projection shortcut conv"))
        rules += _affine(rf"res{s}_0_branch1", f"{dst}0.downsample.1", f"res{s} projection shortcut")
    return rules


def _conv(src: str, dst: str, why: str) -> list[Rule]:
    return [Rule(rf"^{src}_w$", f"{dst}.weight", why), Rule(rf"^{src}_b$", f"{dst}.bias", f"{why} bias")]


def fpn_rules(body: str, levels: tuple[int, ...]) -> list[Rule]:
    """Detectron's FPN on res<levels>: torchvision lists inner/layer blocks bottom-up."""
    last = {s: n - 1 for s, n in zip((2, 3, 4, 5), BODIES[body][0])}
    rules = []
    for i, s in enumerate(levels):
        inner = f"fpn_inner_res5_{last[5]}_sum" if s == 5 else f"fpn_inner_res{s}_{last[s]}_sum_lateral"
        rules += _conv(inner, f"backbone.fpn.inner_blocks.{i}.0", f"FPN 1x1 lateral on res{s}")
        rules += _conv(f"fpn_res{s}_{last[s]}_sum", f"backbone.fpn.layer_blocks.{i}.0", f"FPN 3x3 output P{s}")
    return rules


conv = _conv
