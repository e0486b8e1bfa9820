"""ShapeNetPart (and data sets in its layouts, e.g. KiCadPart): clouds with per-point part labels.

Two layouts:
- PointNet h5 (`shapenet_part_seg_hdf5_data`): `ply_data_<split>N.h5` with `data` (M, N, 3),
  `label` (M, 1) object category, `pid` (M, N) global part id; `<split>_hdf5_file_list.txt`;
  `all_object_categories.txt` (line i = category i, first column its name). Optional:
  `category_parts.json` (category -> global part ids), `overallid_to_catid_partid.json`,
  `part_names.txt` (line j = name of part j).
- Per-shape text (`shapenetcore_partanno_segmentation_benchmark_v0_normal`): `<synset>/<id>.txt`
  rows "x y z nx ny nz part", `synsetoffset2category.txt` ("<Name> <synset>" per line, line i =
  category i), `train_test_split/shuffled_<split>_file_list.json` (entries "shape_data/<synset>/<id>").
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..validation import FoundryInputError
from .base import ArraySource, ShapeFileSource, as_labels, as_points, normalize_unit_sphere, read_h5_arrays, read_lines
from .modelnet import split_files

H5_LISTS = {s: f"{s}_hdf5_file_list.txt" for s in ("train", "val", "test")}
TXT_LISTS = {s: f"train_test_split/shuffled_{s}_file_list.json" for s in ("train", "val", "test")}

# Parts per category in the official ShapeNetPart benchmark (16 categories, 50 global part ids in this order).
SHAPENETPART_PARTS = {"airplane": 4, "bag": 2, "cap": 2, "car": 4, "chair": 4, "earphone": 3, "guitar": 3,
                      "knife": 2, "lamp": 4, "laptop": 2, "motorbike": 6, "mug": 2, "pistol": 3, "rocket": 3,
                      "skateboard": 3, "table": 3}


def is_shapenetpart_h5(folder: Path) -> bool:
    return any((folder / f).is_file() for f in H5_LISTS.values()) or (folder / "all_object_categories.txt").is_file()


def is_shapenetpart_txt(folder: Path) -> bool:
    return (folder / "synsetoffset2category.txt").is_file() or (folder / "train_test_split").is_dir()


def _category_table(path: Path, what: str) -> tuple[list[str], list[str]]:
    """(names, second column or '') from all_object_categories.txt / synsetoffset2category.txt."""
    names, second = [], []
    for ln in read_lines(path, what):
        cols = ln.split()
        names.append(cols[0])
        second.append(cols[1] if len(cols) > 1 else "")
    if not names:
        raise FoundryInputError(f"{path} is empty; it must list one category per line")
    return names, second


def _standard_category_parts(names: list[str]) -> dict[int, list[int]] | None:
    if [n.lower() for n in names] != list(SHAPENETPART_PARTS):
        return None
    out, g = {}, 0
    for i, n in enumerate(names):
        k = SHAPENETPART_PARTS[n.lower()]
        out[i] = list(range(g, g + k))
        g += k
    return out


def category_parts_for(folder: Path, names: list[str], keys2: list[str],
                       observed: tuple[np.ndarray, np.ndarray] | None = None) -> dict[int, list[int]]:
    """category index -> global part ids: from category_parts.json, overallid_to_catid_partid.json,
    the official ShapeNetPart table, or (last resort) the parts seen in the data."""
    lookup = {n: i for i, n in enumerate(names)}
    lookup.update({k: i for i, k in enumerate(keys2) if k})
    cp = folder / "category_parts.json"
    if cp.is_file():
        try:
            raw = json.loads(cp.read_text())
            return {lookup[str(k)]: [int(p) for p in v] for k, v in raw.items()}
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise FoundryInputError(f"{cp} is malformed ({exc!r}); it must map each category name in "
                                    "all_object_categories.txt to a list of global part ids") from exc
    ov = folder / "overallid_to_catid_partid.json"
    if ov.is_file():
        try:
            out: dict[int, list[int]] = {i: [] for i in range(len(names))}
            for gid, (cat, _local) in enumerate(json.loads(ov.read_text())):
                out[lookup[str(cat)]].append(gid)
            return out
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise FoundryInputError(f"{ov} is malformed ({exc!r}); it must list [category, local part] per "
                                    "global part id") from exc
    std = _standard_category_parts(names)
    if std is not None:
        return std
    if observed is None:
        raise FoundryInputError(f"{folder}: cannot tell which parts belong to which category; add "
                                "category_parts.json ({\"<category>\": [global part ids], ...})")
    labels, pids = observed
    return {i: sorted(int(p) for p in np.unique(pids[labels == i])) for i in range(len(names))}


def part_names_for(folder: Path, names: list[str], category_parts: dict[int, list[int]]) -> list[str]:
    n_parts = max((max(v) for v in category_parts.values() if v), default=-1) + 1
    pn = folder / "part_names.txt"
    if pn.is_file():
        lines = read_lines(pn, "part names")
        if len(lines) >= n_parts:
            return lines
    out = [f"part_{j}" for j in range(n_parts)]
    for c, gids in category_parts.items():
        for k, g in enumerate(gids):
            out[g] = f"{names[c]}/part{k}"
    return out


def _check_parts(pids: np.ndarray, labels: np.ndarray, num_parts: int, where: str) -> None:
    if len(pids) and (pids.min() < 0 or pids.max() >= num_parts):
        raise FoundryInputError(f"{where}: 'pid' values range {int(pids.min())}..{int(pids.max())} but the "
                                f"category/part files define {num_parts} parts; fix part_names.txt / "
                                "category_parts.json or the data")


def load_shapenetpart_h5(folder: str | Path, split: str) -> ArraySource:
    folder = Path(folder)
    names, keys2 = _category_table(folder / "all_object_categories.txt", "category list all_object_categories.txt")
    pts_all, lab_all, pid_all = [], [], []
    for f in split_files(folder, split, H5_LISTS, "ShapeNetPart h5 folder"):
        arr = read_h5_arrays(f, ["data", "label"], optional=["pid", "seg"])
        if "pid" not in arr and "seg" not in arr:
            raise FoundryInputError(f"{f} has no per-point part labels ('pid', or 'seg' in some copies); a "
                                    "ShapeNetPart h5 file needs data, label and pid")
        labels = as_labels(arr["label"], str(f), len(names))
        pts = as_points(arr["data"], str(f), count=len(labels))
        pid = np.asarray(arr["pid"] if "pid" in arr else arr["seg"])
        if pid.shape != pts.shape[:2]:
            raise FoundryInputError(f"{f}: 'pid' has shape {tuple(pid.shape)} but 'data' is {tuple(pts.shape)}; "
                                    "there must be one part id per point")
        pts_all.append(pts)
        lab_all.append(labels)
        pid_all.append(pid.astype(np.int64))
    if len({p.shape[1] for p in pts_all}) > 1:
        raise FoundryInputError(f"the {split} h5 files in {folder} hold different point counts; rebuild them")
    labels, pids = np.concatenate(lab_all), np.concatenate(pid_all)
    cparts = category_parts_for(folder, names, keys2, observed=(labels, pids))
    pnames = part_names_for(folder, names, cparts)
    _check_parts(pids, labels, len(pnames), str(folder))
    return ArraySource(np.concatenate(pts_all), labels, names, parts=pids, part_names=pnames, category_parts=cparts,
                       description=f"ShapeNetPart h5 {folder} [{split}]")


def parse_table(path: Path) -> np.ndarray:
    """A whitespace-separated numeric table as (rows, columns) float64; ValueError when malformed."""
    return np.loadtxt(path, dtype=np.float64, ndmin=2)


def read_part_txt(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(points (n, 3) float32, part ids (n,)) from one 'x y z [nx ny nz] part' text file."""
    if not path.is_file():
        raise FoundryInputError(f"missing shape file {path}; restore it or remove it from the split list")
    try:
        arr = parse_table(path)
    except ValueError as exc:
        raise FoundryInputError(f"{path} is not a table of numbers ({exc}); rows must be 'x y z nx ny nz part'") from exc
    if arr.shape[0] == 0:
        raise FoundryInputError(f"{path} is empty; re-export this shape or remove it from the split list")
    if arr.shape[1] < 4:
        raise FoundryInputError(f"{path}: rows have {arr.shape[1]} columns, expected 'x y z nx ny nz part' (7)")
    pts = arr[:, :3].astype(np.float32)
    if not np.isfinite(arr).all():
        raise FoundryInputError(f"{path} contains NaN or Inf values; repair or drop this shape")
    return pts, arr[:, -1].astype(np.int64)


class ShapeNetPartTextSource(ShapeFileSource):
    """Per-shape text files, read on access (shapes differ in size; load_arrays uses 2048 points)."""

    default_num_points = 2048

    def __init__(self, folder: str | Path, split: str):
        folder = Path(folder)
        if split not in TXT_LISTS:
            raise FoundryInputError(f"ShapeNetPart text folder {folder} has no {split!r} split; use train/val/test")
        names, synsets = _category_table(folder / "synsetoffset2category.txt", "synsetoffset2category.txt")
        lst = folder / TXT_LISTS[split]
        if not lst.is_file():
            raise FoundryInputError(f"missing split list {lst}; ShapeNetPart text data needs "
                                    "train_test_split/shuffled_{train,val,test}_file_list.json")
        try:
            entries = json.loads(lst.read_text())
            assert isinstance(entries, list)
        except (json.JSONDecodeError, AssertionError) as exc:
            raise FoundryInputError(f"{lst} must be a JSON list of 'shape_data/<synset>/<id>' strings") from exc
        syn_index = {s: i for i, s in enumerate(synsets)}
        self.files, labels = [], []
        for e in entries:
            bits = str(e).replace("\\", "/").split("/")
            if len(bits) < 2 or bits[-2] not in syn_index:
                raise FoundryInputError(f"{lst}: entry {e!r} names no synset listed in synsetoffset2category.txt")
            self.files.append(folder / bits[-2] / f"{bits[-1]}.txt")
            labels.append(syn_index[bits[-2]])
        if not self.files:
            raise FoundryInputError(f"{lst} lists no shapes")
        self.check_files(lst)
        self.labels = np.array(labels, dtype=np.int64)
        self.class_names = names
        std = _standard_category_parts(names)
        if std is None and not any((folder / f).is_file() for f in ("category_parts.json",
                                                                    "overallid_to_catid_partid.json")):
            seen = [(lab, read_part_txt(f)[1]) for f, lab in zip(self.files, self.labels)]
            observed = (np.concatenate([np.full(len(p), lab) for lab, p in seen]), np.concatenate([p for _, p in seen]))
            self.category_parts = category_parts_for(folder, names, synsets, observed)
        else:
            self.category_parts = category_parts_for(folder, names, synsets)
        self.part_names = part_names_for(folder, names, self.category_parts)
        self.description = f"ShapeNetPart text {folder} [{split}]"

    def get(self, index: int):
        pts, parts = read_part_txt(self.files[index])
        if parts.min() < 0 or parts.max() >= len(self.part_names):
            raise FoundryInputError(f"{self.files[index]}: part ids {int(parts.min())}..{int(parts.max())} fall "
                                    f"outside the {len(self.part_names)} parts of this data set")
        return normalize_unit_sphere(pts), int(self.labels[index]), parts
