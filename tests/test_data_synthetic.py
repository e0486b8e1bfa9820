"""Procedural shapes: seeded, labelled per point, normalised, usable through open_dataset."""
import numpy as np
import torch

from foundry.data import load_arrays, open_dataset
from foundry.data.synthetic import CATEGORY_PARTS, CLASS_NAMES, PART_NAMES, make_shape


def test_categories_and_parts():
    assert len(CLASS_NAMES) >= 6 and {"chair", "table", "mug", "lamp", "airplane"} <= set(CLASS_NAMES)
    assert len(PART_NAMES) == CATEGORY_PARTS[len(CLASS_NAMES) - 1][-1] + 1
    for c, name in enumerate(CLASS_NAMES):
        pts, parts = make_shape(name, np.random.default_rng(c), 256)
        assert pts.shape == (256, 3) and pts.dtype == np.float32 and np.isfinite(pts).all()
        assert abs(np.linalg.norm(pts, axis=1).max() - 1) < 1e-5
        assert set(parts.tolist()) <= set(CATEGORY_PARTS[c]) and len(set(parts.tolist())) >= 2, name


def test_deterministic_and_split_dependent():
    a = load_arrays("synthetic:16", "train", num_points=128)
    b = load_arrays("synthetic:16", "train", num_points=128)
    c = load_arrays("synthetic:16", "test", num_points=128)
    d = load_arrays("synthetic:16", "train", num_points=128, seed=3)
    assert np.array_equal(a["points"], b["points"]) and np.array_equal(a["parts"], b["parts"])
    assert not np.array_equal(a["points"], c["points"]) and not np.array_equal(a["points"], d["points"])
    assert a["points"].shape == (16, 128, 3) and a["labels"].tolist()[:len(CLASS_NAMES)] == list(range(len(CLASS_NAMES)))


def test_random_access_matches_bulk():
    ds = open_dataset("synthetic:12", "train", num_points=64)
    assert len(ds) == 12 and ds.num_classes == len(CLASS_NAMES) and ds.num_parts == len(PART_NAMES)
    bulk = load_arrays("synthetic:12", "train", num_points=64)
    assert torch.equal(ds[7]["points"], torch.from_numpy(bulk["points"][7]))
    assert len(open_dataset("synthetic", "train")) == 1000
