"""Task heads on a model's outputs: a classifier on the global feature and a part-segmentation
head on the patch tokens (evaluation protocols and the expert trainers both build them)."""
from __future__ import annotations

import torch
from torch import nn


def mlp_head(in_dim: int, num_classes: int, hidden: int = 256, dropout: float = 0.5) -> nn.Module:
    """Classifier on a (B, D) feature: Linear - BN - ReLU - Dropout - Linear (a plain Linear when hidden <= 0)."""
    if hidden <= 0:
        return nn.Linear(in_dim, num_classes)
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True),
                         nn.Dropout(dropout), nn.Linear(hidden, num_classes))


def interpolate(points: torch.Tensor, centers: torch.Tensor, feats: torch.Tensor, k: int = 3) -> torch.Tensor:
    """Inverse-distance weighted features at `points` (B, N, 3) from `feats` (B, G, C) at `centers`."""
    k = min(k, centers.shape[1])
    dist = torch.cdist(points, centers)  # (B, N, G)
    d, idx = dist.topk(k, dim=-1, largest=False)
    w = 1.0 / (d + 1e-8)
    w = w / w.sum(-1, keepdim=True)
    b, g, c = feats.shape
    # index the flattened (B*G, C) features: gathering from an expanded (B, N, G, C) view would make
    # the backward pass materialise a dense (B, N, G, C) gradient
    flat = idx + torch.arange(b, device=idx.device).view(b, 1, 1) * g
    gathered = feats.reshape(b * g, c)[flat]  # (B, N, k, C)
    return (gathered * w.unsqueeze(-1)).sum(2)


class PartSegHead(nn.Module):
    """Per-point part logits from patch tokens: tokens projected, interpolated to the points, with
    the cloud's max-pooled token, a point embedding and the object category's one-hot."""

    def __init__(self, in_width: int, num_categories: int, num_parts: int, proj_dim: int = 256, point_dim: int = 64,
                 hidden: int = 256, dropout: float = 0.3, knn: int = 3):
        super().__init__()
        self.hparams = dict(in_width=in_width, num_categories=num_categories, num_parts=num_parts,
                            proj_dim=proj_dim, point_dim=point_dim, hidden=hidden, dropout=dropout, knn=knn)
        self.knn = knn
        self.num_categories = num_categories
        self.proj = nn.Sequential(nn.LayerNorm(in_width), nn.Linear(in_width, proj_dim), nn.GELU())
        self.point_embed = nn.Sequential(nn.Linear(3, point_dim), nn.ReLU(inplace=True), nn.Linear(point_dim, point_dim))
        d = 2 * proj_dim + point_dim + num_categories
        self.mlp = nn.Sequential(nn.Linear(d, hidden), nn.LayerNorm(hidden), nn.ReLU(inplace=True), nn.Dropout(dropout),
                                 nn.Linear(hidden, hidden // 2), nn.ReLU(inplace=True), nn.Linear(hidden // 2, num_parts))

    def forward(self, tokens, centers, points, category):
        t = self.proj(tokens)  # (B, G, P)
        per_point = interpolate(points, centers, t, self.knn)
        glob = t.amax(1, keepdim=True).expand(-1, points.shape[1], -1)
        onehot = nn.functional.one_hot(category, self.num_categories).to(t.dtype)
        onehot = onehot.unsqueeze(1).expand(-1, points.shape[1], -1)
        x = torch.cat([per_point, glob, self.point_embed(points), onehot], dim=-1)
        return self.mlp(x)


def category_mask(category_parts: dict, num_categories: int, num_parts: int) -> torch.Tensor:
    mask = torch.zeros(num_categories, num_parts, dtype=torch.bool)
    for c, parts in category_parts.items():
        if int(c) < num_categories:
            mask[int(c), list(parts)] = True
    return mask
