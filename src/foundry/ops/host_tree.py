"""Exact k-nearest neighbours of one cloud on the host CPU through a k-d tree.

Two well-kept trees answer with the same neighbours (exact search; equally distant points may
come in another order): `pykdtree` when it is installed (the `fast` extra), else SciPy's
`cKDTree` (installed with scikit-learn). pykdtree was measured faster on this project's sizes
(AMD EPYC, 2026-12-06, float64): 1,024 points querying their 9 nearest 1.4 ms against 2.0 ms for
cKDTree at one thread; 18,750 centres querying 32 neighbours among 300k points 0.15 s against
0.31 s at two threads.

pykdtree runs its queries on OpenMP threads of a runtime bundled in its wheel, which torch's
`set_num_threads` does not reach; `query` sets that runtime's thread count to torch's, so
`--threads` governs it as it governs torch.

Many queries are asked in the order of a coarse voxel grid (`spatial_order`) and the answers put
back in the caller's order: neighbouring queries then walk the same leaves while they are still in
cache. Each query is answered alone, so the answers are the same arrays as in the caller's order;
only the time changes (the outlier filter of 300k random points, pykdtree at 2 threads on the AMD
EPYC, medians: 0.93 s in the caller's order, 0.76 s voxel-ordered, the ordering included;
docs/results/2026-12-07-bench-scaling-ordered/).
"""
from __future__ import annotations

import ctypes
import functools
from pathlib import Path

import numpy as np

from .accel import cpu_workers

ORDER_QUERIES_FROM = 16384  # below this many queries they fit in cache in any order
ORDER_CELLS = 64  # voxels per axis of the ordering grid: a 64^3 grid, cells of a few hundred points at 300k
CKDTREE_THREADS_FROM = 16384  # cKDTree: one query thread below this many points, where starting
# threads costs more than they save (1024 points at 2 threads: 1.55 ms with two, 1.31 ms with one)


def query(points: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(distances (M, k) float64, indices (M, k) int64) of the k nearest `points` (N, 3) to each
    of `queries` (M, 3), nearest first; float64 arrays are searched in float64."""
    order = spatial_order(queries) if len(queries) >= ORDER_QUERIES_FROM else None
    if order is not None:
        queries = queries[order]
    tree = _pykdtree()
    if tree is not None:
        _set_pykdtree_threads(cpu_workers())
        dist, idx = tree(points).query(queries, k=k)
    else:
        from scipy.spatial import cKDTree

        workers = 1 if len(points) < CKDTREE_THREADS_FROM else cpu_workers()
        dist, idx = cKDTree(points).query(queries, k=k, workers=workers)
    dist, idx = np.asarray(dist, dtype=np.float64), np.asarray(idx, dtype=np.int64)
    dist, idx = dist.reshape(len(queries), k), idx.reshape(len(queries), k)
    if order is not None:
        dist[order], idx[order] = dist.copy(), idx.copy()
    return dist, idx


def spatial_order(points: np.ndarray, cells: int = ORDER_CELLS) -> np.ndarray:
    """(N,) permutation that lists `points` (N, 3) voxel by voxel of a cells^3 grid over their
    bounding box (row-major; stable, so the caller's order within a voxel)."""
    low = points.min(0)
    scale = (cells - 1e-6) / max(float(np.ptp(points, 0).max()), 1e-12)
    voxel = ((points - low) * scale).astype(np.int64)
    return np.argsort((voxel[:, 0] * cells + voxel[:, 1]) * cells + voxel[:, 2], kind="stable")


def backend_name() -> str:
    """Which tree `query` uses here: "pykdtree" or "scipy"."""
    return "pykdtree" if _pykdtree() is not None else "scipy"


@functools.lru_cache(maxsize=1)
def _pykdtree():
    try:
        from pykdtree.kdtree import KDTree
    except ImportError:
        return None
    return KDTree


@functools.lru_cache(maxsize=1)
def _pykdtree_openmp():
    """omp_set_num_threads of the OpenMP runtime pykdtree's wheel bundles (pykdtree.libs/), or
    None where it links a shared one (then the process-wide setting applies)."""
    import pykdtree

    libs = Path(pykdtree.__file__).resolve().parent.parent / "pykdtree.libs"
    for lib in sorted(libs.glob("libgomp*.so*")) if libs.is_dir() else []:
        try:
            return ctypes.CDLL(str(lib)).omp_set_num_threads  # already loaded: the same instance
        except (OSError, AttributeError):
            continue
    return None


def _set_pykdtree_threads(n: int) -> None:
    """Every call (about a microsecond): OpenMP keeps the setting per calling thread."""
    setter = _pykdtree_openmp()
    if setter is not None:
        setter(int(n))
