"""HRNet as plain PyTorch modules, framework-neutral names: one trunk (``HRNetBody``: stem, layer1,
stages 2..4, giving the four branches) shared by the classifier (``HRNet``, the "_C" ImageNet nets),
the segmenter (``HRNetFCN``, PaddleSeg's FCN head) and the detectors' HRFPN (arch/hrfpn.py).

Layout: a stride-4 stem (two 3x3/2 conv-BN-ReLU), four ResNet bottlenecks, then stages 2..4 of
high-resolution modules over 2, 3, 4 parallel branches (widths w, 2w, 4w, 8w). A module runs
``blocks`` basic blocks per branch, then fuses: output i = ReLU(x_i + sum over j != i of
  j > i: nearest-upsample(BN(conv1x1(x_j)), 2^(j-i))
  j < i: (i - j) conv3x3/2-BN layers, ReLU between them, the last one to branch i's width).
Each new branch is a 3x3/2 conv-BN-ReLU on the lowest-resolution one. The two Paddle generations
differ in two switches (``HRNetConfig``): PaddleClas pads symmetrically and upsamples by nearest with
an integer factor (PaddleDetection 2.x too); PaddleSeg 2.x pads stride-2 convs "same" (the odd pixel
after: arch/paddle_seg.py) and upsamples bilinearly (align_corners False) to the exact branch size;
PaddleX 1.x's static segmentation trunk pads symmetrically and upsamples bilinearly to the branch size
with align_mode 1 (no half-pixel shift: ``fuse_up="bilinear_asym"``).
The classification head lifts
every branch through a bottleneck (with a projection) to 128/256/512/1024 channels, merges them
downwards (y = x_{i+1} + conv3x3/2-BN-ReLU(y)), then conv1x1-BN-ReLU to 2048, global average, Linear.

Own module: torchvision has no HRNet. Its ResNet blocks are reused as they are (stride on the 3x3,
no conv biases, ReLU after the sum: exactly HRNet's blocks). The sums run in the source's order
(x_i first, then j ascending) so that float32 rounding follows it."""
from __future__ import annotations

import functools
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck

from .paddle_blocks import ConvBNAct
from .paddle_seg import ConvBNAct as BiasedConvBNAct, conv2d, resize, resize_asym


FUSE_UP = ("nearest", "bilinear", "bilinear_asym")


@dataclass(frozen=True)
class HRNetConfig:
    width: int = 18  # branch widths: width * 2**b
    modules: tuple[int, ...] = (1, 4, 3)  # high-resolution modules in stages 2, 3, 4
    blocks: int = 4  # basic blocks per branch in each module
    stem: int = 64  # stem width; layer1's bottlenecks expand it to 4 * stem
    head_planes: tuple[int, ...] = (32, 64, 128, 256)  # head bottlenecks' inner widths (x4 out)
    features: int = 2048
    num_classes: int = 1000
    bn_eps: float = 1e-5
    same_pad: bool = False  # stride-2 convs padded as Paddle's "same" (PaddleSeg), else (k - 1) // 2
    fuse_up: str = "nearest"  # "nearest": integer factor (PaddleClas) | "bilinear": to the branch's size
    # | "bilinear_asym": to the branch's size, align_mode 1 (PaddleX 1.x static segmentation)

    def channels(self, branches: int) -> list[int]:
        return [self.width * 2 ** b for b in range(branches)]


def _cba(cin: int, cout: int, kernel: int, stride: int, act: str | None, cfg: HRNetConfig) -> ConvBNAct:
    """A bias-free conv-BN(-ReLU); with ``same_pad`` a strided conv pads as Paddle's "same"."""
    m = ConvBNAct(cin, cout, kernel, stride, act=act, bn_eps=cfg.bn_eps)
    if cfg.same_pad and stride > 1:
        m.conv = conv2d(cin, cout, kernel, stride, "same", bias=False)
    return m


def _bottleneck(cin: int, planes: int, cfg: HRNetConfig, project: bool) -> Bottleneck:
    norm = functools.partial(nn.BatchNorm2d, eps=cfg.bn_eps)
    down = nn.Sequential(nn.Conv2d(cin, planes * 4, 1, bias=False), norm(planes * 4)) if project else None
    return Bottleneck(cin, planes, downsample=down, norm_layer=norm)


class HRModule(nn.Module):
    """Branches of basic blocks, then the all-to-all fusion (see the module docstring)."""

    def __init__(self, channels: list[int], cfg: HRNetConfig):
        super().__init__()
        if cfg.fuse_up not in FUSE_UP:
            raise ValueError(f"fuse_up must be one of {FUSE_UP}, got {cfg.fuse_up!r}")
        self.up = cfg.fuse_up
        self.bilinear = cfg.fuse_up != "nearest"
        norm = functools.partial(nn.BatchNorm2d, eps=cfg.bn_eps)
        self.branches = nn.ModuleList(
            nn.Sequential(*(BasicBlock(c, c, norm_layer=norm) for _ in range(cfg.blocks))) for c in channels)
        self.fuse = nn.ModuleList(nn.ModuleList(self._fuse_path(channels, i, j, cfg) for j in range(len(channels)))
                                  for i in range(len(channels)))

    @staticmethod
    def _fuse_path(channels: list[int], i: int, j: int, cfg: HRNetConfig) -> nn.Module:
        if j == i:
            return nn.Identity()
        if j > i:
            return _cba(channels[j], channels[i], 1, 1, None, cfg)
        steps = i - j  # the intermediate steps keep branch j's width and end in a ReLU
        return nn.Sequential(*(_cba(channels[j], channels[i] if k == steps - 1 else channels[j], 3, 2,
                                    None if k == steps - 1 else "relu", cfg) for k in range(steps)))

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        xs = [branch(x) for branch, x in zip(self.branches, xs)]
        out = []
        for i, row in enumerate(self.fuse):
            y = xs[i]
            for j, path in enumerate(row):
                if j > i and self.up == "bilinear_asym":
                    y = y + resize_asym(path(xs[j]), y.shape[-2:])
                elif j > i and self.bilinear:
                    y = y + resize(path(xs[j]), y.shape[-2:], False)
                elif j > i:  # an integer nearest upsample repeats each pixel 2^(j-i) times per axis
                    y = y + F.interpolate(path(xs[j]), scale_factor=2 ** (j - i), mode="nearest")
                elif j < i:
                    y = y + path(xs[j])
            out.append(F.relu(y))
        return out


class HRNetBody(nn.Module):
    """Stem, layer1 and stages 2..4; ``branches(x)`` gives the four maps (strides 4, 8, 16, 32)."""

    def __init__(self, cfg: HRNetConfig = HRNetConfig()):
        super().__init__()
        self.cfg = cfg
        wide = cfg.stem * 4
        self.conv1 = _cba(3, cfg.stem, 3, 2, "relu", cfg)
        self.conv2 = _cba(cfg.stem, cfg.stem, 3, 2, "relu", cfg)
        self.layer1 = nn.Sequential(*(_bottleneck(cfg.stem if b == 0 else wide, cfg.stem, cfg, b == 0)
                                      for b in range(4)))
        c2 = cfg.channels(2)
        self.transition1 = nn.ModuleList([_cba(wide, c2[0], 3, 1, "relu", cfg), _cba(wide, c2[1], 3, 2, "relu", cfg)])
        self.stage2 = nn.Sequential(*(HRModule(c2, cfg) for _ in range(cfg.modules[0])))
        for s in (3, 4):  # each later stage opens one branch below the lowest resolution
            c = cfg.channels(s)
            setattr(self, f"transition{s - 1}", _cba(c[-2], c[-1], 3, 2, "relu", cfg))
            setattr(self, f"stage{s}", nn.Sequential(*(HRModule(c, cfg) for _ in range(cfg.modules[s - 2]))))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.branches(x)

    def branches(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.layer1(self.conv2(self.conv1(x)))
        xs = self.stage2([t(x) for t in self.transition1])
        xs = self.stage3(xs + [self.transition2(xs[-1])])
        return self.stage4(xs + [self.transition3(xs[-1])])


class HRNet(HRNetBody):
    """The classifier: the trunk's parameters at the top level (``conv1``, ``stage2``, ...)."""

    def __init__(self, cfg: HRNetConfig = HRNetConfig()):
        super().__init__(cfg)
        eps = cfg.bn_eps
        c4, outs = cfg.channels(4), [p * 4 for p in cfg.head_planes]
        self.incre = nn.ModuleList(_bottleneck(c, p, cfg, True) for c, p in zip(c4, cfg.head_planes))
        self.downsamp = nn.ModuleList(ConvBNAct(a, b, 3, 2, act="relu", bn_eps=eps) for a, b in zip(outs, outs[1:]))
        self.final = ConvBNAct(outs[-1], cfg.features, 1, act="relu", bn_eps=eps)
        self.fc = nn.Linear(cfg.features, cfg.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ys = [m(t) for m, t in zip(self.incre, self.branches(x))]
        y = ys[0]
        for down, t in zip(self.downsamp, ys[1:]):
            y = t + down(y)
        y = F.adaptive_avg_pool2d(self.final(y), 1)
        return self.fc(torch.flatten(y, 1))


SEG_W18 = HRNetConfig(18, same_pad=True, fuse_up="bilinear")  # PaddleSeg 2.x's HRNet_W18
SEG_NUMERICS = ("paddleseg", "paddlex")


class HRNetFCN(nn.Module):
    """PaddleSeg's FCN on HRNet: the four branches resized to the first's size (bilinear,
    align_corners False) and concatenated (15w channels), a 1x1 conv-BN-ReLU (biased conv), a 1x1
    classifier, logits resized to the input size.

    ``set_numerics("paddlex")`` rebuilds it (untrained) as PaddleX 1.x's static net: the trunk padded
    symmetrically with align_mode-1 fusion (``fuse_up="bilinear_asym"``), bias-free head conv and
    classifier, both head resizes with align_corners True (fluid resize_bilinear's default)."""

    def __init__(self, num_classes: int = 19, cfg: HRNetConfig = SEG_W18, numerics: str = "paddleseg"):
        super().__init__()
        self.num_classes, self.dygraph_cfg = num_classes, cfg
        self._build(numerics)

    def _build(self, numerics: str) -> None:
        if numerics not in SEG_NUMERICS:
            raise ValueError(f"HRNetFCN numerics must be one of {SEG_NUMERICS}, got {numerics!r}")
        self.numerics, static = numerics, numerics == "paddlex"
        cfg = replace(self.dygraph_cfg, same_pad=False, fuse_up="bilinear_asym") if static else self.dygraph_cfg
        self.cfg = cfg
        self.backbone = HRNetBody(cfg)
        c = sum(cfg.channels(4))
        self.head = ConvBNAct(c, c, 1, act="relu", bn_eps=cfg.bn_eps) if static else BiasedConvBNAct(c, c, 1, 1, 0)
        self.logit = nn.Conv2d(c, self.num_classes, 1, bias=not static)

    def set_numerics(self, name: str) -> None:
        """"paddleseg" or "paddlex": rebuilds the (untrained) layers; call it before loading weights."""
        if name != self.numerics:
            self._build(name)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        corners = self.numerics == "paddlex"
        xs = self.backbone.branches(x)
        size = xs[0].shape[-2:]
        y = torch.cat([xs[0]] + [resize(t, size, corners) for t in xs[1:]], 1)
        return resize(self.logit(self.head(y)), x.shape[-2:], corners)
