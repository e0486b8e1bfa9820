"""Dynamic SuperToken Optimisation (DSO), the student's learned compression stage: G patch tokens
-> s SuperTokens by a hard assignment, trained through straight-through Gumbel-Softmax.

Its config fields are `num_supertokens`, `dso_passes`, `dso_key_dim`, `dso_seeding`,
`dso_spatial_init` (StudentConfig); the training loop sets `tau` and may add `usage_imbalance`
to the loss.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..ops import gather_points
from .assignment import Compressor, one_hot_argmax, pool_members


class DSO(Compressor):
    """Dynamic SuperToken Optimisation: s SuperToken queries attend to the patch tokens; each token
    goes to exactly one SuperToken (argmax of q.k/sqrt(d)); a SuperToken becomes the mean of its
    members. Training: straight-through Gumbel-Softmax at temperature `tau` (set by the training
    loop); eval: plain argmax. `passes` > 1 repeats assign-and-update with the new SuperTokens as
    queries.

    seeding="learned" (the paper): the queries are s free learned vectors, the same for every cloud.
    Many of them can end up empty (no token joins them), which wastes the budget.
    seeding="fps" (ours): query j is its learned vector plus the content of the token at the j-th of s
    FPS-spread patch centres, and the logits get a spatial prior -w |c_i - seed_j|^2 (distances in
    units of the cloud's mean squared distance to the nearest seed; w = softplus of a learned scalar,
    starting at `spatial_init`). At initialisation this is close to "join the nearest seed", so every
    SuperToken starts in use; training decides how far content moves tokens away from it. An empty
    SuperToken keeps its query (learned vector, or learned vector + seed content)."""

    def __init__(self, dim: int, num_supertokens: int, key_dim: int = 64, passes: int = 1, eps: float = 1e-6,
                 seeding: str = "learned", spatial_init: float = 4.0):
        super().__init__()
        self.supertokens = nn.Parameter(torch.randn(num_supertokens, dim))
        self.norm_q = nn.LayerNorm(dim, eps=eps)
        self.norm_k = nn.LayerNorm(dim, eps=eps)
        self.q = nn.Linear(dim, key_dim)
        self.k = nn.Linear(dim, key_dim)
        self.passes = passes
        self.seeding = seeding
        if seeding == "fps":
            # inverse softplus, so that softplus(spatial_logit) == spatial_init
            self.spatial_logit = nn.Parameter(torch.tensor(math.log(math.expm1(spatial_init))))
        self.tau = 1.0  # runtime setting, not a weight
        self.usage = None  # (B, s) mean soft assignment of the last forward (see `usage_imbalance`)

    @classmethod
    def from_config(cls, c) -> "DSO":
        dso = cls(c.token_dim, c.num_supertokens, c.dso_key_dim, c.dso_passes, c.norm_eps, c.dso_seeding,
                  c.dso_spatial_init)
        dso.fps_ordered_centers = c.patch_order == "fps"
        return dso

    def reset_queries(self) -> None:
        """A fresh random start of the learned query vectors: seeded queries add the vector to a
        token's content, so it starts small there and the content leads."""
        nn.init.normal_(self.supertokens, std=0.02 if self.seeding == "fps" else 1.0)

    def logits(self, queries: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        q = self.q(self.norm_q(queries))
        k = self.k(self.norm_k(tokens))
        return k @ q.transpose(1, 2) / math.sqrt(q.shape[-1])  # (B, G, s)

    def assign(self, logits: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return one_hot_argmax(logits)
        u = torch.rand_like(logits).clamp(1e-9, 1 - 1e-9)
        soft = torch.softmax((logits - torch.log(-torch.log(u))) / max(self.tau, 1e-4), dim=-1)
        hard = one_hot_argmax(soft)
        return hard - soft.detach() + soft  # forward: one-hot; backward: Gumbel-Softmax

    def initial_queries(self, tokens, centers):
        """(queries (B, s, d), fallback for empty SuperTokens, spatial prior (B, G, s) or None)."""
        b, s = tokens.shape[0], self.supertokens.shape[0]
        if self.seeding == "learned":
            return self.supertokens.unsqueeze(0).expand(b, -1, -1), self.supertokens, None
        idx = self.seed_indices(centers, s)
        seed_tokens, seed_centers = gather_points(tokens, idx), gather_points(centers, idx)
        d2 = torch.cdist(centers.float(), seed_centers.float()).square()  # (B, G, s)
        scale = d2.min(-1).values.mean(-1, keepdim=True).clamp_min(1e-9).unsqueeze(-1)  # (B, 1, 1)
        prior = -F.softplus(self.spatial_logit.float()) * d2 / scale
        queries = seed_tokens + self.supertokens.unsqueeze(0).to(tokens.dtype)
        return queries, queries, prior

    def forward(self, tokens, centers, weight=None):
        queries, fallback, prior = self.initial_queries(tokens, centers)
        for _ in range(self.passes):
            logits = self.logits(queries, tokens)
            if prior is not None:
                logits = logits + prior.to(logits.dtype)
            assignment = self.assign(logits)
            queries, super_centers, counts = pool_members(assignment, tokens, centers, fallback, weight)
        # how the tokens spread over the SuperTokens, as the training temperature sees it (for the
        # optional balance term: learned queries otherwise tend to leave most SuperTokens empty)
        self.usage = torch.softmax(logits.float() / max(self.tau, 1e-4), dim=-1).mean(1) if self.training else None
        return queries, assignment, super_centers, counts


def usage_imbalance(usage: torch.Tensor) -> torch.Tensor:
    """KL(usage || uniform) per cloud, averaged: 0 when every SuperToken takes the same share of
    tokens, log(s) when one takes them all. usage: (B, s) rows summing to 1."""
    s = usage.shape[-1]
    return (usage * torch.log(usage.clamp_min(1e-9) * s)).sum(-1).mean()
