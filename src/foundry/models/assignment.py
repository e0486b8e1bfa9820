"""What every compression stage shares: G tokens go to s SuperTokens by a hard (B, G, s)
assignment, and a SuperToken is the mean of its members.

A compressor is a module `forward(tokens (B, G, d), centers (B, G, 3), weight=None)` ->
(supertokens (B, s, d), assignment (B, G, s), super_centers (B, s, 3), counts (B, s)), built by
`from_config(student_config)`; `usage` is its (B, s) soft SuperToken usage of the last training
forward, or None.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..ops import farthest_point_sample


class Compressor(nn.Module):
    usage = None
    # True when the patch centres reach the compressor in FPS pick order (the student's own grouping
    # with patch_order "fps", set from the config): see `seed_indices`
    fps_ordered_centers = False

    def seed_indices(self, centers: torch.Tensor, s: int) -> torch.Tensor:
        """(B, s) indices of s FPS-spread patch centres, FPS started at centre 0.

        Centres picked by FPS and kept in pick order are their own FPS: FPS over them from centre 0
        picks centres 0, 1, ..., s-1 (each one was the farthest point of the whole cloud from the
        ones before, so also of the centres; ties go to the lower index both ways). The seeds are
        then a slice: no FPS loop (s steps of tensor ops, 4s nodes in an ONNX graph). Checked on
        all 6,405 bundled clouds; tests/test_student.py checks ModelNet10's test split and random clouds."""
        if self.fps_ordered_centers:
            return torch.arange(s, device=centers.device).expand(centers.shape[0], s)
        return farthest_point_sample(centers, s)


def one_hot_argmax(logits: torch.Tensor) -> torch.Tensor:
    return F.one_hot(logits.argmax(-1), logits.shape[-1]).to(logits.dtype)


def pool_members(assignment: torch.Tensor, values: torch.Tensor, centers: torch.Tensor,
                 fallback: torch.Tensor | None = None, weight: torch.Tensor | None = None):
    """Hard-assignment pooling shared by every compressor.

    assignment (B, G, s) one-hot (maybe straight-through), values (B, G, d), centers (B, G, 3),
    weight (B, G) membership (the gate's merge decision). Returns (supertokens (B, s, d): mean of
    members, or `fallback` ((s, d) or (B, s, d)) where a SuperToken is empty; super_centers (B, s, 3): mean of
    member centres, or the cloud's centroid where empty; counts (B, s) hard member counts).
    """
    w = assignment if weight is None else assignment * weight.unsqueeze(-1)
    counts = w.detach().round().sum(1)  # (B, s) exact integers
    denom = counts.clamp_min(1).unsqueeze(-1)
    mean = torch.einsum("bgs,bgd->bsd", w, values) / denom
    filled = (counts > 0).unsqueeze(-1)
    if fallback is not None:
        fallback = fallback if fallback.dim() == 3 else fallback.unsqueeze(0)
        mean = torch.where(filled, mean, fallback.to(mean.dtype))
    c = torch.einsum("bgs,bgd->bsd", w.detach(), centers) / denom
    c = torch.where(filled, c, centers.mean(1, keepdim=True))
    return mean, c, counts
