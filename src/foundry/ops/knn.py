"""k-nearest-neighbour search and gathering in plain PyTorch, chunked to bound memory, with an
exact k-d tree (`ops.host_tree`: pykdtree or SciPy's cKDTree) standing in on CPU for large clouds."""
from __future__ import annotations

import contextlib

import torch

from . import host_tree
from .accel import accelerated_cpu_allowed
from .frame import comparable_frame

KDTREE_MIN_POINTS = 256  # from here on the tree wins on CPU: 64 centres x 32 neighbours among 1,024
# points 0.48 ms with pykdtree, 0.72 ms with cKDTree, 1.18 ms with the NumPy selection (AMD EPYC, 1 thread,
# 2026-12-06; 256 points: 0.33 / 0.44 / 0.85 ms). The shipped teacher and s16 give bit-identical
# features on all 908 ModelNet10 test clouds either way (the neighbour sets differ only between
# duplicate points), filter on and off; smaller clouds keep the NumPy selection


_counting = 0


@contextlib.contextmanager
def brute_force_knn():
    """Inside this block the default kNN is the brute force on CPU too (FPS keeps its accelerator):
    MAC counts (`bench.flops`) book the kNN's distance product, whichever path a real call takes."""
    global _counting
    _counting += 1
    try:
        yield
    finally:
        _counting -= 1


def squared_distances(queries: torch.Tensor, points: torch.Tensor, points_sq: torch.Tensor | None = None) -> torch.Tensor:
    """(B, M, N) squared distances of float (B, M, 3) queries to (B, N, 3) points by the expansion
    |q|^2 - 2 q.p + |p|^2 (one matmul); points_sq: (B, 1, N) |p|^2 when the caller reuses it."""
    if points_sq is None:
        points_sq = points.pow(2).sum(-1).unsqueeze(1)
    return queries.pow(2).sum(-1, keepdim=True) - 2.0 * queries @ points.transpose(1, 2) + points_sq


def gather_points(values: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Batched gather along the point axis.

    values: (B, N, C); index: (B, ...) int64 into N. Returns (B, ..., C).
    """
    batch = values.shape[0]
    flat = index.reshape(batch, -1)
    out = torch.gather(values, 1, flat.unsqueeze(-1).expand(-1, -1, values.shape[-1]))
    return out.reshape(*index.shape, values.shape[-1])


def knn(
    queries: torch.Tensor,
    points: torch.Tensor,
    k: int,
    *,
    chunk_size: int | None = None,
    max_chunk_elements: int = 1 << 26,
    backend: str = "torch",
) -> torch.Tensor:
    """Indices of the k nearest `points` to each query, nearest first.

    queries: (B, M, 3), points: (B, N, 3). Returns (B, M, k) int64.
    The (M, N) distance matrix is built `chunk_size` queries at a time so memory stays
    bounded on large clouds (by default about `max_chunk_elements` floats per chunk).
    backend: "torch" (the brute force; on CPU with N >= KDTREE_MIN_POINTS and no tracing a k-d
    tree answers instead: the same neighbour sets, up to the order of equally distant points and
    float32 rounding of near-ties; below that on CPU NumPy selects the k smallest of the same
    distances instead of torch's top-k), "plain" (always the brute force with top-k) or "kdtree".
    """
    if queries.dim() != 3 or points.dim() != 3 or queries.shape[0] != points.shape[0]:
        raise ValueError(
            f"knn expects (B, M, 3) queries and (B, N, 3) points, got {tuple(queries.shape)} and {tuple(points.shape)}"
        )
    batch, m, _ = queries.shape
    n = points.shape[1]
    if not 0 < k <= n:
        raise ValueError(f"cannot take k={k} neighbours from clouds of {n} points")
    if backend not in ("torch", "plain", "kdtree"):
        raise ValueError(f"unknown kNN backend {backend!r}; choose 'torch', 'plain' or 'kdtree'")
    if backend == "kdtree" or (backend == "torch" and n >= KDTREE_MIN_POINTS and chunk_size is None and not _counting
                               and accelerated_cpu_allowed(queries, points)):
        return _knn_kdtree(queries, points, k)
    if chunk_size is None:
        chunk_size = max(1, max_chunk_elements // max(1, batch * n))
    select = _smallest_k_numpy if backend == "torch" and accelerated_cpu_allowed(queries, points) else _smallest_k
    queries, points = comparable_frame(queries, points)
    q = queries.detach().float()
    p = points.detach().float()
    p_sq = p.pow(2).sum(-1).unsqueeze(1)  # (B, 1, N)
    out = []
    for start in range(0, m, chunk_size):
        out.append(select(squared_distances(q[:, start : start + chunk_size], p, p_sq), k))
    return torch.cat(out, dim=1)


def _smallest_k(dist: torch.Tensor, k: int) -> torch.Tensor:
    return dist.topk(k, dim=-1, largest=False, sorted=True).indices


def _smallest_k_numpy(dist: torch.Tensor, k: int) -> torch.Tensor:
    """The same as `_smallest_k` on CPU, 4-5x faster for a 1024-point cloud (torch's CPU top-k
    costs ~10 us a row there, NumPy's introselect ~2): the k smallest of each row, then sorted by
    distance, equal distances by index. The same neighbour sets as top-k (the distances are the
    same float32 values), up to which of equally distant points is taken at the k-th place."""
    import numpy as np

    d = dist.numpy()
    part = np.argpartition(d, k - 1, axis=-1)[..., :k] if k < d.shape[-1] else np.broadcast_to(
        np.arange(d.shape[-1]), d.shape).copy()
    part.sort(axis=-1)  # by index first, so that the stable sort below breaks ties by index
    order = np.argsort(np.take_along_axis(d, part, -1), axis=-1, kind="stable")
    return torch.from_numpy(np.take_along_axis(part, order, -1))


def _knn_kdtree(queries: torch.Tensor, points: torch.Tensor, k: int) -> torch.Tensor:
    """One exact k-d tree per cloud (`ops.host_tree`: pykdtree or cKDTree, float64 distances), with
    torch's thread count; memory O(N + M k) instead of a chunk of the (M, N) distance matrix."""
    import numpy as np

    q = queries.detach().float().cpu().double().numpy()
    p = points.detach().float().cpu().double().numpy()
    out = np.empty((q.shape[0], q.shape[1], k), dtype=np.int64)
    for b in range(q.shape[0]):
        out[b] = host_tree.query(p[b], q[b], k)[1]
    return torch.from_numpy(out).to(points.device)
