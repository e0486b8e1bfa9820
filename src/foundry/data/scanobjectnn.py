"""ScanObjectNN (h5_files) in its three standard variants.

    <root>/main_split/training_objectdataset.h5 / test_objectdataset.h5            OBJ_BG
    <root>/main_split_nobg/training_objectdataset.h5 / test_objectdataset.h5       OBJ_ONLY
    <root>/main_split/training_objectdataset_augmentedrot_scale75.h5 / test_...    PB_T50_RS

Each file holds `data` (M, 2048, 3), `label` (M,) and `mask` (M, 2048, background flags, unused
here). `root` may be the h5_files folder or one of the two split folders. Without a `variant`
the hardest one present is used (PB_T50_RS, then OBJ_BG, then OBJ_ONLY).
"""
from __future__ import annotations

from pathlib import Path

from ..validation import FoundryInputError
from .base import ArraySource, as_labels, as_points, read_h5_arrays

CLASS_NAMES = ["bag", "bin", "box", "cabinet", "chair", "desk", "display", "door", "shelf", "table", "bed",
               "pillow", "sink", "sofa", "toilet"]
VARIANTS = {  # variant -> (folder, file stem after training_/test_)
    "pb_t50_rs": ("main_split", "objectdataset_augmentedrot_scale75"),
    "obj_bg": ("main_split", "objectdataset"),
    "obj_only": ("main_split_nobg", "objectdataset"),
}
ALIASES = {"hardest": "pb_t50_rs", "pb-t50-rs": "pb_t50_rs", "objectdataset_augmentedrot_scale75": "pb_t50_rs",
           "obj-bg": "obj_bg", "obj-only": "obj_only", "nobg": "obj_only"}


def _split_dir(folder: Path, sub: str) -> Path | None:
    if folder.name == sub:
        return folder
    if (folder / sub).is_dir():
        return folder / sub
    return None


def variant_files(folder: Path, variant: str) -> tuple[Path, Path] | None:
    """(train file, test file) of a variant, or None when its split folder is absent."""
    sub, stem = VARIANTS[variant]
    d = _split_dir(folder, sub)
    if d is None:
        return None
    return d / f"training_{stem}.h5", d / f"test_{stem}.h5"


def is_scanobjectnn(folder: Path) -> bool:
    if (folder / "main_split").is_dir() or (folder / "main_split_nobg").is_dir():
        return True
    return any(folder.glob("training_objectdataset*.h5")) or any(folder.glob("test_objectdataset*.h5"))


def pick_variant(folder: Path, variant: str | None) -> str:
    if variant is not None:
        v = ALIASES.get(variant.lower(), variant.lower())
        if v not in VARIANTS:
            raise FoundryInputError(f"unknown ScanObjectNN variant {variant!r}; use one of {sorted(VARIANTS)}")
        return v
    for v in ("pb_t50_rs", "obj_bg", "obj_only"):
        files = variant_files(folder, v)
        if files is not None and files[0].is_file():
            return v
    raise FoundryInputError(f"{folder}: no ScanObjectNN h5 files found; expected main_split/training_objectdataset"
                            "[_augmentedrot_scale75].h5 or main_split_nobg/training_objectdataset.h5")


def load_scanobjectnn(folder: str | Path, split: str, variant: str | None = None) -> ArraySource:
    folder = Path(folder)
    v = pick_variant(folder, variant)
    files = variant_files(folder, v)
    if files is None:
        raise FoundryInputError(f"{folder} has no {VARIANTS[v][0]}/ folder, needed for ScanObjectNN {v}")
    if split not in ("train", "test"):
        raise FoundryInputError(f"ScanObjectNN has train and test splits only, not {split!r}")
    path = files[0] if split == "train" else files[1]
    arr = read_h5_arrays(path, ["data", "label"])
    labels = as_labels(arr["label"], str(path), len(CLASS_NAMES))
    pts = as_points(arr["data"], str(path), count=len(labels))
    src = ArraySource(pts, labels, CLASS_NAMES, description=f"ScanObjectNN {v} {folder} [{split}]")
    src.up_axis = 1
    return src
