"""The baseline compression stages of a student: the c patch tokens into s SuperTokens without
learning (DSO, the learned one, is in dso.py). All give a hard assignment, so the student's body
is the same whichever is used."""
from __future__ import annotations

import torch

from ..ops import gather_points
from .assignment import Compressor, one_hot_argmax, pool_members
from .merging import bipartite_merge_assignment


class _Baseline(Compressor):
    """A compressor with no weights, set by its SuperToken count s alone."""

    def __init__(self, num_supertokens: int):
        super().__init__()
        self.s = num_supertokens

    @classmethod
    def from_config(cls, c):
        return cls._ordered(cls(c.num_supertokens), c)

    @staticmethod
    def _ordered(compressor, c):
        compressor.fps_ordered_centers = c.patch_order == "fps"
        return compressor


class FPSCompressor(_Baseline):
    """Baseline: s patch centres by FPS; every token joins the nearest one (in xyz)."""

    def forward(self, tokens, centers, weight=None):
        idx = self.seed_indices(centers, self.s)
        picked = gather_points(centers, idx)
        assignment = one_hot_argmax(-torch.cdist(centers.float(), picked.float())).to(tokens.dtype)
        st, sc, counts = pool_members(assignment, tokens, centers)
        return st, assignment, sc, counts


class KMeansCompressor(_Baseline):
    """Baseline: K-Means of the tokens (feature space, Lloyd iterations, no gradient through the
    assignment), seeded with the tokens at s FPS-spread patch centres (deterministic)."""

    def __init__(self, num_supertokens: int, iters: int = 5):
        super().__init__(num_supertokens)
        self.iters = iters

    @classmethod
    def from_config(cls, c) -> "KMeansCompressor":
        return cls._ordered(cls(c.num_supertokens, c.kmeans_iters), c)

    def forward(self, tokens, centers, weight=None):
        idx = self.seed_indices(centers, self.s)
        x = tokens.detach().float()
        means = gather_points(x, idx)
        for _ in range(self.iters + 1):
            assignment = one_hot_argmax(-torch.cdist(x, means))
            new, _, counts = pool_members(assignment, x, centers, None)
            means = torch.where((counts > 0).unsqueeze(-1), new, means)  # an emptied cluster keeps its mean
        st, sc, counts = pool_members(assignment.to(tokens.dtype), tokens, centers)
        return st, assignment.to(tokens.dtype), sc, counts


class ToMeCompressor(_Baseline):
    """Baseline: bipartite merging of the c tokens (cosine similarity) down to s."""

    def forward(self, tokens, centers, weight=None):
        assignment = bipartite_merge_assignment(tokens, self.s).to(tokens.dtype)
        st, sc, counts = pool_members(assignment, tokens, centers)
        return st, assignment, sc, counts
