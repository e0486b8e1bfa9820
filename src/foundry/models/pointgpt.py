"""PointGPT-S encoders (kind "pointgpt"), the target of converted official PointGPT files.

They do not fit the pre-LN `PointTransformer`: blocks whose attention residual starts from the
*normed* input, fixed interleaved sine/cosine positions, a start-of-sequence token, a causal
mask and a nearest-neighbour chain patch order.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from .backbone import PatchTransformer
from .config import PatchTransformerFields, default_outlier_filter
from .layers import Attention, Mlp
from .tokenizer import PointNetPatchEmbed


@dataclass
class PointGPTConfig(PatchTransformerFields):
    """A PointGPT-S style encoder (see `PointGPTTransformer`); stored inside its checkpoints."""

    name: str = "pointgpt"  # keeps its place, first
    norm_eps: float = 1e-5
    tokenizer_hidden: tuple = (128, 256, 512)
    # PointGPT builds its sine code as PositionEmbeddingCoordsSine(3, dim, 1.0): the third positional
    # argument is the temperature, so every frequency is 1 (x * 2pi for all pairs). Kept for exactness.
    pos_temperature: float = 1.0
    cls_token: bool = False  # fine-tuned files: [sos, cls, patches...] and a second norm (cls_norm)
    pooling: str = "mean+max"
    fps_start: str = "first"
    fps_backend: str = "torch"
    outlier_filter: bool = field(default_factory=default_outlier_filter)  # as the backbone's (models.config)
    extra: dict = field(default_factory=dict)


class GPTSinePositionEmbed(nn.Module):
    """PointGPT's fixed position code: per axis F = dim//3//2*2 features, pairs
    (sin, cos) of x * 2pi / temperature^(2j/F) for j < F/2, axes concatenated, zero-padded to dim."""

    def __init__(self, dim: int, temperature: float = 10000.0):
        super().__init__()
        self.dim = dim
        self.per_axis = dim // 3 // 2 * 2
        self.temperature = temperature

    def forward(self, xyz: torch.Tensor) -> torch.Tensor:
        j = torch.arange(self.per_axis // 2, device=xyz.device, dtype=torch.float32)
        freq = self.temperature ** (2 * j / self.per_axis)
        angle = xyz.float().unsqueeze(-1) * (2 * math.pi) / freq  # (..., 3, F/2)
        emb = torch.stack([angle.sin(), angle.cos()], dim=-1).flatten(-3)  # (..., 3 * F)
        pad = self.dim - emb.shape[-1]
        if pad:
            emb = nn.functional.pad(emb, (0, pad))
        return emb.to(xyz.dtype)


class GPTBlock(nn.Module):
    """PointGPT's block: the residual of the attention starts from the *normed* input
    (x = ln_1(x); x = x + attn(x)), then x = x + mlp(ln_2(x))."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, eps: float):
        super().__init__()
        self.ln_1 = nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, heads, qkv_bias=True)
        self.ln_2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x, attn_mask=None):
        x = self.ln_1(x)
        x = x + self.attn(x, attn_mask)
        return x + self.mlp(self.ln_2(x))


class PointGPTTransformer(PatchTransformer):
    """A PointGPT-S encoder with the Foundry model API (forward_tokens / forward_features /
    forward_layers). Sequence: [sos, (cls,) patch tokens in nearest-chain order], positions
    [sos_pos, pos(centres)] (fine-tuned: [cls_pos, sos_pos, pos(centres)], as PointGPT's own
    fine-tuning forward arranges them), causal attention, final norm `norm` (PointGPT's ln_f),
    then `cls_norm` for fine-tuned files. Unlike PointGPT's pretraining forward, the sequence is
    not shifted by one: the output at patch i has seen patches 0..i (as in its fine-tuning)."""

    kind = "pointgpt"
    patch_order = "chain"  # PointGPT's nearest-neighbour chain, whatever the config

    def __init__(self, config: PointGPTConfig):
        super().__init__()
        self.config = c = config
        self.patch_embed = PointNetPatchEmbed(c.width, c.tokenizer_hidden)
        self.reduce = nn.Identity()
        self.pos_embed = GPTSinePositionEmbed(c.width, c.pos_temperature)
        self.sos = nn.Parameter(torch.zeros(c.width))
        self.sos_pos = nn.Parameter(torch.zeros(1, 1, c.width))
        nn.init.normal_(self.sos)
        if c.cls_token:
            self.cls_token = nn.Parameter(torch.zeros(1, 1, c.width))
            self.cls_pos = nn.Parameter(torch.zeros(1, 1, c.width))
            nn.init.trunc_normal_(self.cls_token, std=0.02)
            nn.init.trunc_normal_(self.cls_pos, std=0.02)
        self.encoder = nn.Module()
        self.encoder.blocks = nn.ModuleList(GPTBlock(c.width, c.heads, c.mlp_ratio, c.norm_eps) for _ in range(c.depth))
        self.norm = nn.LayerNorm(c.width, eps=c.norm_eps)
        self.cls_norm = nn.LayerNorm(c.width, eps=c.norm_eps) if c.cls_token else nn.Identity()

    def embed(self, neighborhoods):
        return self.patch_embed(neighborhoods)

    def encode(self, tokens, centers, layers: list[int] | None = None):
        b, g, w = tokens.shape
        pos = self.pos_embed(centers)
        sos = self.sos.reshape(1, 1, w).expand(b, -1, -1)
        if self.config.cls_token:
            x = torch.cat([sos, self.cls_token.expand(b, -1, -1), tokens], 1)
            pos = torch.cat([self.cls_pos.expand(b, -1, -1), self.sos_pos.expand(b, -1, -1), pos], 1)
            skip = 2
        else:
            x = torch.cat([sos, tokens], 1)
            pos = torch.cat([self.sos_pos.expand(b, -1, -1), pos], 1)
            skip = 1
        n = x.shape[1]
        mask = torch.ones(n, n, dtype=torch.bool, device=x.device).tril()
        inter = []
        for i, blk in enumerate(self.encoder.blocks):
            x = blk(x + pos, mask)
            if layers is not None and i in layers:
                inter.append(self.cls_norm(self.norm(x)))
        x = self.cls_norm(self.norm(x))
        cls = x[:, 1] if self.config.cls_token else None
        return x[:, skip:], cls, [t[:, skip:] for t in inter]
