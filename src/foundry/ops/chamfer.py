"""Chamfer distance between point sets, plain PyTorch."""
from __future__ import annotations

import torch


def chamfer_distance(a: torch.Tensor, b: torch.Tensor, *, norm: str = "l2", reduction: str = "mean") -> torch.Tensor:
    """Symmetric Chamfer distance between (B, N, 3) and (B, M, 3) sets.

    norm="l2": mean squared nearest-neighbour distance each way, summed (Point-MAE's CD-L2).
    norm="l1": mean (unsquared) Euclidean nearest-neighbour distance each way, averaged (CD-L1).
    reduction: "mean" over the batch, "none" for one value per set.
    """
    if a.dim() != 3 or b.dim() != 3 or a.shape[0] != b.shape[0] or a.shape[-1] != b.shape[-1]:
        raise ValueError(f"chamfer_distance expects (B, N, D) and (B, M, D), got {tuple(a.shape)} and {tuple(b.shape)}")
    d = torch.cdist(a.float(), b.float()).pow(2)  # (B, N, M)
    ab = d.min(dim=2).values  # (B, N)
    ba = d.min(dim=1).values  # (B, M)
    if norm == "l2":
        out = ab.mean(1) + ba.mean(1)
    elif norm == "l1":
        out = (ab.clamp_min(0).sqrt().mean(1) + ba.clamp_min(0).sqrt().mean(1)) / 2
    else:
        raise ValueError(f"norm must be 'l1' or 'l2', got {norm!r}")
    if reduction == "mean":
        return out.mean()
    if reduction == "none":
        return out
    raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")
