"""Per-sample transforms and the batched augment_batch."""
import math

import pytest
import torch

from foundry.data import (Compose, Jitter, NormalizeUnitSphere, RandomRotateUp, RandomScale, RandomSubsample,
                          RandomTranslate, augment_batch)
from foundry.validation import FoundryInputError


def _g(seed=0):
    return torch.Generator().manual_seed(seed)


def test_augment_batch_seeded_and_bounded(cloud):
    a = augment_batch(cloud, _g(), rotate_up=True, jitter=0.01)
    b = augment_batch(cloud, _g(), rotate_up=True, jitter=0.01)
    assert torch.equal(a, b) and a.shape == cloud.shape and not torch.equal(a, cloud)
    t = augment_batch(cloud, _g(), scale=None, translate=0.2)  # pure translation, per cloud
    shift = t - cloud
    assert torch.allclose(shift, shift[:, :1].expand_as(shift), atol=1e-6) and shift.abs().max() <= 0.2
    s = augment_batch(cloud, _g(), scale=(0.5, 2.0), translate=0.0)
    ratio = s / cloud
    assert ratio.min() >= 0.5 - 1e-5 and ratio.max() <= 2.0 + 1e-5
    same = augment_batch(cloud, _g(), scale=None, translate=0.0)
    assert torch.equal(same, cloud)
    with pytest.raises(FoundryInputError):
        augment_batch(torch.zeros(2, 5, 4))


def test_rotation_keeps_up_axis(cloud):
    for axis in (1, 2):
        r = augment_batch(cloud, _g(1), scale=None, translate=0.0, rotate_up=True, up_axis=axis)
        assert torch.allclose(r[..., axis], cloud[..., axis], atol=1e-6)
        assert torch.allclose(r.norm(dim=-1), cloud.norm(dim=-1), atol=1e-5)
    single = augment_batch(cloud[0], _g(), rotate_up=True)
    assert single.shape == cloud[0].shape


def test_generator_device_independent(cloud):
    a = augment_batch(cloud, _g(5), rotate_up=True)
    b = augment_batch(cloud.double(), _g(5), rotate_up=True)
    assert b.dtype == torch.float64 and torch.allclose(a.double(), b, atol=1e-5)


def test_per_sample_transforms_on_dicts():
    pts = torch.randn(100, 3) * 7 + 3
    sample = {"points": pts, "part": torch.arange(100), "label": torch.tensor(1)}
    n = NormalizeUnitSphere()(pts)
    assert math.isclose(float(n.norm(dim=1).max()), 1.0, abs_tol=1e-5)
    sub = RandomSubsample(10, generator=_g())(sample)
    assert sub["points"].shape == (10, 3) and torch.equal(sub["points"], pts[sub["part"]])
    pad = RandomSubsample(150, generator=_g())(pts)
    assert pad.shape == (150, 3)
    t = Compose([NormalizeUnitSphere(), RandomRotateUp(axis=2, generator=_g()), RandomScale(generator=_g()),
                 RandomTranslate(generator=_g()), Jitter(0.01, 0.03, generator=_g()), RandomSubsample(32, _g())])
    out = t(sample)
    assert out["points"].shape == (32, 3) and out["part"].shape == (32,) and torch.equal(out["label"], sample["label"])
    assert "RandomRotateUp" in repr(t)
    r = RandomRotateUp(axis=2, generator=_g())(pts)
    assert torch.allclose(r[:, 2], pts[:, 2]) and torch.allclose(r.norm(dim=1), pts.norm(dim=1), atol=1e-4)
