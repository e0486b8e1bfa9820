"""Bipartite token merging (the idea of ToMe, Bolya et al., ICLR 2023, reimplemented; none of its
code is used), shared by the ToMe compressor of the student and the ToMe teacher."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def bipartite_targets(metric: torch.Tensor, r: int, chunk_elements: int = 1 << 24) -> torch.Tensor:
    """One ToMe-style bipartite matching step, reimplemented: split the n tokens alternately into
    A (even) and B (odd); each A token finds its most cosine-similar B token; the r most similar A
    tokens merge into their partners. metric (B, n, d) -> (B, n) index of each old token's merged
    token in 0..n-r-1 (kept A tokens first, then B). The (A, B) similarity is built a slice of A
    rows at a time (about `chunk_elements` floats), so memory stays O(n) on long sequences."""
    b, n, _ = metric.shape
    a, bb = metric[:, ::2], metric[:, 1::2]
    na, nb = a.shape[1], bb.shape[1]
    r = max(0, min(r, na))
    a_n, b_n = F.normalize(a.float(), dim=-1), F.normalize(bb.float(), dim=-1).transpose(1, 2)
    step = max(1, chunk_elements // max(1, b * nb))
    parts = [(a_n[:, i:i + step] @ b_n).max(-1) for i in range(0, na, step)]
    best, partner = torch.cat([p.values for p in parts], 1), torch.cat([p.indices for p in parts], 1)  # (B, na)
    rank = best.argsort(-1, descending=True).argsort(-1)  # rank of each A token by similarity
    merged = rank < r
    tgt_a = torch.where(merged, (na - r) + partner, (rank - r).clamp_min(0))
    tgt_b = (na - r) + torch.arange(nb, device=metric.device).expand(b, -1)
    tgt = torch.empty(b, n, dtype=torch.long, device=metric.device)
    tgt[:, ::2], tgt[:, 1::2] = tgt_a, tgt_b
    return tgt


def bipartite_step(metric: torch.Tensor, r: int) -> torch.Tensor:
    """`bipartite_targets` as a one-hot map (B, n, n - r) from the old tokens to the merged ones."""
    tgt = bipartite_targets(metric, r)
    n_new = metric.shape[1] - max(0, min(r, (metric.shape[1] + 1) // 2))
    return F.one_hot(tgt, n_new).to(metric.dtype)


DENSE_MERGE_MAX_TOKENS = 256  # up to here the merge maps are dense matrices (the measured baselines);
# beyond, integer owner indices and scatter sums keep time and memory O(n) per step


def scatter_mean(values: torch.Tensor, owner: torch.Tensor, size: int, weight: torch.Tensor | None = None):
    """(B, n, d) values averaged into `size` groups by owner (B, n) indices (weighted by (B, n, 1)
    `weight` when given); empty groups give 0."""
    b, _, d = values.shape
    w = values.new_ones(b, values.shape[1], 1) if weight is None else weight
    idx = owner.unsqueeze(-1)
    total = values.new_zeros(b, size, d).scatter_add_(1, idx.expand(-1, -1, d), values * w)
    count = values.new_zeros(b, size, 1).scatter_add_(1, idx, w)
    return total / count.clamp_min(1e-12)


def bipartite_merge_assignment(x: torch.Tensor, target: int) -> torch.Tensor:
    """Repeated bipartite steps until `target` tokens remain; similarity between the size-weighted
    means of the merged tokens. x (B, G, d) -> hard assignment (B, G, target)."""
    b, g, _ = x.shape
    x = x.detach().float()
    if g > DENSE_MERGE_MAX_TOKENS:
        owner = torch.arange(g, device=x.device).expand(b, -1)  # each original token's merged token
        cur = x
        while cur.shape[1] > target:
            owner = torch.gather(bipartite_targets(cur, cur.shape[1] - target), 1, owner)
            cur = scatter_mean(x, owner, int(owner.max()) + 1)
        return F.one_hot(owner, cur.shape[1]).to(x.dtype)
    m = torch.eye(g, dtype=x.dtype, device=x.device).unsqueeze(0).expand(b, -1, -1)
    cur = x
    while cur.shape[1] > target:
        m = m @ bipartite_step(cur, cur.shape[1] - target)
        cur = torch.einsum("bgs,bgd->bsd", m, x) / m.sum(1).clamp_min(1).unsqueeze(-1)
    return m
