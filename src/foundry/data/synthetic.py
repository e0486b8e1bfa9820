"""Procedural shapes with part labels: an unlimited, file-free, seeded source of point clouds.

Every object category is assembled from primitive surfaces (boxes, cylinders, cones, spheres,
ellipsoids, tori) with random proportions; each point carries the global id of the part it was
sampled from, like ShapeNetPart. z is up. Shape i of a split is a pure function of
(seed, split, i), so any index can be generated on its own, in any order, on any worker.
"""
from __future__ import annotations

import math

import numpy as np

from ..validation import FoundryInputError
from .base import PointSource, normalize_unit_sphere

# ----------------------------------------------------------------------------- primitives
# Each primitive: area() and sample(n, rng) -> (n, 3) points on its surface.


class Box:
    def __init__(self, center, size):
        self.c, self.s = np.asarray(center, float), np.abs(np.asarray(size, float))

    def area(self):
        x, y, z = self.s
        return 2 * (x * y + y * z + x * z)

    def sample(self, n, rng):
        x, y, z = self.s
        face_area = np.array([y * z, y * z, x * z, x * z, x * y, x * y])
        face = rng.choice(6, n, p=face_area / face_area.sum())
        pts = rng.uniform(-0.5, 0.5, (n, 3))
        axis = face // 2
        pts[np.arange(n), axis] = np.where(face % 2 == 0, -0.5, 0.5)
        return self.c + pts * self.s


def _frame(axis: str):
    """Columns (u, v, w): two perpendicular directions and the axis direction."""
    order = {"x": (1, 2, 0), "y": (2, 0, 1), "z": (0, 1, 2)}[axis]
    return np.eye(3)[:, order]


class Frustum:
    """Side of a truncated cone (cylinder when r0 == r1) along `axis`, optional end caps."""

    def __init__(self, center, r0, r1, height, axis="z", caps=(True, True)):
        self.c, self.r0, self.r1, self.h = np.asarray(center, float), float(r0), float(r1), float(height)
        self.f, self.caps = _frame(axis), caps

    def _areas(self):
        slant = math.hypot(self.h, self.r1 - self.r0)
        side = math.pi * (self.r0 + self.r1) * slant
        bottom = math.pi * self.r0 ** 2 if self.caps[0] else 0.0
        top = math.pi * self.r1 ** 2 if self.caps[1] else 0.0
        return np.array([side, bottom, top])

    def area(self):
        return float(self._areas().sum())

    def sample(self, n, rng):
        a = self._areas()
        which = rng.choice(3, n, p=a / a.sum())
        theta = rng.uniform(0, 2 * math.pi, n)
        t = rng.uniform(0, 1, n)
        if self.r0 != self.r1:  # area-uniform along a cone side: radius grows linearly
            lo, hi = self.r0 ** 2, self.r1 ** 2
            r_side = np.sqrt(lo + t * (hi - lo))
            t_side = (r_side - self.r0) / (self.r1 - self.r0)
        else:
            r_side, t_side = np.full(n, self.r0), t
        rad = np.sqrt(rng.uniform(0, 1, n))
        r = np.where(which == 0, r_side, np.where(which == 1, rad * self.r0, rad * self.r1))
        w = np.where(which == 0, t_side, np.where(which == 1, 0.0, 1.0)) - 0.5
        local = np.stack([r * np.cos(theta), r * np.sin(theta), w * self.h], 1)
        return self.c + local @ self.f.T


class Ellipsoid:
    def __init__(self, center, radii):
        self.c, self.r = np.asarray(center, float), np.abs(np.asarray(radii, float))

    def area(self):  # Knud Thomsen's approximation
        p = 1.6075
        a, b, c = self.r
        return 4 * math.pi * (((a * b) ** p + (a * c) ** p + (b * c) ** p) / 3) ** (1 / p)

    def sample(self, n, rng):
        # rejection on the surface density of the stretched sphere keeps the sampling near-uniform
        out = np.empty((0, 3))
        while len(out) < n:
            d = rng.normal(size=(2 * n + 8, 3))
            d /= np.linalg.norm(d, axis=1, keepdims=True)
            dens = np.linalg.norm(d / self.r * self.r.prod(), axis=1)
            keep = rng.uniform(0, dens.max(), len(d)) < dens
            out = np.concatenate([out, d[keep]])
        return self.c + out[:n] * self.r


class Torus:
    """Tube of radius r around a circle of radius R in the plane normal to `axis`; arc in radians."""

    def __init__(self, center, R, r, axis="y", arc=(0.0, 2 * math.pi)):
        self.c, self.R, self.r, self.f, self.arc = np.asarray(center, float), float(R), float(r), _frame(axis), arc

    def area(self):
        return (self.arc[1] - self.arc[0]) * self.R * 2 * math.pi * self.r

    def sample(self, n, rng):
        u = rng.uniform(*self.arc, n)
        # the outer side of the tube has more area: accept phi with probability ~ (R + r cos phi)
        phi = np.empty(0)
        while len(phi) < n:
            cand = rng.uniform(0, 2 * math.pi, 2 * n + 8)
            keep = rng.uniform(0, self.R + self.r, len(cand)) < self.R + self.r * np.cos(cand)
            phi = np.concatenate([phi, cand[keep]])
        phi = phi[:n]
        rr = self.R + self.r * np.cos(phi)
        local = np.stack([rr * np.cos(u), rr * np.sin(u), self.r * np.sin(phi)], 1)
        return self.c + local @ self.f.T


# ----------------------------------------------------------------------------- categories
# builder(rng) -> list of (local part name, primitive); the part names of a category are fixed.

def _chair(g):
    w, d, h = g.uniform(0.4, 0.6), g.uniform(0.4, 0.6), g.uniform(0.4, 0.5)
    t, leg = g.uniform(0.03, 0.08), g.uniform(0.025, 0.05)
    back_h = g.uniform(0.35, 0.6)
    parts = [("seat", Box([0, 0, h], [w, d, t]))]
    parts.append(("back", Box([0, d / 2 - t / 2, h + back_h / 2], [w, t, back_h])))
    round_legs = g.random() < 0.5
    for sx in (-1, 1):
        for sy in (-1, 1):
            c = [sx * (w / 2 - leg), sy * (d / 2 - leg), h / 2]
            parts.append(("leg", Frustum(c, leg, leg, h, caps=(True, False)) if round_legs else Box(c, [2 * leg, 2 * leg, h])))
    if g.random() < 0.5:
        for sx in (-1, 1):
            parts.append(("arm", Box([sx * w / 2, 0, h + 0.2], [0.04, d * 0.9, 0.04])))
    return parts


def _table(g):
    w, d, h, t = g.uniform(0.8, 1.6), g.uniform(0.5, 1.0), g.uniform(0.5, 0.8), g.uniform(0.03, 0.08)
    if g.random() < 0.4:  # round table on one pedestal
        r = g.uniform(0.35, 0.6)
        return [("top", Frustum([0, 0, h], r, r, t)), ("leg", Frustum([0, 0, h / 2], 0.05, 0.05, h, caps=(False, False))),
                ("leg", Frustum([0, 0, 0.01], r * 0.5, r * 0.5, 0.02))]
    leg = g.uniform(0.03, 0.06)
    parts = [("top", Box([0, 0, h], [w, d, t]))]
    for sx in (-1, 1):
        for sy in (-1, 1):
            parts.append(("leg", Box([sx * (w / 2 - leg), sy * (d / 2 - leg), h / 2], [2 * leg, 2 * leg, h])))
    return parts


def _mug(g):
    r, h = g.uniform(0.3, 0.45), g.uniform(0.6, 1.0)
    R, tube = g.uniform(0.15, 0.25) * h / 0.8, g.uniform(0.03, 0.06)
    return [("body", Frustum([0, 0, h / 2], r, r * g.uniform(0.9, 1.15), h, caps=(True, False))),
            ("handle", Torus([r + R * 0.15, 0, h / 2], R, tube, axis="y", arc=(-math.pi / 2 - 0.3, math.pi / 2 + 0.3)))]


def _lamp(g):
    br, pole_h = g.uniform(0.2, 0.35), g.uniform(0.8, 1.5)
    r_top, r_bot, sh = g.uniform(0.08, 0.2), g.uniform(0.25, 0.45), g.uniform(0.25, 0.45)
    return [("base", Frustum([0, 0, 0.03], br, br * 0.9, 0.06)),
            ("pole", Frustum([0, 0, pole_h / 2], 0.025, 0.025, pole_h, caps=(False, False))),
            ("shade", Frustum([0, 0, pole_h - sh * 0.3], r_bot, r_top, sh, caps=(False, False)))]


def _airplane(g):
    L, fr = g.uniform(1.6, 2.4), g.uniform(0.08, 0.14)
    span, chord, wt = g.uniform(1.4, 2.4), g.uniform(0.25, 0.45), g.uniform(0.02, 0.04)
    wx = g.uniform(-0.15, 0.1) * L
    parts = [("fuselage", Frustum([0, 0, 0], fr, fr, L, axis="x", caps=(False, False))),
             ("fuselage", Ellipsoid([L / 2, 0, 0], [fr * 2.5, fr, fr])),
             ("fuselage", Frustum([-L / 2 - 0.1, 0, fr * 0.3], fr, fr * 0.4, 0.2, axis="x", caps=(False, True))),
             ("wing", Box([wx, 0, -fr * 0.3], [chord, span, wt])),
             ("tail", Box([-L / 2, 0, fr + 0.15], [chord * 0.6, wt, 0.3])),
             ("tail", Box([-L / 2, 0, fr * 0.5], [chord * 0.5, span * 0.35, wt]))]
    if g.random() < 0.7:
        for sy in (-1, 1):
            parts.append(("engine", Frustum([wx + 0.05, sy * span * 0.25, -fr - 0.05], 0.07, 0.07, 0.3, axis="x")))
    return parts


def _bottle(g):
    r, h = g.uniform(0.2, 0.35), g.uniform(0.7, 1.2)
    nr, nh = g.uniform(0.06, 0.12), g.uniform(0.2, 0.4)
    return [("body", Frustum([0, 0, h / 2], r, r, h, caps=(True, False))),
            ("neck", Frustum([0, 0, h + nh / 2], r, nr, nh, caps=(False, False))),
            ("cap", Frustum([0, 0, h + nh + 0.04], nr * 1.15, nr * 1.15, 0.08))]


def _car(g):
    L, W, H = g.uniform(1.6, 2.4), g.uniform(0.7, 1.0), g.uniform(0.3, 0.45)
    wr = g.uniform(0.15, 0.22)
    parts = [("body", Box([0, 0, wr + H / 2], [L, W, H])),
             ("cabin", Box([g.uniform(-0.2, 0.1) * L, 0, wr + H + 0.15], [L * g.uniform(0.4, 0.6), W * 0.85, 0.3]))]
    for sx in (-1, 1):
        for sy in (-1, 1):
            parts.append(("wheel", Frustum([sx * L * 0.32, sy * (W / 2 + 0.04), wr], wr, wr, 0.12, axis="y")))
    return parts


def _guitar(g):
    br, nl = g.uniform(0.3, 0.42), g.uniform(0.9, 1.3)
    t = g.uniform(0.08, 0.14)
    return [("body", Ellipsoid([0, 0, 0], [br, t, br * 1.1])),
            ("body", Ellipsoid([0, 0, br * 1.3], [br * 0.8, t, br * 0.85])),
            ("neck", Box([0, 0, br * 1.3 + nl / 2], [0.08, 0.05, nl])),
            ("head", Box([0, 0, br * 1.3 + nl + 0.1], [0.14, 0.05, 0.2]))]


CATEGORIES = {
    "chair": (_chair, ["seat", "back", "leg", "arm"]),
    "table": (_table, ["top", "leg"]),
    "mug": (_mug, ["body", "handle"]),
    "lamp": (_lamp, ["base", "pole", "shade"]),
    "airplane": (_airplane, ["fuselage", "wing", "tail", "engine"]),
    "bottle": (_bottle, ["body", "neck", "cap"]),
    "car": (_car, ["body", "cabin", "wheel"]),
    "guitar": (_guitar, ["body", "neck", "head"]),
}
CLASS_NAMES = list(CATEGORIES)
PART_NAMES = [f"{c}/{p}" for c, (_, parts) in CATEGORIES.items() for p in parts]
CATEGORY_PARTS = {}
_gid = 0
for _i, (_c, (_, _parts)) in enumerate(CATEGORIES.items()):
    CATEGORY_PARTS[_i] = list(range(_gid, _gid + len(_parts)))
    _gid += len(_parts)
del _gid, _i, _c, _parts

_SPLIT_CODE = {"train": 0, "val": 1, "test": 2, "trainval": 3}


def make_shape(category: str | int, rng: np.random.Generator, num_points: int = 1024):
    """Sample one shape: (points (num_points, 3) float32 unit-sphere normalised, global part ids (num_points,))."""
    cat = CLASS_NAMES[category] if isinstance(category, (int, np.integer)) else category
    if cat not in CATEGORIES:
        raise FoundryInputError(f"unknown synthetic category {cat!r}; choose from {CLASS_NAMES}")
    builder, names = CATEGORIES[cat]
    prims = builder(rng)
    areas = np.array([p.area() for _, p in prims])
    counts = rng.multinomial(num_points, areas / areas.sum())
    base = CATEGORY_PARTS[CLASS_NAMES.index(cat)][0]
    pts, parts = [], []
    for (name, prim), k in zip(prims, counts):
        if k:
            pts.append(prim.sample(int(k), rng))
            parts.append(np.full(int(k), base + names.index(name), dtype=np.int64))
    pts, parts = np.concatenate(pts), np.concatenate(parts)
    order = rng.permutation(num_points)
    return normalize_unit_sphere(pts[order]), parts[order]


class SyntheticSource(PointSource):
    """`num_shapes` procedural shapes of a split, categories taken round-robin, generated on access."""

    def __init__(self, num_shapes: int = 1000, split: str = "train", num_points: int = 1024, seed: int = 0,
                 categories: list[str] | None = None):
        if split not in _SPLIT_CODE:
            raise FoundryInputError(f"unknown split {split!r}; use one of {list(_SPLIT_CODE)}")
        if int(num_shapes) <= 0:
            raise FoundryInputError(f"synthetic data needs a positive number of shapes, got {num_shapes}")
        cats = list(categories or CLASS_NAMES)
        bad = [c for c in cats if c not in CATEGORIES]
        if bad:
            raise FoundryInputError(f"unknown synthetic categories {bad}; choose from {CLASS_NAMES}")
        self.num_shapes, self.split, self.n, self.seed, self.cats = int(num_shapes), split, int(num_points), int(seed), cats
        self.class_names = list(CLASS_NAMES)
        self.part_names = list(PART_NAMES)
        self.category_parts = {k: list(v) for k, v in CATEGORY_PARTS.items()}
        self.points_per_shape = self.n
        self.up_axis = 2
        self.description = f"synthetic:{self.num_shapes} [{split}]"

    def __len__(self) -> int:
        return self.num_shapes

    def label(self, index: int) -> int:
        return CLASS_NAMES.index(self.cats[index % len(self.cats)])

    def get(self, index: int):
        label = self.label(index)
        rng = np.random.default_rng([self.seed, _SPLIT_CODE[self.split], index])
        pts, parts = make_shape(label, rng, self.n)
        return pts, label, parts
