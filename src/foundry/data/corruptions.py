"""Corrupted clouds for robustness tests: the seven ModelNet-C families, single-view partial scans
and density changes, seeded and shape preserving.

The seven families follow the description in ModelNet-C (Ren, Pan and Liu, "Benchmarking and
Analyzing Point Cloud Classification under Corruptions", NeurIPS 2022 Datasets & Benchmarks), at
five severities each, written here from that description:

    scale        per-axis factors ~ U(1/S, S), S = 1.6 .. 2.0, then back to the unit sphere
    jitter       Gaussian noise, sigma = 0.01 .. 0.05
    drop_global  a random share of the points removed: 25%, 37.5%, 50%, 62.5%, 75%
    drop_local   100 .. 500 points (per 1024) removed around 1-8 random centres (nearest neighbours)
    add_global   10 .. 50 points (per 1024) uniform in the unit ball: stray outliers
    add_local    100 .. 500 points (per 1024) in Gaussian blobs (sigma ~ U(0.075, 0.125)) around 1-8 surface points
    rotate       Euler angles about x, y, z each ~ U(-t, t), t = 6 .. 30 degrees

Departures, so that every corrupted cloud keeps its point count N (the models batch clouds of
one size): added points *replace* randomly chosen points instead of growing the cloud, and a cloud
that lost points is filled back to N with points interpolated between a kept point and one of its
nearest kept neighbours (`resample`), so holes stay holes. Counts given "per 1024" scale with N.

`partial_view` keeps what a depth camera at a random viewpoint would see (hidden-point removal,
Katz, Tal and Basri, SIGGRAPH 2007: spherical flip + convex hull), resampled to N.
`change_density` gives the same surface at another point count (a seeded subsample, or
interpolation upsampling above N: the bundled clouds hold 1024 points).

Every function returns (points, source): `source[i]` is the index of the input point output point
i comes from (its own position, the kept point it was interpolated from), -1 for an added point,
so per-point labels follow (`labels[source]`). Severity 0 is the identity. Randomness comes from
`np.random.default_rng([seed, family, severity, cloud index])`: the same clouds for every model.
"""
from __future__ import annotations

import numpy as np

from ..validation import FoundryInputError

FAMILIES = ("scale", "jitter", "drop_global", "drop_local", "add_global", "add_local", "rotate")
SEVERITIES = (1, 2, 3, 4, 5)
PARTIAL = "partial"
LEVELS = {
    "scale": (1.6, 1.7, 1.8, 1.9, 2.0),
    "jitter": (0.01, 0.02, 0.03, 0.04, 0.05),
    "drop_global": (0.25, 0.375, 0.5, 0.625, 0.75),
    "drop_local": (100, 200, 300, 400, 500),
    "add_global": (10, 20, 30, 40, 50),
    "add_local": (100, 200, 300, 400, 500),
    "rotate": (6.0, 12.0, 18.0, 24.0, 30.0),
}
MAX_CENTRES = 8  # drop_local / add_local: 1..8 local centres
BLOB_SIGMA = (0.075, 0.125)
CAMERA_DISTANCE = 3.0  # partial view: camera this far from the centre of a unit-sphere cloud
HPR_RADIUS_EXP = 1.5  # hidden-point removal: flip radius = 10**exp * the farthest distance (above ~2 qhull loses precision and lets hidden points through)
NEIGHBOURS = 8  # resample: interpolate towards one of this many nearest kept neighbours


def canonical_family(name: str) -> str:
    """'drop-global' / 'Drop_Global' -> 'drop_global'; FoundryInputError for an unknown name."""
    key = str(name).strip().lower().replace("-", "_")
    if key not in FAMILIES and key != PARTIAL:
        raise FoundryInputError(f"unknown corruption {name!r}; choose from {', '.join(FAMILIES + (PARTIAL,))}")
    return key


def _rng(seed: int, tag: str, severity: int, index: int) -> np.random.Generator:
    tag_id = int.from_bytes(tag.encode(), "little") % (2**63)
    return np.random.default_rng([int(seed) % (2**63), tag_id, int(severity), int(index)])


def _per_cloud(points, fn):
    """Apply fn(cloud (N,3) float64, index) -> (cloud, source) to one cloud or a batch, keeping dtype and shape."""
    arr = np.asarray(points)
    if arr.ndim not in (2, 3) or arr.shape[-1] != 3 or arr.shape[-2] == 0:
        raise FoundryInputError(f"points must be (N, 3) or (M, N, 3) with N > 0, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.floating):
        raise FoundryInputError(f"points must be floating point, got dtype {arr.dtype}")
    batch = arr if arr.ndim == 3 else arr[None]
    outs, sources = [], []
    for i, cloud in enumerate(batch):
        out, src = fn(cloud.astype(np.float64), i)
        outs.append(out.astype(arr.dtype))
        sources.append(np.asarray(src, dtype=np.int64))
    out, src = np.stack(outs), np.stack(sources)
    return (out, src) if arr.ndim == 3 else (out[0], src[0])


def corrupt(points, family: str, severity: int, seed: int = 0):
    """Corrupt one cloud (N, 3) or a batch (M, N, 3) with `family` at `severity` (0..5; 0 = as is).

    Returns (points of the same shape and dtype, source (..., N) int64). `family` "partial" has one
    level (any severity >= 1 gives the single-view scan)."""
    family = canonical_family(family)
    if int(severity) != severity or not 0 <= int(severity) <= len(SEVERITIES):
        raise FoundryInputError(f"severity must be a whole number 0..{len(SEVERITIES)}, got {severity!r}")
    severity = int(severity)
    if severity == 0:
        return _per_cloud(points, lambda c, i: (c, np.arange(len(c))))
    if family == PARTIAL:
        return partial_view(points, seed)
    level = LEVELS[family][severity - 1]
    fn = _FUNCTIONS[family]
    return _per_cloud(points, lambda c, i: fn(c, level, _rng(seed, family, severity, i)))


# ----------------------------------------------------------------------------- the seven families

def _scale(c, s, rng):
    out = c * rng.uniform(1.0 / s, s, size=3)
    out = out - out.mean(0)
    r = np.sqrt((out ** 2).sum(1)).max()
    return (out / r if r > 0 else out), np.arange(len(c))


def _jitter(c, sigma, rng):
    return c + rng.normal(0.0, sigma, size=c.shape), np.arange(len(c))


def _drop_global(c, share, rng):
    n = len(c)
    keep = np.sort(rng.permutation(n)[:max(1, n - int(round(share * n)))])
    return resample(c, keep, n, rng)


def _per_1024(count, n):
    return min(n - 1, int(round(count * n / 1024)))


def _split_count(total, rng):
    """`total` split over 1..MAX_CENTRES centres at random (each at least one when possible)."""
    k = int(rng.integers(1, MAX_CENTRES + 1))
    k = max(1, min(k, total))
    cuts = np.sort(rng.choice(np.arange(1, total), size=k - 1, replace=False)) if k > 1 else np.array([], int)
    return np.diff(np.concatenate([[0], cuts, [total]])).astype(int)


def _drop_local(c, count, rng):
    n = len(c)
    total = _per_1024(count, n)
    alive = np.ones(n, dtype=bool)
    for size in _split_count(total, rng):
        idx = np.nonzero(alive)[0]
        centre = c[rng.choice(idx)]
        d = ((c[idx] - centre) ** 2).sum(1)
        alive[idx[np.argsort(d, kind="stable")[:size]]] = False
    return resample(c, np.nonzero(alive)[0], n, rng)


def _replace(c, new, rng):
    """`new` points take the places of as many randomly chosen points (their source is -1)."""
    out, src = c.copy(), np.arange(len(c))
    where = rng.choice(len(c), size=len(new), replace=False)
    out[where], src[where] = new, -1
    return out, src


def _add_global(c, count, rng):
    k = _per_1024(count, len(c))
    direction = rng.normal(size=(k, 3))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True) + 1e-12
    radius = rng.random(k) ** (1.0 / 3.0)  # uniform in the ball's volume
    return _replace(c, direction * radius[:, None], rng)


def _add_local(c, count, rng):
    blobs = []
    for size in _split_count(_per_1024(count, len(c)), rng):
        centre = c[rng.integers(len(c))]
        blobs.append(centre + rng.normal(0.0, rng.uniform(*BLOB_SIGMA), size=(size, 3)))
    return _replace(c, np.concatenate(blobs), rng)


def rotation_matrix(angles_deg) -> np.ndarray:
    """R = Rz @ Ry @ Rx for Euler angles (x, y, z) in degrees."""
    ax, ay, az = np.deg2rad(np.asarray(angles_deg, dtype=np.float64))
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def _rotate(c, max_deg, rng):
    return c @ rotation_matrix(rng.uniform(-max_deg, max_deg, size=3)).T, np.arange(len(c))


_FUNCTIONS = {"scale": _scale, "jitter": _jitter, "drop_global": _drop_global, "drop_local": _drop_local,
              "add_global": _add_global, "add_local": _add_local, "rotate": _rotate}


# ----------------------------------------------------------------------------- resampling

def resample(cloud: np.ndarray, keep, n: int, rng: np.random.Generator):
    """(points (n, 3), source (n,)) from the kept points `cloud[keep]`: a seeded subsample of them
    when there are more than n, else all of them (in order) followed by n - len(keep) points each
    placed at a random fraction of the way from a random kept point to one of its NEIGHBOURS
    nearest kept points (source: that kept point)."""
    keep = np.asarray(keep, dtype=np.int64)
    if keep.size == 0:
        raise FoundryInputError("no points left to resample from")
    if keep.size >= n:
        pick = np.sort(rng.choice(keep.size, size=n, replace=False))
        return cloud[keep[pick]], keep[pick]
    kept = cloud[keep]
    extra = n - keep.size
    anchor = rng.integers(keep.size, size=extra)
    if keep.size == 1:
        return np.concatenate([kept, kept[anchor]]), np.concatenate([keep, keep[anchor]])
    from scipy.spatial import cKDTree

    k = min(NEIGHBOURS, keep.size - 1)
    _, nbr = cKDTree(kept).query(kept[anchor], k=k + 1)  # column 0 is the point itself
    partner = nbr[np.arange(extra), rng.integers(1, k + 1, size=extra)]
    t = rng.random((extra, 1))
    new = kept[anchor] + t * (kept[partner] - kept[anchor])
    return np.concatenate([kept, new]), np.concatenate([keep, keep[anchor]])


def change_density(points, num_points: int, seed: int = 0):
    """The same surfaces at `num_points` points per cloud: the first `num_points` (fewer; the input
    order is taken as random, as `eval.common.seeded_view` makes it) or every point plus interpolated
    ones (more; `resample`). Returns (points (..., num_points, 3), source)."""
    if int(num_points) < 1:
        raise FoundryInputError(f"num_points must be positive, got {num_points!r}")
    n_out = int(num_points)

    def one(c, i):
        if n_out <= len(c):
            return c[:n_out], np.arange(n_out)
        return resample(c, np.arange(len(c)), n_out, _rng(seed, "density", n_out, i))

    return _per_cloud(points, one)


# ----------------------------------------------------------------------------- partial view

def hidden_point_removal(cloud: np.ndarray, camera, radius_exp: float = HPR_RADIUS_EXP) -> np.ndarray:
    """Indices (sorted) of the points of `cloud` (N, 3) visible from `camera` (3,): Katz et al.'s
    spherical flip about the camera with radius 10**radius_exp times the farthest point's distance,
    then the points on the convex hull of the flipped cloud and the camera."""
    from scipy.spatial import ConvexHull, QhullError

    p = np.asarray(cloud, dtype=np.float64) - np.asarray(camera, dtype=np.float64)
    norm = np.linalg.norm(p, axis=1, keepdims=True)
    if (norm < 1e-12).any():
        raise FoundryInputError("the camera sits on a point of the cloud; place it outside the object")
    radius = norm.max() * 10.0 ** radius_exp
    flipped = p + 2.0 * (radius - norm) * p / norm
    try:
        hull = ConvexHull(np.vstack([flipped, np.zeros((1, 3))]))
    except QhullError as exc:  # flat or degenerate clouds
        raise FoundryInputError(f"hidden-point removal failed on a degenerate cloud ({exc})") from exc
    return np.sort(hull.vertices[hull.vertices < len(p)])


def random_viewpoint(rng: np.random.Generator, distance: float = CAMERA_DISTANCE) -> np.ndarray:
    v = rng.normal(size=3)
    return distance * v / (np.linalg.norm(v) + 1e-12)


def partial_view(points, seed: int = 0, distance: float = CAMERA_DISTANCE, radius_exp: float = HPR_RADIUS_EXP):
    """Single-view scans: for each cloud, the points visible from a random viewpoint at `distance`
    from the origin (`hidden_point_removal`), resampled to the cloud's point count. The result is
    not re-centred (a camera sees the object where it is). Returns (points, source)."""

    def one(c, i):
        rng = _rng(seed, PARTIAL, 1, i)
        visible = hidden_point_removal(c, random_viewpoint(rng, distance), radius_exp)
        return resample(c, visible, len(c), rng)

    return _per_cloud(points, one)
