"""Point-MAE: mask most patches, encode the visible ones, reconstruct the masked patches' points.

The encoder is the backbone itself (its patch_embed/reduce/pos_embed/encoder/norm) run on the
visible patches only. A light decoder gets the encoded visible tokens plus one shared mask token
per masked patch, each with a position embedding of its centre, and a linear head predicts the
`group_size` points of every masked patch (relative to its centre). Loss: Chamfer-L2.
"""
from __future__ import annotations

import torch
from torch import nn

from ...models.layers import TransformerEncoder
from ...models.tokenizer import MlpPositionEmbed
from ...ops import chamfer_distance
from ._util import gather_groups, init_weights


class MAEObjective(nn.Module):
    def __init__(self, encoder: nn.Module, mask_ratio: float = 0.6, decoder_depth: int = 4,
                 decoder_width: int | None = None, decoder_heads: int | None = None, decoder_drop_path: float = 0.1):
        super().__init__()
        c = encoder.config
        if not 0.0 < mask_ratio < 1.0:
            raise ValueError(f"mask_ratio must be in (0, 1), got {mask_ratio}")
        self.encoder = encoder
        self.mask_ratio = float(mask_ratio)
        dw = decoder_width or c.width
        self.decoder_embed = nn.Linear(c.width, dw) if dw != c.width else nn.Identity()
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dw))
        self.decoder_pos = MlpPositionEmbed(dw, c.pos_hidden)
        self.decoder = TransformerEncoder(dw, decoder_depth, decoder_heads or c.heads, c.mlp_ratio, c.qkv_bias,
                                          decoder_drop_path, True, c.norm_eps)
        self.decoder_norm = nn.LayerNorm(dw, eps=c.norm_eps)
        self.head = nn.Linear(dw, 3 * c.group_size)
        for m in (self.decoder_embed, self.decoder_pos, self.decoder, self.decoder_norm, self.head):
            m.apply(init_weights)
        nn.init.trunc_normal_(self.mask_token, std=0.02)

    def num_masked(self, groups: int) -> int:
        return min(groups - 1, max(1, int(round(self.mask_ratio * groups))))

    def forward(self, points: torch.Tensor, generator: torch.Generator | None = None):
        nbhd, centers = self.encoder.group(points)
        b, g, k, _ = nbhd.shape
        n_mask = self.num_masked(g)
        noise = torch.rand(b, g, generator=generator).to(points.device)
        order = noise.argsort(dim=1)
        masked, visible = order[:, :n_mask], order[:, n_mask:]

        vis_centers = gather_groups(centers, visible)
        tokens = self.encoder.embed(gather_groups(nbhd, visible))
        x, _, _ = self.encoder.encode(tokens, vis_centers)

        mask_centers = gather_groups(centers, masked)
        y = torch.cat([self.decoder_embed(x), self.mask_token.expand(b, n_mask, -1).to(x.dtype)], dim=1)
        pos = torch.cat([self.decoder_pos(vis_centers), self.decoder_pos(mask_centers)], dim=1)
        y = self.decoder_norm(self.decoder(y, pos)[:, -n_mask:])
        pred = self.head(y).reshape(b * n_mask, k, 3)
        target = gather_groups(nbhd, masked).reshape(b * n_mask, k, 3)
        loss = chamfer_distance(pred.float(), target.float())
        return loss, {"loss": loss.detach()}

    def after_step(self, step: int, total_steps: int) -> dict:
        return {}
