"""The interface every model family implements (teachers, PointGPT, students, ToMe teachers).

A model has a `kind` (its name in checkpoints, see `kinds.py`) and a `config` with `to_dict()`,
and gives, for points (B, N, 3) and an optional number of patches G:

    forward_tokens(points, num_groups)          -> tokens (B, G, token_dim), centers (B, G, 3)
    forward_layers(points, layers, num_groups)  -> [tokens of each block], centers
    forward_features(points, num_groups)        -> (B, feature_dim) global feature
    min_points                                  -> the fewest points a cloud may have

`check_input` is the one input check: bad points or a bad patch count raise FoundryInputError.
"""
from __future__ import annotations

import torch
from torch import nn

from ..validation import FoundryInputError, check_points, model_input_spec


class FoundryModel(nn.Module):
    kind: str = ""

    # -- what each family implements -------------------------------------------------------------
    def forward_tokens(self, points: torch.Tensor, num_groups: int | None = None):
        raise NotImplementedError

    def forward_layers(self, points: torch.Tensor, layers: list[int], num_groups: int | None = None):
        raise NotImplementedError

    def forward_features(self, points: torch.Tensor, num_groups: int | None = None) -> torch.Tensor:
        raise NotImplementedError

    @property
    def token_dim(self) -> int:
        raise NotImplementedError

    @property
    def feature_dim(self) -> int:
        return self.config.feature_dim

    # -- shared ------------------------------------------------------------------------------------
    def forward(self, points: torch.Tensor) -> torch.Tensor:
        return self.forward_features(points)

    @property
    def patch_config(self):
        """The config that holds num_groups and group_size (a wrapper's is its inner model's)."""
        return self.config

    @property
    def min_points(self) -> int:
        c = self.patch_config
        return max(c.group_size, c.num_groups)

    def check_num_groups(self, num_groups: int | None = None) -> int:
        """The number of patches G of a forward call: `num_groups`, or the config's when None."""
        if num_groups is None:
            return self.patch_config.num_groups
        if isinstance(num_groups, bool) or not isinstance(num_groups, int) or num_groups < 1:
            raise FoundryInputError(f"num_groups must be a positive whole number of patches, got {num_groups!r}")
        return num_groups

    def check_input(self, points: torch.Tensor, num_groups: int | None = None):
        """(points as a float tensor on this model's device and dtype, G), or FoundryInputError."""
        g = self.check_num_groups(num_groups)
        points = check_points(points, min_points=max(self.patch_config.group_size, g), **model_input_spec(self))
        return points, g
