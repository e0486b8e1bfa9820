"""Point-cloud data: standard layouts in, unit-sphere normalised clouds out.

    open_dataset(spec, split, num_points=None, transform=None)  -> torch Dataset of dicts
    load_arrays(spec, split, num_points=None)                   -> dict of numpy arrays
    augment_batch(points, generator=None, ...)                  -> batched torch augmentation
    make_fewshot_splits(labels, n_way, k_shot, n_query, folds, seed) -> FewShotSplits (JSON round trip)
    check_data(path)                                            -> report of what is missing or malformed

spec: "modelnet10" / "kicadpart" (bundled), "synthetic" / "synthetic:N", or a data folder
(ModelNet h5, ShapeNet-55, ScanObjectNN, ShapeNetPart h5 or text; detected automatically).
"""
from .base import PointCloudDataset, normalize_unit_sphere
from .check import check_data
from .datasets import bundled_path, detect_layout, load_arrays, open_dataset
from .fewshot import FewShotSplits, array_checksum, make_fewshot_splits
from .transforms import (Compose, Jitter, NormalizeUnitSphere, RandomRotateUp, RandomScale, RandomSubsample,
                         RandomTranslate, augment_batch)

__all__ = ["Compose", "FewShotSplits", "Jitter", "NormalizeUnitSphere", "PointCloudDataset", "RandomRotateUp",
           "RandomScale", "RandomSubsample", "RandomTranslate", "array_checksum", "augment_batch", "bundled_path",
           "check_data", "detect_layout", "load_arrays", "make_fewshot_splits", "normalize_unit_sphere",
           "open_dataset"]
