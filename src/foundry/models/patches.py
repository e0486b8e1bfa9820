"""Patches of a cloud: FPS centres, their kNN neighbourhoods, and the order the patches take."""
from __future__ import annotations

import torch

from ..ops import group_patches
from .config import default_outlier_filter


def morton_order(centers: torch.Tensor, bits: int = 10) -> torch.Tensor:
    """Indices that sort patch centres (B, G, 3) along a z-order (Morton) curve."""
    lo = centers.amin(1, keepdim=True)
    hi = centers.amax(1, keepdim=True)
    q = ((centers - lo) / (hi - lo).clamp_min(1e-9) * (2**bits - 1)).long()
    code = torch.zeros(centers.shape[:2], dtype=torch.long, device=centers.device)
    for bit in range(bits):
        for axis in range(3):
            code |= ((q[..., axis] >> bit) & 1) << (3 * bit + axis)
    return code.argsort(dim=1)


def nearest_chain_order(centers: torch.Tensor) -> torch.Tensor:
    """PointGPT's patch order: start at patch 0, then repeatedly step to the nearest patch centre
    not yet visited. (B, G, 3) -> (B, G) indices."""
    b, g, _ = centers.shape
    dist = torch.cdist(centers.float(), centers.float())
    visited = torch.zeros(b, g, dtype=torch.bool, device=centers.device)
    rows = torch.arange(b, device=centers.device)
    current = torch.zeros(b, dtype=torch.long, device=centers.device)
    order = [current]
    visited[rows, current] = True
    for _ in range(g - 1):
        d = dist[rows, current].masked_fill(visited, float("inf"))
        current = d.argmin(dim=1)
        visited[rows, current] = True
        order.append(current)
    return torch.stack(order, dim=1)


# config.patch_order -> indices that reorder the patches (None: FPS order, as sampled)
PATCH_ORDERS = {"fps": None, "morton": morton_order, "chain": nearest_chain_order}


def make_patches(points: torch.Tensor, config, num_groups: int, generator=None, order: str | None = None):
    """(neighborhoods (B, G, K, 3), centers (B, G, 3)) of already validated points, with the
    grouping fields of `config` (group_size, fps_start, fps_backend, patch_order unless `order`,
    outlier_filter: stray points moved onto the surface first, `ops.outliers.suppress_outliers`)."""
    nbhd, centers = group_patches(points, num_groups, config.group_size, fps_start=config.fps_start,
                                  fps_backend=config.fps_backend, generator=generator,
                                  outlier_filter=getattr(config, "outlier_filter", default_outlier_filter()))
    sort = PATCH_ORDERS[order or config.patch_order]
    if sort is not None:
        idx = sort(centers)
        centers = torch.gather(centers, 1, idx.unsqueeze(-1).expand(-1, -1, 3))
        nbhd = torch.gather(nbhd, 1, idx[..., None, None].expand_as(nbhd))
    return nbhd, centers
