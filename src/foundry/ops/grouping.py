"""FPS + kNN patch grouping: the first stage of every point-cloud transformer here."""
from __future__ import annotations

import torch

from .fps import farthest_point_sample
from .knn import gather_points, knn


def group_patches(
    points: torch.Tensor,
    num_groups: int,
    group_size: int,
    *,
    fps_start: str = "first",
    fps_backend: str = "torch",
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Split clouds into `num_groups` patches of `group_size` points.

    Returns (neighborhoods, centers): (B, G, K, 3) points made relative to their centre, and
    (B, G, 3) centres picked by FPS.
    """
    center_idx = farthest_point_sample(points, num_groups, start=fps_start, backend=fps_backend, generator=generator)
    centers = gather_points(points, center_idx)
    neighbor_idx = knn(centers, points, group_size)
    neighborhoods = gather_points(points, neighbor_idx) - centers.unsqueeze(2)
    return neighborhoods, centers
