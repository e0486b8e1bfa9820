"""FPS + kNN patch grouping: the first stage of every point-cloud transformer here."""
from __future__ import annotations

import contextlib

import torch

from .fps import farthest_point_sample
from .knn import gather_points, knn
from .outliers import suppress_outliers

_provided: list[tuple[torch.Tensor, torch.Tensor]] = []


@contextlib.contextmanager
def provided_patches(neighborhoods: torch.Tensor, centers: torch.Tensor):
    """Inside this block `group_patches` returns these patches instead of grouping its points.

    For an ONNX graph whose grouping runs on the host (`foundry.export`, grouping="host"): the model
    is traced from its patches, everything after the grouping stays in the graph."""
    _provided.append((neighborhoods, centers))
    try:
        yield
    finally:
        _provided.pop()


def group_patches(
    points: torch.Tensor,
    num_groups: int,
    group_size: int,
    *,
    fps_start: str = "first",
    fps_backend: str = "torch",
    generator: torch.Generator | None = None,
    outlier_filter: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Split clouds into `num_groups` patches of `group_size` points.

    Returns (neighborhoods, centers): (B, G, K, 3) points made relative to their centre, and
    (B, G, 3) centres picked by FPS. outlier_filter: stray points are first moved onto the
    surface (`outliers.suppress_outliers`), so that none becomes a centre.
    """
    if _provided:
        neighborhoods, centers = _provided[-1]
        if tuple(neighborhoods.shape[1:3]) != (num_groups, group_size):
            raise ValueError(f"provided patches are {tuple(neighborhoods.shape[1:3])} (G, K); the model asks for "
                             f"{(num_groups, group_size)}")
        return neighborhoods, centers
    if outlier_filter:
        points = suppress_outliers(points)
    center_idx = farthest_point_sample(points, num_groups, start=fps_start, backend=fps_backend, generator=generator)
    centers = gather_points(points, center_idx)
    neighbor_idx = knn(centers, points, group_size)
    neighborhoods = gather_points(points, neighbor_idx) - centers.unsqueeze(2)
    return neighborhoods, centers
