"""ResNet as a configurable, framework-neutral PyTorch module (torchvision-style names).

One module for the whole family, switched by ResNetConfig: post-activation (v1) or pre-activation
(v2) blocks, stride on the 1x1 or on the 3x3 conv, a 7x7 or a deep 3x3 stem, a strided or an
average-pool projection shortcut, BatchNorm or GroupNorm, per-block widths (pruned nets), and
dilated stages at stride 1 (the output-stride-8 backbones of segmentation nets).

Own module rather than torchvision's: torchvision's Bottleneck fixes the stride on the 3x3 conv and
has no conv biases, while gluon's ResNet v1 (and Detectron's MSRA models) stride the 1x1 conv and
gluon v1 gives its 1x1 body convs a bias; torchvision has no pre-activation, deep-stem,
average-pool-shortcut, GroupNorm or per-block-width variant either. Where a configuration is
torchvision's architecture (plain BN, 7x7 stem, stride on the 3x3, no biases), the state-dict keys
are torchvision's too."""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Mapping

import torch
from torch import nn


@dataclass(frozen=True)
class ResNetConfig:
    block: str  # "basic" | "bottleneck"
    layers: tuple[int, ...]  # blocks per stage
    channels: tuple[int, ...]  # stem width, then each stage's output width
    num_classes: int = 1000
    stride_in_1x1: bool = True  # v1/MSRA: stride on the first 1x1 conv; v1b/torchvision: on the 3x3
    bias_1x1: bool = False  # gluon v1 bottlenecks: 1x1 body convs carry a bias
    bn_eps: float = 1e-5  # epsilon of every normalisation layer (BN or GN)
    # v2 (pre-activation): BN-ReLU before each conv, identity added without a ReLU, the projection
    # shortcut a lone 1x1 conv on the pre-activated input, and a final BN-ReLU before the pool
    preact: bool = False
    input_bn: bool = False  # a BatchNorm on the network input itself (gluon v2), before the stem conv
    # deep stem (v1c/v1d): widths of the 3x3 conv-norm-ReLU layers before the stem's last 3x3 conv
    # (the first one strided); () = one 7x7/2 conv
    deep_stem: tuple[int, ...] = ()
    # v1d: projection shortcut = AvgPool(stride, ceil_mode, count_include_pad=False), then a stride-1
    # 1x1 conv (instead of a strided 1x1 conv that drops 3 of every 4 positions)
    avg_down: bool = False
    norm: str = "bn"  # "bn" | "gn" (GroupNorm with ``gn_groups`` groups)
    gn_groups: int = 32
    # pruned nets: each block's inner widths, per stage ((conv1[, conv2]) out channels per block);
    # () = the standard widths (stage width // 4 for bottlenecks, the stage width for basic blocks)
    mids: tuple[tuple[tuple[int, ...], ...], ...] = ()
    # per stage: does its first block have a projection shortcut; () = where the shape changes
    projections: tuple[bool, ...] = ()
    # per stage: the stride of its first block; () = (1, 2, 2, ...) (a dilated stage keeps stride 1)
    strides: tuple[int, ...] = ()
    # dilated (output-stride 8/16) nets, per stage: the dilation of its 3x3 convs, and of the first
    # 3x3 conv of its first block, which gluoncv (like torchvision) keeps at a smaller rate; () = 1
    dilations: tuple[int, ...] = ()
    first_dilations: tuple[int, ...] = ()

    def block_mids(self, stage: int, index: int) -> tuple[int, ...]:
        if self.mids:
            return self.mids[stage][index]
        cout = self.channels[stage + 1]
        return (cout // 4, cout // 4) if self.block == "bottleneck" else (cout,)

    def stage_stride(self, stage: int) -> int:
        if self.strides:
            return self.strides[stage]
        return 2 if stage > 0 else 1

    def block_dilation(self, stage: int, index: int) -> tuple[int, int]:
        """Dilations of the block's first and second 3x3 convs (a bottleneck has only the first)."""
        if not self.dilations:
            return (1, 1)
        d = self.dilations[stage]
        return (self.first_dilations[stage] if index == 0 else d, d)

    def has_projection(self, stage: int) -> bool:
        if self.projections:
            return self.projections[stage]
        return stage > 0 or self.channels[0] != self.channels[1]


def _norm(c: int, cfg: ResNetConfig) -> nn.Module:
    if cfg.norm == "gn":
        return nn.GroupNorm(cfg.gn_groups, c, eps=cfg.bn_eps)
    if cfg.norm != "bn":
        raise ValueError(f"unknown norm {cfg.norm!r} (use 'bn' or 'gn')")
    return nn.BatchNorm2d(c, eps=cfg.bn_eps)


def _projection(cin: int, cout: int, stride: int, cfg: ResNetConfig) -> nn.Module:
    if cfg.preact:  # v2: a lone 1x1 conv; the block's own pre-activation precedes it
        return nn.Conv2d(cin, cout, 1, stride, 0, bias=False)
    if cfg.avg_down:  # stride-1 stages get a 1x1 average pool (an identity), as gluon builds them
        pool = nn.AvgPool2d(stride, stride, ceil_mode=True, count_include_pad=False)
        return nn.Sequential(pool, nn.Conv2d(cin, cout, 1, 1, 0, bias=False), _norm(cout, cfg))
    return nn.Sequential(nn.Conv2d(cin, cout, 1, stride, 0, bias=False), _norm(cout, cfg))


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, cfg: ResNetConfig, mids: tuple[int, ...],
                 projection: bool, dilation: tuple[int, int] = (1, 1)):
        super().__init__()
        (mid,) = mids
        d1, d2 = dilation
        self.conv1 = nn.Conv2d(cin, mid, 3, stride, d1, dilation=d1, bias=False)
        self.bn1 = _norm(mid, cfg)
        self.conv2 = nn.Conv2d(mid, cout, 3, 1, d2, dilation=d2, bias=False)
        self.bn2 = _norm(cout, cfg)
        self.relu = nn.ReLU()
        self.downsample = _projection(cin, cout, stride, cfg) if projection else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return self.relu(y + (self.downsample(x) if self.downsample is not None else x))


class Bottleneck(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, cfg: ResNetConfig, mids: tuple[int, ...],
                 projection: bool, dilation: tuple[int, int] = (1, 1)):
        super().__init__()
        m1, m2 = mids
        s1, s3 = (stride, 1) if cfg.stride_in_1x1 else (1, stride)
        self.conv1 = nn.Conv2d(cin, m1, 1, s1, 0, bias=cfg.bias_1x1)
        self.bn1 = _norm(m1, cfg)
        self.conv2 = nn.Conv2d(m1, m2, 3, s3, dilation[0], dilation=dilation[0], bias=False)
        self.bn2 = _norm(m2, cfg)
        self.conv3 = nn.Conv2d(m2, cout, 1, 1, 0, bias=cfg.bias_1x1)
        self.bn3 = _norm(cout, cfg)
        self.relu = nn.ReLU()
        self.downsample = _projection(cin, cout, stride, cfg) if projection else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return self.relu(y + (self.downsample(x) if self.downsample is not None else x))


class PreActBasicBlock(nn.Module):
    """v2: BN-ReLU, conv3x3 (strided), BN-ReLU, conv3x3; the shortcut sees the pre-activated input
    when it is projected, the raw input otherwise; no ReLU after the sum."""

    def __init__(self, cin: int, cout: int, stride: int, cfg: ResNetConfig, mids: tuple[int, ...],
                 projection: bool, dilation: tuple[int, int] = (1, 1)):
        super().__init__()
        (mid,) = mids
        d1, d2 = dilation
        self.bn1 = _norm(cin, cfg)
        self.conv1 = nn.Conv2d(cin, mid, 3, stride, d1, dilation=d1, bias=False)
        self.bn2 = _norm(mid, cfg)
        self.conv2 = nn.Conv2d(mid, cout, 3, 1, d2, dilation=d2, bias=False)
        self.relu = nn.ReLU()
        self.downsample = _projection(cin, cout, stride, cfg) if projection else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.relu(self.bn1(x))
        shortcut = self.downsample(a) if self.downsample is not None else x
        y = self.conv2(self.relu(self.bn2(self.conv1(a))))
        return y + shortcut


class PreActBottleneck(nn.Module):
    """v2 bottleneck: BN-ReLU before each of the 1x1, 3x3 and 1x1 convs; shortcut as above."""

    def __init__(self, cin: int, cout: int, stride: int, cfg: ResNetConfig, mids: tuple[int, ...],
                 projection: bool, dilation: tuple[int, int] = (1, 1)):
        super().__init__()
        m1, m2 = mids
        s1, s3 = (stride, 1) if cfg.stride_in_1x1 else (1, stride)
        self.bn1 = _norm(cin, cfg)
        self.conv1 = nn.Conv2d(cin, m1, 1, s1, 0, bias=cfg.bias_1x1)
        self.bn2 = _norm(m1, cfg)
        self.conv2 = nn.Conv2d(m1, m2, 3, s3, dilation[0], dilation=dilation[0], bias=False)
        self.bn3 = _norm(m2, cfg)
        self.conv3 = nn.Conv2d(m2, cout, 1, 1, 0, bias=cfg.bias_1x1)
        self.relu = nn.ReLU()
        self.downsample = _projection(cin, cout, stride, cfg) if projection else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.relu(self.bn1(x))
        shortcut = self.downsample(a) if self.downsample is not None else x
        y = self.relu(self.bn2(self.conv1(a)))
        y = self.relu(self.bn3(self.conv2(y)))
        return self.conv3(y) + shortcut


BLOCKS = {(False, "basic"): BasicBlock, (False, "bottleneck"): Bottleneck,
          (True, "basic"): PreActBasicBlock, (True, "bottleneck"): PreActBottleneck}


def _stem_conv(cfg: ResNetConfig) -> nn.Module:
    if not cfg.deep_stem:
        return nn.Conv2d(3, cfg.channels[0], 7, 2, 3, bias=False)
    layers, cin = [], 3
    for i, w in enumerate(cfg.deep_stem):
        layers += [nn.Conv2d(cin, w, 3, 2 if i == 0 else 1, 1, bias=False), _norm(w, cfg), nn.ReLU()]
        cin = w
    return nn.Sequential(*layers, nn.Conv2d(cin, cfg.channels[0], 3, 1, 1, bias=False))


class ResNet(nn.Module):
    """Stem ([input BN,] 7x7/2 conv or deep 3x3 stem, norm, ReLU, 3x3/2 max-pool), four stages,
    [final BN-ReLU (v2),] global average pool, fc."""

    def __init__(self, cfg: ResNetConfig):
        super().__init__()
        self.cfg = cfg
        block = BLOCKS[(cfg.preact, cfg.block)]
        if cfg.input_bn:
            self.data_bn = nn.BatchNorm2d(3, eps=cfg.bn_eps)
        self.conv1 = _stem_conv(cfg)
        self.bn1 = _norm(cfg.channels[0], cfg)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        cin = cfg.channels[0]
        for i, (n, cout) in enumerate(zip(cfg.layers, cfg.channels[1:])):
            stride = cfg.stage_stride(i)
            blocks = [block(cin if j == 0 else cout, cout, stride if j == 0 else 1, cfg, cfg.block_mids(i, j),
                            j == 0 and cfg.has_projection(i), cfg.block_dilation(i, j))
                      for j in range(n)]
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))
            cin = cout
        if cfg.preact:
            self.final_bn = _norm(cin, cfg)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, cfg.num_classes)

    @property
    def stages(self) -> list[nn.Sequential]:
        return [getattr(self, f"layer{i + 1}") for i in range(len(self.cfg.layers))]

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        if self.cfg.input_bn:
            x = self.data_bn(x)
        return self.maxpool(self.relu(self.bn1(self.conv1(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
        if self.cfg.preact:
            x = self.relu(self.final_bn(x))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def config_from_shapes(cfg: ResNetConfig, shapes: Mapping[str, tuple[int, ...]]) -> ResNetConfig:
    """``cfg`` with every width read from a state dict's shapes ({our key: shape}): the stem, each
    stage's output, each block's inner widths, the projections present and the class count. For
    pruned nets, whose widths are a per-checkpoint choice."""
    n_mid = 2 if cfg.block == "bottleneck" else 1
    stem = tuple(shapes[f"conv1.{3 * i}.weight"][0] for i in range(len(cfg.deep_stem)))
    channels = [shapes["bn1.weight"][0]]
    mids = []
    for i, n in enumerate(cfg.layers):
        mids.append(tuple(tuple(shapes[f"layer{i + 1}.{j}.conv{p + 1}.weight"][0] for p in range(n_mid))
                          for j in range(n)))
        channels.append(shapes[f"layer{i + 1}.0.conv{n_mid + 1}.weight"][0])
    projections = tuple(any(k.startswith(f"layer{i + 1}.0.downsample.") for k in shapes)
                        for i in range(len(cfg.layers)))
    return replace(cfg, channels=tuple(channels), deep_stem=stem, mids=tuple(mids), projections=projections,
                   num_classes=shapes["fc.weight"][0])
