"""The point-cloud transformer backbone: FPS+kNN patches -> mini-PointNet tokens -> pre-LN
transformer. `PatchTransformer` is the public API of every transformer over patch tokens (this
backbone and PointGPT); `PointTransformer` covers Point-MAE, Point-BERT and Point-JEPA encoders."""
from __future__ import annotations

import torch
from torch import nn

from .base import FoundryModel
from .config import BackboneConfig
from .layers import TransformerEncoder
from .patches import make_patches
from .tokenizer import MlpPositionEmbed, PointNetPatchEmbed, SinCosPositionEmbed


def pool_tokens(tokens: torch.Tensor, pooling: str, cls: torch.Tensor | None = None) -> torch.Tensor:
    """Global feature from (B, G, C) patch tokens (and an optional (B, C) cls token)."""
    if pooling == "mean+max":
        return torch.cat([tokens.mean(1), tokens.amax(1)], dim=-1)
    if pooling == "cls+max":
        return torch.cat([cls, tokens.amax(1)], dim=-1)
    if pooling == "max":
        return tokens.amax(1)
    if pooling == "mean":
        return tokens.mean(1)
    if pooling == "cls":
        return cls
    raise ValueError(f"unknown pooling {pooling!r}")


class PatchTransformer(FoundryModel):
    """The model API on top of four stages a subclass defines: `group` (validated points ->
    patches), `embed` (patches -> tokens), `encode` (tokens -> normed tokens, cls, chosen blocks).

    - `forward_tokens(points)` -> (tokens (B, G, C) after the final norm, centers (B, G, 3))
    - `forward_features(points)` -> (B, D) global feature (pooling from the config)
    - `forward_layers(points, layers)` -> list of normed (B, G, C) tokens of chosen blocks
    """

    patch_order: str | None = None  # a fixed order of the family's patches; None: the config's

    def group(self, points: torch.Tensor, num_groups: int | None = None, generator=None):
        """Validated FPS + kNN grouping -> (neighborhoods (B,G,K,3), centers (B,G,3))."""
        points, g = self.check_input(points, num_groups)
        return make_patches(points, self.config, g, generator, order=self.patch_order)

    def tokenize(self, points: torch.Tensor, num_groups: int | None = None):
        nbhd, centers = self.group(points, num_groups)
        return self.embed(nbhd), centers

    def forward_tokens(self, points: torch.Tensor, num_groups: int | None = None):
        tokens, centers = self.tokenize(points, num_groups)
        x, _, _ = self.encode(tokens, centers)
        return x, centers

    def forward_layers(self, points: torch.Tensor, layers: list[int], num_groups: int | None = None):
        """Normed tokens of the given block indices (negative counts from the end), and centres."""
        depth = self.config.depth
        wanted = sorted({l % depth for l in layers})
        tokens, centers = self.tokenize(points, num_groups)
        _, _, inter = self.encode(tokens, centers, wanted)
        by_layer = dict(zip(wanted, inter))
        return [by_layer[l % depth] for l in layers], centers

    def forward_features(self, points: torch.Tensor, num_groups: int | None = None) -> torch.Tensor:
        tokens, centers = self.tokenize(points, num_groups)
        x, cls, _ = self.encode(tokens, centers)
        return pool_tokens(x, self.config.pooling, cls)

    @property
    def token_dim(self) -> int:
        return self.config.width


class PointTransformer(PatchTransformer):
    """Point-MAE / Point-BERT / Point-JEPA shaped backbone (kind "backbone")."""

    kind = "backbone"

    def __init__(self, config: BackboneConfig):
        super().__init__()
        self.config = config
        c = config
        tok_width = c.tokenizer_width or c.width
        self.patch_embed = PointNetPatchEmbed(tok_width, c.tokenizer_hidden)
        self.reduce = nn.Linear(tok_width, c.width) if tok_width != c.width else nn.Identity()
        self.pos_embed = MlpPositionEmbed(c.width, c.pos_hidden) if c.pos_embed == "mlp" else SinCosPositionEmbed(c.width)
        if c.cls_token:
            self.cls_token = nn.Parameter(torch.zeros(1, 1, c.width))
            self.cls_pos = nn.Parameter(torch.zeros(1, 1, c.width))
            nn.init.trunc_normal_(self.cls_token, std=0.02)
            nn.init.trunc_normal_(self.cls_pos, std=0.02)
        self.encoder = TransformerEncoder(c.width, c.depth, c.heads, c.mlp_ratio, c.qkv_bias, c.drop_path,
                                          c.pos_every_block, c.norm_eps)
        self.norm = nn.LayerNorm(c.width, eps=c.norm_eps)
        self.apply(_init_weights)

    def embed(self, neighborhoods: torch.Tensor) -> torch.Tensor:
        """Patch tokens without positions: (B, G, K, 3) -> (B, G, C)."""
        return self.reduce(self.patch_embed(neighborhoods))

    def encode(self, tokens: torch.Tensor, centers: torch.Tensor, layers: list[int] | None = None):
        """Run the transformer on (B, G, C) tokens; returns (normed patch tokens, cls or None,
        [normed tokens of requested layers])."""
        pos = self.pos_embed(centers)
        cls = None
        if self.config.cls_token:
            b = tokens.shape[0]
            tokens = torch.cat([self.cls_token.expand(b, -1, -1), tokens], 1)
            pos = torch.cat([self.cls_pos.expand(b, -1, -1), pos], 1)
        mask = None
        if self.config.causal:
            n = tokens.shape[1]
            mask = torch.ones(n, n, dtype=torch.bool, device=tokens.device).tril()
        out = self.encoder(tokens, pos, mask, return_layers=layers)
        x, inter = out if layers is not None else (out, [])
        x = self.norm(x)
        inter = [self.norm(t) for t in inter]
        if self.config.cls_token:
            cls, x = x[:, 0], x[:, 1:]
            inter = [t[:, 1:] for t in inter]
        return x, cls, inter


def _init_weights(m: nn.Module) -> None:
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, (nn.LayerNorm, nn.BatchNorm1d)):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)
