"""What every layout loader shares: normalisation, h5 reading with errors a user can act on,
in-memory and lazy point sources, and the torch Dataset that wraps them.

A *source* knows how to produce one normalised cloud (points, label, parts) by index; the
`PointCloudDataset` adds subsampling to `num_points`, the tensor conversion and the user's
transform, so every layout behaves the same way.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from ..validation import FoundryInputError

SPLITS = ("train", "val", "test", "trainval")


# ----------------------------------------------------------------------------- normalisation

def normalize_unit_sphere(points: np.ndarray) -> np.ndarray:
    """Centre each cloud on its centroid and scale it so its farthest point has norm 1.

    Works on one cloud (N, 3) or a batch (M, N, 3); returns float32. A cloud whose points all
    coincide is only centred (it cannot be scaled).
    """
    pts = np.asarray(points, dtype=np.float32)
    centred = pts - pts.mean(axis=-2, keepdims=True)
    radius = np.sqrt((centred.astype(np.float64) ** 2).sum(-1)).max(axis=-1, keepdims=True)
    radius = np.where(radius > 0, radius, 1.0)[..., None]
    return (centred / radius).astype(np.float32)


def check_finite(points: np.ndarray, where: str) -> None:
    """FoundryInputError naming `where` and the first bad rows when points hold NaN/Inf."""
    finite = np.isfinite(points)
    if finite.all():
        return
    if points.ndim == 3:
        bad = np.nonzero(~finite.all(axis=(1, 2)))[0]
        raise FoundryInputError(
            f"{where}: {len(bad)} cloud(s) contain NaN or Inf coordinates (rows {bad[:10].tolist()}); "
            "drop or repair those rows (e.g. re-export them), then run `foundry check-data` on the folder")
    raise FoundryInputError(f"{where}: the cloud contains NaN or Inf coordinates; drop or repair this file")


# ----------------------------------------------------------------------------- files

def read_lines(path: Path, what: str) -> list[str]:
    """Non-empty stripped lines of a text file, or a FoundryInputError saying what it should be."""
    if not path.is_file():
        raise FoundryInputError(f"missing {what}: {path} does not exist; add it (see `foundry check-data {path.parent}`)")
    lines = [ln.strip() for ln in path.read_text(encoding="utf-8", errors="replace").splitlines()]
    return [ln for ln in lines if ln]


def resolve_listed(folder: Path, entry: str) -> Path | None:
    """Find a file named in a split list. Official lists hold paths relative to some old root
    (e.g. `data/modelnet40_ply_hdf5_2048/ply_data_train0.h5`), so try the folder itself, the
    bare file name, and the folder's parents."""
    entry = entry.strip().replace("\\", "/")
    cands = [folder / entry, folder / Path(entry).name]
    for parent in list(folder.parents)[:3]:
        cands.append(parent / entry)
    for c in cands:
        if c.is_file():
            return c
    return None


def open_h5(path: Path):
    import h5py

    if not path.is_file():
        raise FoundryInputError(f"missing data file {path}; restore it or remove it from the split list")
    if path.stat().st_size == 0:
        raise FoundryInputError(f"{path} is empty (0 bytes); re-download or rebuild it")
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise FoundryInputError(f"{path} is not a readable HDF5 file ({exc}); the download is probably truncated or "
                                "corrupt: re-download it") from exc


def read_h5_arrays(path: Path, required: Sequence[str], optional: Sequence[str] = ()) -> dict[str, np.ndarray]:
    """Read datasets from one h5 file; FoundryInputError naming the file and key on any problem."""
    out = {}
    with open_h5(path) as f:
        keys = list(f.keys())
        for k in list(required) + list(optional):
            if k not in f:
                if k in required:
                    raise FoundryInputError(f"{path} has no dataset {k!r} (it has {keys}); this layout needs "
                                            f"{list(required)}: is this the right file or layout?")
                continue
            try:
                out[k] = f[k][()]
            except (OSError, KeyError, ValueError) as exc:
                raise FoundryInputError(f"{path}: dataset {k!r} cannot be read ({exc}); the file is corrupt: "
                                        "re-download it") from exc
    return out


def as_points(arr: np.ndarray, where: str, count: int | None = None) -> np.ndarray:
    """Check a (M, N, 3+) array of clouds and return its xyz as float32."""
    if arr.ndim != 3 or arr.shape[-1] < 3:
        raise FoundryInputError(f"{where}: 'data' must have shape (shapes, points, 3), got {tuple(arr.shape)}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise FoundryInputError(f"{where}: 'data' is empty, shape {tuple(arr.shape)}; rebuild this file")
    if count is not None and arr.shape[0] != count:
        raise FoundryInputError(f"{where}: 'data' has {arr.shape[0]} rows but the labels have {count}; "
                                "the file is inconsistent: rebuild it")
    pts = np.asarray(arr[..., :3], dtype=np.float32)
    check_finite(pts, where)
    return pts


def as_labels(arr: np.ndarray, where: str, num_classes: int | None = None, key: str = "label") -> np.ndarray:
    lab = np.asarray(arr)
    if lab.ndim == 2 and lab.shape[1] == 1:
        lab = lab[:, 0]
    if lab.ndim != 1:
        raise FoundryInputError(f"{where}: {key!r} must have shape (shapes,) or (shapes, 1), got {tuple(arr.shape)}")
    lab = lab.astype(np.int64)
    if num_classes is not None and len(lab) and (lab.min() < 0 or lab.max() >= num_classes):
        raise FoundryInputError(f"{where}: {key!r} values range {int(lab.min())}..{int(lab.max())} but there are "
                                f"only {num_classes} class names; fix the labels or the class-name file")
    return lab


# ----------------------------------------------------------------------------- sources

class PointSource:
    """One split of one data set: `get(i)` -> (points (n, 3) float32 normalised, label, parts or None)."""

    class_names: list[str]
    part_names: list[str] | None = None
    category_parts: dict[int, list[int]] | None = None
    points_per_shape: int | None = None  # None when shapes differ in size
    up_axis: int | None = None  # 0/1/2 when the layout fixes which axis is up, None when unknown
    description: str = ""

    def __len__(self) -> int:
        raise NotImplementedError

    def get(self, index: int):
        raise NotImplementedError

    @property
    def has_parts(self) -> bool:
        return self.part_names is not None


class ShapeFileSource(PointSource):
    """One file per shape (`files`, their `labels`), read in `get`, so shapes may differ in size;
    the ShapeNet layouts that store them so are y-up."""

    files: list[Path]
    up_axis = 1

    def __len__(self) -> int:
        return len(self.files)

    def check_files(self, listing) -> None:
        """Refuse a split list (`listing`) that names shape files which are not there."""
        missing = [f for f in self.files if not f.is_file()]
        if missing:
            raise FoundryInputError(f"{len(missing)} of {len(self.files)} shape files listed in {listing} are missing, "
                                    f"e.g. {missing[0]}; restore them or remove their lines (`foundry check-data` "
                                    "lists all)")


class ArraySource(PointSource):
    """All clouds in memory (the h5 layouts); normalised once at construction."""

    def __init__(self, points: np.ndarray, labels: np.ndarray, class_names: list[str], parts: np.ndarray | None = None,
                 part_names: list[str] | None = None, category_parts: dict[int, list[int]] | None = None,
                 description: str = ""):
        self.points = normalize_unit_sphere(points)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.parts = None if parts is None else np.asarray(parts, dtype=np.int64)
        self.class_names = list(class_names)
        self.part_names = part_names
        self.category_parts = category_parts
        self.points_per_shape = int(self.points.shape[1])
        self.description = description

    def __len__(self) -> int:
        return len(self.labels)

    def get(self, index: int):
        parts = None if self.parts is None else self.parts[index]
        return self.points[index], int(self.labels[index]), parts


def concat_sources(sources: list[ArraySource], description: str) -> ArraySource:
    """Join splits (e.g. train + val) that share class and part names."""
    first = sources[0]
    n = min(s.points.shape[1] for s in sources)
    pts = np.concatenate([s.points[:, :n] for s in sources])
    parts = None if first.parts is None else np.concatenate([s.parts[:, :n] for s in sources])
    out = ArraySource.__new__(ArraySource)
    out.points, out.labels, out.parts = pts, np.concatenate([s.labels for s in sources]), parts
    out.class_names, out.part_names, out.category_parts = first.class_names, first.part_names, first.category_parts
    out.points_per_shape, out.description, out.up_axis = n, description, first.up_axis
    return out


def subset_source(source: ArraySource, index: np.ndarray, description: str) -> ArraySource:
    """The clouds `index` of a source (already normalised: not normalised again)."""
    out = ArraySource.__new__(ArraySource)
    out.points, out.labels = source.points[index], source.labels[index]
    out.parts = None if source.parts is None else source.parts[index]
    out.class_names, out.part_names, out.category_parts = source.class_names, source.part_names, source.category_parts
    out.points_per_shape, out.description, out.up_axis = source.points_per_shape, description, source.up_axis
    return out


# ----------------------------------------------------------------------------- dataset

def subsample_indices(n: int, num_points: int, rng: np.random.Generator) -> np.ndarray:
    """`num_points` distinct indices out of n; with replacement (padding) only when n < num_points."""
    if n >= num_points:
        return np.sort(rng.permutation(n)[:num_points])
    extra = rng.choice(n, num_points - n, replace=True)
    return np.concatenate([np.arange(n), extra])


class PointCloudDataset(Dataset):
    """A torch Dataset of dicts {"points": (N, 3) float32, "label": int64, "part": (N,) int64, "index": int}.

    num_points: subsample (or pad by repeating points) every cloud to this many points. The
    choice is seeded by (seed, index) so evaluation data is identical run to run; with
    `resample=True` (the default for the train split) it also depends on the epoch given to
    `set_epoch`, so training sees fresh subsets each epoch yet repeats exactly.
    transform: called on the sample dict (see foundry.data.transforms; they accept dicts).
    """

    def __init__(self, source: PointSource, num_points: int | None = None, transform: Callable | None = None,
                 *, seed: int = 0, resample: bool = False, name: str = ""):
        if num_points is not None and int(num_points) <= 0:
            raise FoundryInputError(f"num_points must be a positive integer, got {num_points}")
        self.source = source
        self.num_points = None if num_points is None else int(num_points)
        self.transform = transform
        self.seed = int(seed)
        self.resample = bool(resample)
        self.epoch = 0
        self.name = name or source.description

    # attributes of the contract
    @property
    def class_names(self) -> list[str]:
        return self.source.class_names

    @property
    def num_classes(self) -> int:
        return len(self.source.class_names)

    @property
    def part_names(self) -> list[str] | None:
        return self.source.part_names

    @property
    def num_parts(self) -> int | None:
        return None if self.source.part_names is None else len(self.source.part_names)

    @property
    def category_parts(self) -> dict[int, list[int]] | None:
        return self.source.category_parts

    @property
    def has_parts(self) -> bool:
        return self.source.has_parts

    @property
    def up_axis(self) -> int | None:
        """The vertical axis (2 = z for the bundled data and synthetic, 1 = y for ShapeNet/ScanObjectNN),
        None when the layout does not say (a ModelNet h5 folder); use it as augment_batch(up_axis=...)."""
        return self.source.up_axis

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.source)

    def _rng(self, index: int) -> np.random.Generator:
        key = [self.seed, self.epoch, index] if self.resample else [self.seed, index]
        return np.random.default_rng(key)

    def get_numpy(self, index: int):
        """(points, label, parts) of one cloud after subsampling, as numpy, without the transform."""
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for a data set of {len(self)} clouds")
        pts, label, parts = self.source.get(index)
        if self.num_points is not None and len(pts) != self.num_points:
            idx = subsample_indices(len(pts), self.num_points, self._rng(index))
            pts = pts[idx]
            parts = None if parts is None else parts[idx]
        return pts, label, parts

    def __getitem__(self, index: int) -> dict:
        pts, label, parts = self.get_numpy(int(index))
        # copies: a transform may work in place, and the source arrays may be shared (cached)
        sample = {"points": torch.from_numpy(np.array(pts, dtype=np.float32)),
                  "label": torch.tensor(label, dtype=torch.int64), "index": int(index)}
        if parts is not None:
            sample["part"] = torch.from_numpy(np.array(parts, dtype=np.int64))
        if self.transform is not None:
            sample = self.transform(sample)
        return sample

    def __repr__(self) -> str:
        n = self.num_points or self.source.points_per_shape or "varying"
        parts = f", {self.num_parts} parts" if self.has_parts else ""
        return f"PointCloudDataset({self.name}: {len(self)} clouds x {n} points, {self.num_classes} classes{parts})"


class ConcatSource(PointSource):
    """Splits joined end to end (e.g. train + val of a lazily read layout)."""

    def __init__(self, sources: list[PointSource]):
        self.sources = sources
        first = sources[0]
        self.class_names, self.part_names, self.category_parts = first.class_names, first.part_names, first.category_parts
        sizes = {s.points_per_shape for s in sources}
        self.points_per_shape = sizes.pop() if len(sizes) == 1 else None
        self.default_num_points = getattr(first, "default_num_points", None)
        self.up_axis = first.up_axis
        self.offsets = np.cumsum([0] + [len(s) for s in sources])
        self.description = " + ".join(s.description for s in sources)

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def get(self, index: int):
        k = int(np.searchsorted(self.offsets, index, side="right") - 1)
        return self.sources[k].get(index - int(self.offsets[k]))
