"""A small Vision Transformer (ViT) built from a layer spec.

Patches of the image are embedded by a dense linear layer, a class token and learned position
embeddings are added, then `depth` pre-norm blocks (x + attn(norm(x)), x + mlp(norm(x))) and a
dense classification head on the class token. The spec builds the attention's qkv and output
projections and the MLP's two layers, the weights that dominate a ViT's size (as in the reference
paper's low-rank ViTs); the patch embedding and the head stay dense, as the NeRF/occupancy networks
keep their input and output layers dense.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from neuralfields.layers.spec import LayerSpec


class Attention(nn.Module):
    """Multi-head self-attention with spec-built qkv and output projections."""

    def __init__(self, dim: int, heads: int, spec: LayerSpec) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = spec.build(dim, 3 * dim)
        self.proj = spec.build(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, dim = x.shape
        q, k, v = self.qkv(x).reshape(batch, tokens, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(batch, tokens, dim))


class Block(nn.Module):
    """Pre-norm transformer block."""

    def __init__(self, dim: int, heads: int, hidden: int, spec: LayerSpec) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads, spec)
        self.norm2 = nn.LayerNorm(dim)
        self.fc1 = spec.build(dim, hidden)
        self.fc2 = spec.build(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.fc2(F.gelu(self.fc1(self.norm2(x))))


class ViT(nn.Module):
    """ViT for (B, C, H, W) or (B, H, W) images; returns (B, num_classes) logits."""

    def __init__(self, spec: LayerSpec | str = "dense", image_size: int = 28, patch_size: int = 7, channels: int = 1,
                 num_classes: int = 10, dim: int = 64, depth: int = 4, heads: int = 4, mlp_ratio: float = 2.0) -> None:
        super().__init__()
        spec = LayerSpec.parse(spec)
        if image_size % patch_size:
            raise ValueError(f"patch size {patch_size} does not divide the image size {image_size}")
        if dim % heads:
            raise ValueError(f"width {dim} is not divisible by {heads} attention heads")
        if depth < 1 or num_classes < 2:
            raise ValueError(f"a ViT needs depth >= 1 and >= 2 classes, got depth {depth}, {num_classes} classes")
        hidden = max(1, round(dim * mlp_ratio))
        spec.check_rank(min(dim, hidden))
        self.patch_size = patch_size
        self.channels = channels
        self.num_patches = (image_size // patch_size) ** 2
        self.patch_embed = nn.Linear(channels * patch_size * patch_size, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, self.num_patches + 1, dim))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        self.blocks = nn.ModuleList(Block(dim, heads, hidden, spec) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def patches(self, images: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, num_patches, C * p * p), patches in row-major order."""
        if images.dim() == 3:
            images = images.unsqueeze(1)
        if images.dim() != 4 or images.shape[1] != self.channels:
            raise ValueError(f"expected images of shape (B, {self.channels}, H, W), got {tuple(images.shape)}")
        p = self.patch_size
        return F.unfold(images, kernel_size=p, stride=p).transpose(1, 2)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(self.patches(images))
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x[:, 0]))
