"""Input checks that turn bad data into errors a user can act on."""
from __future__ import annotations

import torch


class FoundryInputError(ValueError):
    """Raised when points, data files or checkpoints are not what Foundry expects."""


def check_points(points, *, min_points: int = 1, name: str = "points") -> torch.Tensor:
    """Validate a batch of clouds and return it as a float tensor of shape (B, N, 3).

    Accepts a (B, N, 3) tensor or a single (N, 3) cloud (a batch of one is added).
    """
    if not isinstance(points, torch.Tensor):
        raise FoundryInputError(f"{name} must be a torch.Tensor of shape (B, N, 3), got {type(points).__name__}")
    if points.dim() == 2:
        points = points.unsqueeze(0)
    if points.dim() != 3:
        raise FoundryInputError(
            f"{name} must have shape (B, N, 3) (batch, points, xyz), got rank {points.dim()} shape {tuple(points.shape)}"
        )
    if points.shape[-1] != 3:
        hint = " (drop normals/colours: pass points[..., :3])" if points.shape[-1] > 3 else ""
        raise FoundryInputError(f"{name} must have xyz in the last dimension (size 3), got {points.shape[-1]}{hint}")
    if not torch.is_floating_point(points):
        raise FoundryInputError(f"{name} must be a float tensor, got dtype {points.dtype}; use points.float()")
    if points.shape[0] == 0 or points.shape[1] == 0:
        raise FoundryInputError(f"{name} is empty: shape {tuple(points.shape)}")
    if points.shape[1] < min_points:
        raise FoundryInputError(
            f"{name} has {points.shape[1]} points per cloud, but this model needs at least {min_points} "
            "(one patch's worth); upsample the cloud or use a model with a smaller group_size"
        )
    finite = torch.isfinite(points)
    if not bool(finite.all()):
        bad = (~finite).any(-1).any(-1).nonzero().flatten().tolist()
        raise FoundryInputError(f"{name} contains NaN or Inf coordinates in cloud(s) {bad[:10]}; clean or drop them")
    return points
