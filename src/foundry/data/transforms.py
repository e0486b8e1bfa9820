"""Point-cloud transforms, per sample (for datasets) and batched (`augment_batch`, for training loops).

Per-sample transforms take either an (N, 3) tensor or a sample dict from `open_dataset` and return
the same kind; ops that drop or reorder points (RandomSubsample) index the "part" labels too.
Randomness comes from an optional `torch.Generator` (seeded by the caller), else torch's global RNG.
The up axis is a parameter everywhere (z = 2 for ModelNet10 / KiCadPart / synthetic; y = 1 for
PointNet++ `modelnet40_normal_resampled`, ScanObjectNN and ShapeNet-55).
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import torch

from ..validation import FoundryInputError


def _rand(shape, generator: torch.Generator | None, device) -> torch.Tensor:
    """Uniform [0, 1) on `device`, drawn on the generator's own device so seeding is device-independent."""
    gen_dev = generator.device if generator is not None else device
    return torch.rand(shape, generator=generator, device=gen_dev).to(device)


def _randn(shape, generator: torch.Generator | None, device) -> torch.Tensor:
    gen_dev = generator.device if generator is not None else device
    return torch.randn(shape, generator=generator, device=gen_dev).to(device)


def rotation_about(angles: torch.Tensor, axis: int = 2) -> torch.Tensor:
    """(B, 3, 3) rotation matrices by `angles` (B,) radians about coordinate `axis` (0, 1 or 2)."""
    if axis not in (0, 1, 2):
        raise FoundryInputError(f"up axis must be 0 (x), 1 (y) or 2 (z), got {axis}")
    i, j = [a for a in range(3) if a != axis]
    c, s = torch.cos(angles), torch.sin(angles)
    rot = torch.zeros(angles.shape[0], 3, 3, dtype=angles.dtype, device=angles.device)
    rot[:, axis, axis] = 1
    rot[:, i, i], rot[:, i, j], rot[:, j, i], rot[:, j, j] = c, -s, s, c
    return rot


def normalize_unit_sphere_torch(points: torch.Tensor) -> torch.Tensor:
    """Centre on the centroid and scale to max radius 1; (N, 3) or (B, N, 3)."""
    centred = points - points.mean(dim=-2, keepdim=True)
    radius = centred.norm(dim=-1).amax(dim=-1, keepdim=True).clamp_min(1e-12)
    return centred / radius.unsqueeze(-1)


def augment_batch(points: torch.Tensor, generator: torch.Generator | None = None, scale=(2 / 3, 3 / 2),
                  translate: float = 0.2, rotate_up: bool = False, jitter: float = 0.0, *, up_axis: int = 2,
                  anisotropic: bool = True, jitter_clip: float | None = None) -> torch.Tensor:
    """Random per-cloud augmentation of a batch (B, N, 3) on its own device; returns a new tensor.

    In order: rotation by a uniform angle about `up_axis` (if rotate_up), scaling by factors drawn
    uniformly in `scale` (per axis when anisotropic, the Point-MAE/Point-BERT recipe; None = off),
    translation uniform in [-translate, translate] per axis, and Gaussian jitter of std `jitter`
    per point (clipped at `jitter_clip`, default 5 std). Same generator seed -> same result on any device.
    """
    if not isinstance(points, torch.Tensor) or points.dim() not in (2, 3) or points.shape[-1] != 3:
        shape = tuple(points.shape) if isinstance(points, torch.Tensor) else type(points).__name__
        raise FoundryInputError(f"augment_batch needs a (B, N, 3) tensor, got {shape}")
    single = points.dim() == 2
    x = points.unsqueeze(0) if single else points
    B, dev, dt = x.shape[0], x.device, x.dtype
    if rotate_up:
        angles = _rand((B,), generator, dev).to(torch.float32) * (2 * math.pi)
        x = x @ rotation_about(angles, up_axis).to(dt).transpose(1, 2)
    if scale is not None:
        lo, hi = float(scale[0]), float(scale[1])
        if lo <= 0 or hi < lo:
            raise FoundryInputError(f"scale must be (low, high) with 0 < low <= high, got {scale}")
        u = _rand((B, 1, 3 if anisotropic else 1), generator, dev).to(dt)
        x = x * (lo + (hi - lo) * u)
    if translate:
        x = x + (_rand((B, 1, 3), generator, dev).to(dt) * 2 - 1) * float(translate)
    if jitter:
        noise = _randn(x.shape, generator, dev).to(dt) * float(jitter)
        clip = 5 * float(jitter) if jitter_clip is None else float(jitter_clip)
        x = x + noise.clamp(-clip, clip)
    return x[0] if single else x


# ----------------------------------------------------------------------------- per-sample transforms

class _PointTransform:
    """Base: subclasses implement `points(p)`; dicts get their "points" replaced."""

    def __init__(self, generator: torch.Generator | None = None):
        self.generator = generator

    def points(self, p: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def __call__(self, sample):
        if isinstance(sample, dict):
            out = dict(sample)
            out["points"] = self.points(sample["points"])
            return out
        return self.points(sample)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if k != "generator")
        return f"{type(self).__name__}({args})"


class NormalizeUnitSphere(_PointTransform):
    def points(self, p):
        return normalize_unit_sphere_torch(p)


class RandomScale(_PointTransform):
    def __init__(self, low: float = 2 / 3, high: float = 3 / 2, anisotropic: bool = True, generator=None):
        super().__init__(generator)
        self.low, self.high, self.anisotropic = low, high, anisotropic

    def points(self, p):
        return augment_batch(p, self.generator, (self.low, self.high), 0.0, anisotropic=self.anisotropic)


class RandomTranslate(_PointTransform):
    def __init__(self, shift: float = 0.2, generator=None):
        super().__init__(generator)
        self.shift = shift

    def points(self, p):
        return augment_batch(p, self.generator, None, self.shift)


class RandomRotateUp(_PointTransform):
    """Rotation by a uniform angle in [-max_angle, max_angle] (default: any angle) about `axis`."""

    def __init__(self, axis: int = 2, max_angle: float = math.pi, generator=None):
        super().__init__(generator)
        self.axis, self.max_angle = axis, max_angle

    def points(self, p):
        angle = (_rand((1,), self.generator, p.device) * 2 - 1) * self.max_angle
        return p @ rotation_about(angle, self.axis)[0].to(p.dtype).T


class Jitter(_PointTransform):
    def __init__(self, sigma: float = 0.01, clip: float = 0.05, generator=None):
        super().__init__(generator)
        self.sigma, self.clip = sigma, clip

    def points(self, p):
        return augment_batch(p, self.generator, None, 0.0, jitter=self.sigma, jitter_clip=self.clip)


class RandomSubsample:
    """Keep `num_points` random points (with replacement only if the cloud is smaller); indexes "part" too."""

    def __init__(self, num_points: int, generator: torch.Generator | None = None):
        if int(num_points) <= 0:
            raise FoundryInputError(f"num_points must be positive, got {num_points}")
        self.num_points, self.generator = int(num_points), generator

    def indices(self, n: int, device) -> torch.Tensor:
        gen_dev = self.generator.device if self.generator is not None else "cpu"
        if n >= self.num_points:
            idx = torch.randperm(n, generator=self.generator, device=gen_dev)[: self.num_points]
        else:
            extra = torch.randint(n, (self.num_points - n,), generator=self.generator, device=gen_dev)
            idx = torch.cat([torch.arange(n, device=gen_dev), extra])
        return idx.to(device)

    def __call__(self, sample):
        if isinstance(sample, dict):
            idx = self.indices(sample["points"].shape[0], sample["points"].device)
            out = dict(sample)
            out["points"] = sample["points"][idx]
            if "part" in sample:
                out["part"] = sample["part"][idx]
            return out
        return sample[self.indices(sample.shape[0], sample.device)]

    def __repr__(self) -> str:
        return f"RandomSubsample(num_points={self.num_points})"


class Compose:
    def __init__(self, transforms: Sequence[Callable]):
        self.transforms = list(transforms)

    def __call__(self, sample):
        for t in self.transforms:
            sample = t(sample)
        return sample

    def __repr__(self) -> str:
        return "Compose([" + ", ".join(repr(t) for t in self.transforms) + "])"
