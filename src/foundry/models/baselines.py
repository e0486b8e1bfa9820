"""Baselines that are not a student body: the teacher with training-free token merging.

`ToMeTeacher` (kind "tome-teacher") wraps a frozen backbone and, after each block, merges `r`
tokens by bipartite matching on the block's attention keys (cosine similarity), keeping size-
weighted means and proportional attention (log of the token size added to the attention logits).
This reimplements the idea of ToMe (Bolya et al., ICLR 2023); none of its code is used. The final
tokens are un-merged (every original patch takes its merged token's value), so `forward_tokens`
returns all G tokens at the teacher's patch centres, like the teacher and the students.

The other baselines (FPS, K-Means, bipartite compression into s SuperTokens) share the student body:
see `foundry.models.compressors`.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch

from ..validation import FoundryInputError
from .backbone import PointTransformer, pool_tokens
from .base import FoundryModel
from .config import BackboneConfig
from .merging import DENSE_MERGE_MAX_TOKENS, bipartite_step, bipartite_targets, scatter_mean


@dataclass
class ToMeConfig:
    teacher: dict = field(default_factory=dict)  # the wrapped backbone's config
    teacher_name: str = ""
    r: int = 8  # tokens merged after each block
    min_tokens: int = 1

    @property
    def num_points(self) -> int:
        return self.teacher.get("num_points", 1024)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ToMeConfig":
        return cls(**d)


class ToMeTeacher(FoundryModel):
    """A frozen teacher whose tokens merge after every block (see the module docstring)."""

    kind = "tome-teacher"

    def __init__(self, config: ToMeConfig, teacher: PointTransformer | None = None):
        super().__init__()
        self.config = config
        self.teacher = teacher if teacher is not None else PointTransformer(BackboneConfig.from_dict(config.teacher))
        tc = self.teacher.config
        if tc.cls_token or tc.causal:
            raise FoundryInputError("ToMe merging needs a teacher without cls token or causal mask (a Point-MAE / "
                                    "Point-JEPA pretraining encoder); this one has " +
                                    ("a cls token" if tc.cls_token else "a causal mask"))

    @classmethod
    def wrap(cls, teacher: PointTransformer, r: int, name: str = "", min_tokens: int = 1) -> "ToMeTeacher":
        return cls(ToMeConfig(teacher.config.to_dict(), name, r, min_tokens), teacher).eval()

    def forward_tokens(self, points: torch.Tensor, num_groups: int | None = None):
        t = self.teacher
        tokens, centers = t.tokenize(points, num_groups)
        b, g, _ = tokens.shape
        x, pos = tokens, t.pos_embed(centers)
        size = tokens.new_ones(b, g, 1)
        if g > DENSE_MERGE_MAX_TOKENS:
            return self._merge_by_index(x, pos, size, centers)
        member = torch.eye(g, dtype=tokens.dtype, device=tokens.device).unsqueeze(0).expand(b, -1, -1)
        for i, block in enumerate(t.encoder.blocks):
            if t.encoder.pos_every_block or i == 0:
                x = x + pos
            bias = size.log().transpose(1, 2).unsqueeze(1)  # (B, 1, 1, n): proportional attention
            x = block(x, bias)
            r = min(self.config.r, x.shape[1] - self.config.min_tokens)
            if r > 0:
                step = bipartite_step(self._merge_keys(block, x), r)  # (B, n, n')
                new_size = step.transpose(1, 2) @ size
                x = (step.transpose(1, 2) @ (x * size)) / new_size
                pos = (step.transpose(1, 2) @ (pos * size)) / new_size
                size = new_size
                member = member @ step
        return member @ t.norm(x), centers

    def _merge_keys(self, block, x):
        w, c = block.attn.qkv.weight, x.shape[-1]
        bias = None if block.attn.qkv.bias is None else block.attn.qkv.bias[c:2 * c]
        return torch.nn.functional.linear(block.norm1(x), w[c:2 * c], bias)

    def _merge_by_index(self, x, pos, size, centers):
        """The same merging with integer owner indices and scatter sums instead of dense (n, n')
        maps: O(n) memory per block for long token sequences (large clouds)."""
        t = self.teacher
        owner = torch.arange(x.shape[1], device=x.device).expand(x.shape[0], -1)
        for i, block in enumerate(t.encoder.blocks):
            if t.encoder.pos_every_block or i == 0:
                x = x + pos
            x = block(x, size.log().transpose(1, 2).unsqueeze(1))
            r = min(self.config.r, x.shape[1] - self.config.min_tokens)
            if r > 0:
                tgt = bipartite_targets(self._merge_keys(block, x), r)
                n_new = int(tgt.max()) + 1
                x, pos = scatter_mean(x, tgt, n_new, size), scatter_mean(pos, tgt, n_new, size)
                size = size.new_zeros(size.shape[0], n_new, 1).scatter_add_(1, tgt.unsqueeze(-1), size)
                owner = torch.gather(tgt, 1, owner)
        y = t.norm(x)
        return torch.gather(y, 1, owner.unsqueeze(-1).expand(-1, -1, y.shape[-1])), centers

    def forward_layers(self, points, layers, num_groups: int | None = None):
        if any(l not in (-1, self.teacher.config.depth - 1) for l in layers):
            raise FoundryInputError(f"a ToMe teacher gives its final block only (-1), got layers {list(layers)}")
        tokens, centers = self.forward_tokens(points, num_groups)
        return [tokens for _ in layers], centers

    def forward_features(self, points, num_groups: int | None = None):
        tokens, _ = self.forward_tokens(points, num_groups)
        return pool_tokens(tokens, self.teacher.config.pooling)

    @property
    def patch_config(self):
        return self.teacher.config

    @property
    def token_dim(self):
        return self.teacher.token_dim

    @property
    def feature_dim(self):
        return self.teacher.feature_dim
