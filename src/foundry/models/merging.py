"""Bipartite token merging (the idea of ToMe, Bolya et al., ICLR 2023, reimplemented; none of its
code is used), shared by the ToMe compressor of the student and the ToMe teacher."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def bipartite_step(metric: torch.Tensor, r: int) -> torch.Tensor:
    """One ToMe-style bipartite matching step, reimplemented: split the n tokens alternately into
    A (even) and B (odd); each A token finds its most cosine-similar B token; the r most similar A
    tokens merge into their partners. metric (B, n, d) -> one-hot map (B, n, n - r) from the old
    tokens to the merged ones (kept A tokens first, then B)."""
    b, n, _ = metric.shape
    a, bb = metric[:, ::2], metric[:, 1::2]
    na, nb = a.shape[1], bb.shape[1]
    r = max(0, min(r, na))
    sim = F.normalize(a.float(), dim=-1) @ F.normalize(bb.float(), dim=-1).transpose(1, 2)
    best, partner = sim.max(-1)  # (B, na)
    rank = best.argsort(-1, descending=True).argsort(-1)  # rank of each A token by similarity
    merged = rank < r
    tgt_a = torch.where(merged, (na - r) + partner, (rank - r).clamp_min(0))
    tgt_b = (na - r) + torch.arange(nb, device=metric.device).expand(b, -1)
    tgt = torch.empty(b, n, dtype=torch.long, device=metric.device)
    tgt[:, ::2], tgt[:, 1::2] = tgt_a, tgt_b
    return F.one_hot(tgt, na - r + nb).to(metric.dtype)


def bipartite_merge_assignment(x: torch.Tensor, target: int) -> torch.Tensor:
    """Repeated bipartite steps until `target` tokens remain; similarity between the size-weighted
    means of the merged tokens. x (B, G, d) -> hard assignment (B, G, target)."""
    b, g, _ = x.shape
    x = x.detach().float()
    m = torch.eye(g, dtype=x.dtype, device=x.device).unsqueeze(0).expand(b, -1, -1)
    cur = x
    while cur.shape[1] > target:
        m = m @ bipartite_step(cur, cur.shape[1] - target)
        cur = torch.einsum("bgs,bgd->bsd", m, x) / m.sum(1).clamp_min(1).unsqueeze(-1)
    return m
