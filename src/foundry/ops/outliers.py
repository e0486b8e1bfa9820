"""Statistical outlier removal: flag points far from their neighbours before FPS picks patch centres.

FPS favours the points farthest from what it picked so far, so a few stray points (a depth
camera's flying pixels) become patch centres and their patches hold nothing of the object. The
classic remedy (the statistical outlier filter of PCL, Rusu et al. 2008) scores each point by its
mean distance to its `k` nearest neighbours and drops the points whose score is far above the
cloud's typical score. PCL's threshold is mean + ratio * std; here it is median + ratio * robust
std (1.4826 * median absolute deviation), because the outliers themselves inflate the mean and
std: on ModelNet10 test clouds with 3% stray points (ModelNet-C add_global, severity 3) the robust
threshold (k=8, ratio 4) catches 98% of the strays farther than 0.1 from the surface and drops
0.9% of a clean cloud, the mean + 2 std threshold 89% and 3.3%.

Two backends give the same mask: "torch" (batched, any device, via `ops.knn`) and "kdtree"
(one exact k-d tree query per cloud on the host, `ops.host_tree`: pykdtree or SciPy's cKDTree;
faster on CPU at every size). "auto" takes "kdtree" for CPU tensors (when nothing is traced).

`suppress_outliers` is the form the models' tokenizers use (config `outlier_filter`): the cloud keeps
its shape and every flagged point is moved onto its nearest kept point, so FPS and kNN see the kept
surface only (a duplicate is never farther than its twin, and the max-pooling tokenizers do not
see duplicates); batched, deterministic and traceable. On CPU one tree query per cloud serves both
the scores and the moves: a flagged point's nearest kept point is the first kept one among its
k + 1 nearest (every nearer point is in that list and flagged); only a flagged point whose whole
list is flagged asks a second tree, of the kept points. `eval.robustness` applies the filter as a
switch of its own on the data (drop and refill), to measure the remedy with any model.
"""
from __future__ import annotations

import numpy as np
import torch

from . import host_tree
from .accel import accelerated_cpu_allowed
from .frame import comparable_frame
from .knn import gather_points, knn, squared_distances

DEFAULT_K = 8
DEFAULT_RATIO = 4.0
_BACKENDS = ("auto", "torch", "kdtree")


def neighbour_distance(points: torch.Tensor, k: int = DEFAULT_K, backend: str = "auto") -> torch.Tensor:
    """(B, N) mean distance of each point of `points` (B, N, 3) to its k nearest other points."""
    _check(points, k)
    if backend not in _BACKENDS:
        raise ValueError(f"backend must be one of {_BACKENDS}, got {backend!r}")
    if backend == "auto":
        backend = "kdtree" if accelerated_cpu_allowed(points) else "torch"
    if backend == "kdtree":
        rows = [_host_scores(cloud, k)[0] for cloud in points.detach().cpu().double().numpy()]
        return torch.as_tensor(np.stack(rows), dtype=points.dtype, device=points.device).reshape(points.shape[:2])
    return _mean_distance(points, knn(points, points, k + 1)[:, :, 1:])  # nearest first: drop the point itself


def _mean_distance(points: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """(B, N) mean distance of each point to the points `idx` (B, N, k) names."""
    return (gather_points(points, idx) - points.unsqueeze(2)).norm(dim=-1).mean(-1)


def outlier_mask(points: torch.Tensor, k: int = DEFAULT_K, ratio: float = DEFAULT_RATIO,
                 backend: str = "auto") -> torch.Tensor:
    """(B, N) bool, True for the points to keep: mean neighbour distance <= median + ratio *
    1.4826 * MAD of that cloud's distances."""
    return _keep(neighbour_distance(points, k, backend).double(), ratio)


def _keep(d: torch.Tensor, ratio: float) -> torch.Tensor:
    median = _lower_median(d)
    spread = 1.4826 * _lower_median((d - median).abs())
    return d <= median + ratio * spread


def _lower_median(x: torch.Tensor) -> torch.Tensor:
    """(B, 1) median of each row of (B, N), the lower one for even N (torch.median's), also where
    the graph is traced (ONNX has no median: the same value from a sort)."""
    if torch.jit.is_tracing() or torch.onnx.is_in_onnx_export():
        return x.sort(1).values[:, (x.shape[1] - 1) // 2].unsqueeze(1)
    return x.median(1, keepdim=True).values


def suppress_outliers(points: torch.Tensor, k: int = DEFAULT_K, ratio: float = DEFAULT_RATIO,
                      max_chunk_elements: int = 1 << 24) -> torch.Tensor:
    """`points` (B, N, 3) with every point that `outlier_mask` flags replaced by its nearest kept
    point of the same cloud; unflagged points unchanged. On CPU (no tracing) one k-d tree query per
    cloud (module docstring); elsewhere a chunked brute force over all points with flagged ones
    masked out."""
    _check(points, k)
    if accelerated_cpu_allowed(points):
        out = None
        for b, cloud in enumerate(points.detach().double().numpy()):
            moved, nearest = _host_moves(cloud, k, ratio, points.dtype)
            if len(moved):
                out = points.detach().clone() if out is None else out
                out[b, torch.from_numpy(moved)] = out[b, torch.from_numpy(nearest)]
        return points if out is None else out
    return _brute_force_suppress(points, k, ratio, max_chunk_elements)


def _brute_force_suppress(points: torch.Tensor, k: int, ratio: float, max_chunk_elements: int) -> torch.Tensor:
    """`suppress_outliers` in tensor ops (GPU, tracing, ONNX): squared distances by the expansion of
    `ops.knn`, a chunk of query rows at a time; the k + 1 smallest give the scores (the same values
    as `neighbour_distance`'s torch path), then flagged points are masked out and each point's
    nearest kept one taken from the same distances. Where the whole matrix fits one chunk (1024
    points) it is built once for both steps: half the work of the exported graph's filter."""
    (p,) = comparable_frame(points.detach().float())
    batch, n, _ = p.shape
    step = max(1, max_chunk_elements // max(1, batch * n))
    p_sq = p.pow(2).sum(-1).unsqueeze(1)  # (B, 1, N)
    starts = range(0, n, step)
    whole = squared_distances(p, p, p_sq) if step >= n else None

    def rows(start):  # (B, rows, N), the same values as ops.knn's
        return whole if whole is not None else squared_distances(p[:, start:start + step], p, p_sq)

    idx = torch.cat([rows(i).topk(k + 1, dim=-1, largest=False).indices for i in starts], dim=1)[:, :, 1:]
    keep = _keep(_mean_distance(points, idx).double(), ratio)
    far = torch.where(keep, 0.0, float("inf")).unsqueeze(1)  # (B, 1, N): flagged points are never nearest
    nearest = torch.cat([(rows(i) + far).argmin(-1) for i in starts], dim=1)
    return torch.where(keep.unsqueeze(-1), points, gather_points(points, nearest))


def _check(points: torch.Tensor, k: int) -> None:
    if points.dim() != 3 or points.shape[-1] != 3:
        raise ValueError(f"the outlier filter expects (B, N, 3) points, got shape {tuple(points.shape)}")
    n = points.shape[1]
    if not 0 < k < n:
        raise ValueError(f"cannot average k={k} neighbours in clouds of {n} points (need 0 < k < N)")


def _host_scores(cloud: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(mean distance to the k nearest other points (N,), the k + 1 nearest indices (N, k + 1),
    the point itself or a duplicate of it first) of one float64 cloud (N, 3)."""
    dist, idx = host_tree.query(cloud, cloud, k + 1)
    return dist[:, 1:].mean(1), idx


def _host_keep(scores: np.ndarray, ratio: float) -> np.ndarray:
    """`_keep`'s rule on one cloud's scores in NumPy (lower medians by partition): the same mask,
    ~0.1 ms a 1024-point cloud cheaper than torch's median on the batch-1 path."""
    middle = (len(scores) - 1) // 2
    median = np.partition(scores, middle)[middle]
    spread = 1.4826 * np.partition(np.abs(scores - median), middle)[middle]
    return scores <= median + ratio * spread


def _host_moves(cloud: np.ndarray, k: int, ratio: float, rounding: torch.dtype = torch.float64
                ) -> tuple[np.ndarray, np.ndarray]:
    """(flagged indices, the index of each one's nearest kept point) of one float64 cloud; the
    scores rounded to `rounding` first, as `outlier_mask` returns them for clouds of that dtype."""
    scores, idx = _host_scores(cloud, k)
    keep = _host_keep(torch.from_numpy(scores).to(rounding).double().numpy(), ratio)
    moved = np.flatnonzero(~keep)
    if not len(moved):
        return moved, moved
    listed = idx[moved]  # (F, k + 1), nearest first
    kept_listed = keep[listed]
    nearest = listed[np.arange(len(moved)), kept_listed.argmax(1)]
    lost = ~kept_listed.any(1)  # every listed neighbour flagged too: ask the kept points themselves
    if lost.any():
        kept = np.flatnonzero(keep)
        _, j = host_tree.query(cloud[kept], cloud[moved[lost]], 1)
        nearest[lost] = kept[j[:, 0]]
    return moved, nearest
