"""`open_dataset` / `load_arrays`: one entry point for bundled, synthetic and user data folders."""
from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Callable

import numpy as np

from ..validation import FoundryInputError
from .base import SPLITS, ArraySource, PointCloudDataset, PointSource, concat_sources
from .base import ConcatSource
from .modelnet import OWN_VAL_LIST, is_modelnet_h5, load_modelnet_h5
from .scanobjectnn import is_scanobjectnn, load_scanobjectnn
from .shapenet55 import ShapeNet55Source, is_shapenet55
from .shapenetpart import ShapeNetPartTextSource, is_shapenetpart_h5, is_shapenetpart_txt, load_shapenetpart_h5
from .synthetic import SyntheticSource

ASSETS_DIR = Path(__file__).resolve().parent.parent / "assets" / "data"
BUNDLED = {"modelnet10": "modelnet_h5", "kicadpart": "shapenetpart_h5"}
LAYOUTS = ("modelnet_h5", "shapenet55", "scanobjectnn", "shapenetpart_h5", "shapenetpart_txt")
DEFAULT_SYNTHETIC = 1000


def bundled_path(name: str) -> Path:
    """Folder of a data set shipped inside the package ('modelnet10', 'kicadpart')."""
    if name not in BUNDLED:
        raise FoundryInputError(f"no bundled data set {name!r}; bundled: {sorted(BUNDLED)}")
    path = ASSETS_DIR / name
    if not path.is_dir():
        raise FoundryInputError(f"the bundled data set {name!r} is missing from this install ({path}); "
                                "reinstall foundry, or rebuild it with `python scripts/bundle_data.py`")
    return path


def detect_layout(folder: str | Path) -> str:
    """Name the layout of a data folder (one of LAYOUTS) or raise FoundryInputError saying what was expected."""

    folder = Path(folder)
    if not folder.exists():
        raise FoundryInputError(f"data folder {folder} does not exist; check the path (or use a bundled name: "
                                f"{sorted(BUNDLED)}, or 'synthetic:N')")
    if not folder.is_dir():
        raise FoundryInputError(f"{folder} is a file; give the folder that holds the data set and its split lists")
    for layout, test in (("shapenetpart_txt", is_shapenetpart_txt), ("shapenetpart_h5", is_shapenetpart_h5),
                         ("scanobjectnn", is_scanobjectnn), ("shapenet55", is_shapenet55),
                         ("modelnet_h5", is_modelnet_h5)):
        if test(folder):
            return layout
    raise FoundryInputError(
        f"cannot tell the layout of {folder}. Expected one of: ModelNet h5 (train_files.txt, test_files.txt, "
        "shape_names.txt, ply_data_*.h5); ShapeNet-55 (shapenet_pc/*.npy + train.txt/test.txt); ScanObjectNN "
        "(main_split/ or main_split_nobg/ with training_objectdataset*.h5); ShapeNetPart h5 "
        "(train_hdf5_file_list.txt, all_object_categories.txt, ply_data_*.h5 with pid); ShapeNetPart text "
        "(synsetoffset2category.txt, train_test_split/, <synset>/<id>.txt). Run `foundry check-data` on it.")


def _parse_spec(spec) -> tuple[str, object]:
    """('bundled', name) | ('synthetic', n) | ('folder', (path, variant))."""
    s = str(spec)
    if s in BUNDLED:
        return "bundled", s
    if s == "synthetic" or s.startswith("synthetic:"):
        n = s.split(":", 1)[1] if ":" in s else str(DEFAULT_SYNTHETIC)
        try:
            return "synthetic", int(n)
        except ValueError:
            raise FoundryInputError(f"bad synthetic spec {s!r}; write 'synthetic' or 'synthetic:N' with N a number "
                                    "of shapes, e.g. 'synthetic:5000'") from None
    variant = None
    if "#" in s and not Path(s).exists():
        s, variant = s.rsplit("#", 1)
    return "folder", (Path(s).expanduser(), variant)


def open_source(spec, split: str = "train", *, seed: int = 0, variant: str | None = None,
                synthetic_points: int = 1024) -> PointSource:
    """The PointSource (normalised clouds, no subsampling) behind a spec."""
    if split not in SPLITS:
        raise FoundryInputError(f"unknown split {split!r}; use one of {list(SPLITS)}")
    kind, value = _parse_spec(spec)
    if kind == "synthetic":
        return SyntheticSource(value, split, num_points=synthetic_points, seed=seed)
    if kind == "bundled":
        src = load_layout(BUNDLED[value], bundled_path(value), split, variant=variant)
        src.up_axis = 2  # both bundles are z-up
        return src
    folder, v = value
    return load_layout(detect_layout(folder), folder, split, variant=variant or v)


_CACHE: "OrderedDict[tuple, PointSource]" = OrderedDict()
_CACHE_SIZE = 4


def _stamp(folder: Path) -> tuple:
    """Names, sizes and mtimes of the files a cached split depends on (h5 files and lists)."""
    out = []
    for d in (folder, folder / "main_split", folder / "main_split_nobg"):
        if d.is_dir():
            for p in sorted(d.iterdir()):
                if p.is_file():
                    st = p.stat()
                    out.append((str(p), st.st_size, st.st_mtime_ns))
    return tuple(out)


def load_layout(layout: str, folder: Path, split: str, *, variant: str | None = None) -> PointSource:
    """Load one split; the in-memory (h5) layouts are cached per process while their files are unchanged."""
    if layout not in ("modelnet_h5", "scanobjectnn", "shapenetpart_h5"):
        return _load_layout(layout, folder, split, variant=variant)
    key = (layout, str(Path(folder).resolve()), split, variant, _stamp(Path(folder)))
    if key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key]
    src = _load_layout(layout, folder, split, variant=variant)
    _CACHE[key] = src
    while len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return src


def _load_layout(layout: str, folder: Path, split: str, *, variant: str | None = None) -> PointSource:
    if split == "trainval" and not (layout == "modelnet_h5" and not (Path(folder) / OWN_VAL_LIST).is_file()):
        parts = [load_layout(layout, folder, s, variant=variant) for s in ("train", "val")]
        if all(isinstance(p, ArraySource) for p in parts):
            return concat_sources(parts, f"{parts[0].description} + val")

        return ConcatSource(parts)
    if layout == "modelnet_h5":
        return load_modelnet_h5(folder, split)
    if layout == "shapenet55":
        return ShapeNet55Source(folder, split)
    if layout == "scanobjectnn":
        return load_scanobjectnn(folder, split, variant=variant)
    if layout == "shapenetpart_h5":
        return load_shapenetpart_h5(folder, split)
    if layout == "shapenetpart_txt":
        return ShapeNetPartTextSource(folder, split)
    raise FoundryInputError(f"unknown layout {layout!r}; one of {LAYOUTS}")


def open_dataset(spec, split: str = "train", num_points: int | None = None, transform: Callable | None = None, *,
                 seed: int = 0, resample: bool | None = None, variant: str | None = None) -> PointCloudDataset:
    """A torch Dataset of normalised clouds.

    spec: "modelnet10" / "kicadpart" (bundled in the package), "synthetic" / "synthetic:N"
        (procedural, seeded), or a data folder whose layout is detected (ModelNet h5, ShapeNet-55,
        ScanObjectNN, ShapeNetPart h5 or text). For ScanObjectNN pick the variant with
        `variant=` ("obj_bg", "obj_only", "pb_t50_rs") or a "folder#pb_t50_rs" suffix.
    split: "train", "val", "test" or "trainval" (where the data set has a val split).
    num_points: subsample every cloud to this many points (seeded by `seed` and the index; see
        PointCloudDataset); None keeps the stored points (synthetic: 1024).
    resample: draw a new subset every epoch (`set_epoch`); default True for the train split.
    """
    source = open_source(spec, split, seed=seed, variant=variant, synthetic_points=num_points or 1024)
    if resample is None:
        resample = split in ("train", "trainval")
    return PointCloudDataset(source, num_points, transform, seed=seed, resample=resample, name=f"{spec} [{split}]")


def load_arrays(spec, split: str = "train", num_points: int | None = None, *, seed: int = 0,
                variant: str | None = None) -> dict:
    """The whole split as numpy arrays (deterministic, no augmentation):
    "points" (M, N, 3) float32, "labels" (M,) int64, "parts" (M, N) int64 when the data has part labels,
    and "class_names" (plus "part_names" and "category_parts" for part data)."""
    source = open_source(spec, split, seed=seed, variant=variant, synthetic_points=num_points or 1024)
    out: dict = {"class_names": list(source.class_names)}
    if source.part_names is not None:
        out["part_names"] = list(source.part_names)
        out["category_parts"] = {int(k): list(v) for k, v in source.category_parts.items()}
    if isinstance(source, ArraySource) and (num_points is None or num_points == source.points_per_shape):
        out["points"], out["labels"] = source.points.copy(), source.labels.copy()  # the source may be cached
        if source.parts is not None:
            out["parts"] = source.parts.copy()
        return out
    ds = PointCloudDataset(source, num_points, None, seed=seed, resample=False)
    items = [ds.get_numpy(i) for i in range(len(ds))]
    sizes = {len(p) for p, _, _ in items}
    if len(sizes) > 1 and num_points is None and getattr(source, "default_num_points", None):
        ds.num_points = source.default_num_points  # e.g. ShapeNetPart text: shapes of ~2-3k points -> 2048
        items = [ds.get_numpy(i) for i in range(len(ds))]
        sizes = {len(p) for p, _, _ in items}
    if len(sizes) > 1:
        raise FoundryInputError(f"the clouds of {spec} [{split}] differ in size ({min(sizes)}..{max(sizes)} points); "
                                "pass num_points to load them as one array")
    out["points"] = np.stack([p for p, _, _ in items]).astype(np.float32) if items else np.zeros((0, 0, 3), np.float32)
    out["labels"] = np.array([lab for _, lab, _ in items], dtype=np.int64)
    if source.part_names is not None:
        out["parts"] = np.stack([q for _, _, q in items]).astype(np.int64) if items else np.zeros((0, 0), np.int64)
    return out
