"""PP-OCRv4 text recogniser (mobile): PP-LCNetV3 backbone, SVTR neck, CTC head (softmax).

Read off the exported program (ch_PP-OCRv4_rec_infer):
- the neck (EncoderWithSVTR): 1x3 conv to in/8 channels, 1x1 conv to 120, each bias-free with
  BatchNorm (eps 1e-5) and swish; two pre-norm transformer blocks (LayerNorm eps 1e-5, 8 heads of
  15, biased qkv and proj, MLP 120 -> 240 -> 120 with swish); a final LayerNorm with eps 1e-6;
  1x1 conv back to the input width; concat with the neck's input (the "guide"); 1x3 conv to in/8
  and 1x1 conv to 120, again with BatchNorm and swish;
- attention scales q by head_dim ** -0.5 *before* q @ k^T (a ``scale`` op), so it is written out
  rather than calling scaled_dot_product_attention, which scales differently;
- the program folds the sequence back with a hard-coded height of 1: the backbone must reduce the
  48-pixel input height to exactly 1, hence H = 48; any width works (T = the pooled width);
- dropouts are 'upscale_in_train', i.e. identities at inference, and are left out."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .lcnet import LCNET_REC_095, LCNetConfig, LCNetV3

INPUT_HEIGHT = 48


class ConvBNSwish(nn.Module):
    def __init__(self, cin: int, cout: int, kernel: tuple[int, int], bn_eps: float = 1e-5):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, padding=(kernel[0] // 2, kernel[1] // 2), bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=bn_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.silu(self.bn(self.conv(x)))


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads, self.head_dim = heads, dim // heads
        self.scale = self.head_dim ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, t, c = x.shape
        q, k, v = self.qkv(x).reshape(n, t, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        attn = torch.softmax((q * self.scale) @ k.transpose(-2, -1), dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(n, t, c))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.silu(self.fc1(x)))


class SVTRBlock(nn.Module):
    """Pre-norm transformer block: x + attn(norm1(x)), then x + mlp(norm2(x))."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, eps: float = 1e-5):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class SVTRNeck(nn.Module):
    """EncoderWithSVTR with the guide shortcut; (N, C, 1, W) -> (N, dim, 1, W)."""

    def __init__(self, in_channels: int, dim: int = 120, depth: int = 2, heads: int = 8,
                 mlp_ratio: float = 2.0, kernel: tuple[int, int] = (1, 3)):
        super().__init__()
        self.conv_in = ConvBNSwish(in_channels, in_channels // 8, kernel)
        self.proj_in = ConvBNSwish(in_channels // 8, dim, (1, 1))
        self.blocks = nn.ModuleList(SVTRBlock(dim, heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.proj_out = ConvBNSwish(dim, in_channels, (1, 1))
        self.fuse = ConvBNSwish(2 * in_channels, in_channels // 8, kernel)
        self.conv_out = ConvBNSwish(in_channels // 8, dim, (1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.proj_in(self.conv_in(x))
        n, c, h, w = z.shape
        z = z.flatten(2).transpose(1, 2)  # (N, H*W, C)
        for block in self.blocks:
            z = block(z)
        z = self.norm(z).reshape(n, h, w, c).permute(0, 3, 1, 2)
        z = self.proj_out(z)
        return self.conv_out(self.fuse(torch.cat([x, z], dim=1)))


class CTCHead(nn.Module):
    def __init__(self, dim: int = 120, num_classes: int = 6625):
        super().__init__()
        self.fc = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.fc(x), dim=-1)


class PPOCRv4Rec(nn.Module):
    """forward(x: (N, 3, 48, W), normalised (x/255 - 0.5) / 0.5) -> (N, T, 6625) CTC softmax
    probabilities (class 0 is the CTC blank), T = the backbone's pooled width."""

    def __init__(self, backbone: LCNetConfig = LCNET_REC_095, dim: int = 120, num_classes: int = 6625):
        super().__init__()
        self.backbone = LCNetV3(backbone)
        self.neck = SVTRNeck(self.backbone.out_channels[-1], dim)
        self.head = CTCHead(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2] != INPUT_HEIGHT:
            raise ValueError(f"PP-OCRv4 rec needs input height {INPUT_HEIGHT}, got {x.shape[-2]}")
        f = self.neck(self.backbone(x))  # (N, dim, 1, T)
        return self.head(f.squeeze(2).transpose(1, 2))
