"""Point-cloud data: standard layouts in, unit-sphere normalised clouds out.

    open_dataset(spec, split, num_points=None, transform=None)  -> torch Dataset of dicts
    load_arrays(spec, split, num_points=None)                   -> dict of numpy arrays

spec: "modelnet10" / "kicadpart" (bundled), "synthetic" / "synthetic:N", or a data folder
(ModelNet h5, ShapeNet-55, ScanObjectNN, ShapeNetPart h5 or text; detected automatically).
"""
from .base import PointCloudDataset, normalize_unit_sphere
from .datasets import bundled_path, detect_layout, load_arrays, open_dataset

__all__ = ["PointCloudDataset", "bundled_path", "detect_layout", "load_arrays", "normalize_unit_sphere",
           "open_dataset"]
