"""ModelNet in the PointNet `modelnet40_ply_hdf5_2048` layout.

Folder: `ply_data_<split>N.h5` files with `data` (M, N, 3) and `label` (M, 1), the split lists
`train_files.txt` / `test_files.txt` (one h5 path per line, relative to the folder or to an old
root), and `shape_names.txt` (line i = the name of label i). ModelNet10/40 have no val split:
unless the folder lists its own (`val_files.txt`), `val` is held out of the official train split and
`train` is the rest (foundry.data.holdout); `trainval` is the official train split.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..validation import FoundryInputError
from .base import ArraySource, as_labels, as_points, read_h5_arrays, read_lines, resolve_listed, subset_source
from .holdout import split_official_train

SPLIT_LISTS = {"train": "train_files.txt", "test": "test_files.txt"}
OWN_VAL_LIST = "val_files.txt"


def is_modelnet_h5(folder: Path) -> bool:
    return any((folder / f).is_file() for f in SPLIT_LISTS.values()) or (
        (folder / "shape_names.txt").is_file() and any(folder.glob("ply_data_*.h5")))


def split_files(folder: Path, split: str, list_names: dict[str, str], layout: str) -> list[Path]:
    """The h5 files of `split`, from its list file (or, without one, the ply_data_<split>*.h5 glob)."""
    if split not in list_names:
        raise FoundryInputError(f"{layout} at {folder} has no {split!r} split; use one of {sorted(list_names)}")
    lst = folder / list_names[split]
    if lst.is_file():
        entries = read_lines(lst, f"{split} split list")
        if not entries:
            raise FoundryInputError(f"{lst} is empty; list the {split} h5 files in it, one per line")
        files = []
        for e in entries:
            p = resolve_listed(folder, e)
            if p is None:
                raise FoundryInputError(f"{lst} lists {e!r}, but no such file is in {folder}; "
                                        "restore the file or remove the line")
            files.append(p)
        return files
    files = sorted(folder.glob(f"ply_data_{split}*.h5"))
    if not files:
        raise FoundryInputError(f"{layout} at {folder}: no {list_names[split]} and no ply_data_{split}*.h5 files; "
                                f"add {list_names[split]} listing the {split} h5 files")
    return files


def class_names_from(folder: Path, filename: str, labels: np.ndarray) -> list[str]:
    path = folder / filename
    if path.is_file():
        names = [ln.split()[0] for ln in read_lines(path, "class names")]
        if names:
            return names
    return [f"class_{i}" for i in range(int(labels.max()) + 1 if len(labels) else 0)]


def load_modelnet_h5(folder: str | Path, split: str) -> ArraySource:
    folder = Path(folder)
    lists = dict(SPLIT_LISTS)
    if (folder / OWN_VAL_LIST).is_file():  # the folder's own val split: the lists mean what they say
        lists["val"] = OWN_VAL_LIST
        if split == "trainval":
            raise FoundryInputError("internal: trainval of a folder with its own val split is train + val")
        return _load_listed(folder, split, lists)
    if split in ("train", "val"):
        official = _load_listed(folder, "train", lists)
        index, note = split_official_train(official.labels, split)
        return subset_source(official, index, f"ModelNet h5 {folder} [{note}]")
    return _load_listed(folder, "train" if split == "trainval" else split, lists)


def _load_listed(folder: Path, split: str, lists: dict) -> ArraySource:
    pts_all, lab_all = [], []
    for f in split_files(folder, split, lists, "ModelNet h5 folder"):
        arr = read_h5_arrays(f, ["data", "label"])
        labels = as_labels(arr["label"], str(f))
        pts_all.append(as_points(arr["data"], str(f), count=len(labels)))
        lab_all.append(labels)
    n = {p.shape[1] for p in pts_all}
    if len(n) > 1:
        raise FoundryInputError(f"the {split} h5 files in {folder} hold different point counts {sorted(n)}; "
                                "rebuild them with one count")
    labels = np.concatenate(lab_all)
    names = class_names_from(folder, "shape_names.txt", labels)
    if len(labels) and labels.max() >= len(names):
        raise FoundryInputError(f"{folder}: label {int(labels.max())} found but shape_names.txt names only "
                                f"{len(names)} classes; fix shape_names.txt (one class per line)")
    return ArraySource(np.concatenate(pts_all), labels, names, description=f"ModelNet h5 {folder} [{split}]")
