"""`check_data(path)`: look at a data folder and say precisely what is missing or malformed.

Unlike the loaders, which stop at the first problem, the checker keeps going and collects every
finding (error / warning / info) with the file it concerns and the fix, plus per-split counts.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..validation import FoundryInputError
from .base import resolve_listed
from .datasets import BUNDLED, _parse_spec, bundled_path, detect_layout
from .scanobjectnn import CLASS_NAMES, VARIANTS, variant_files
from .shapenet55 import SYNSET_NAMES, _roots, synset_of
from .shapenetpart import TXT_LISTS, _standard_category_parts, category_parts_for, parse_table

LAYOUT_TITLES = {"modelnet_h5": "ModelNet h5 (modelnet40_ply_hdf5_2048)", "shapenet55": "ShapeNet-55 (Point-BERT)",
                 "scanobjectnn": "ScanObjectNN h5", "shapenetpart_h5": "ShapeNetPart h5 (PointNet)",
                 "shapenetpart_txt": "ShapeNetPart text (v0_normal)", "synthetic": "synthetic (procedural)"}


@dataclass
class Finding:
    level: str  # "error" | "warning" | "info"
    file: str
    message: str
    fix: str = ""

    def format(self) -> str:
        fix = f"\n         fix: {self.fix}" if self.fix else ""
        return f"{self.level.upper():7s} {self.file}: {self.message}{fix}"


@dataclass
class DataReport:
    path: str
    layout: str | None = None
    findings: list = field(default_factory=list)
    splits: dict = field(default_factory=dict)  # split -> {"shapes", "points", "classes"}

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.level == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.level == "warning"]

    @property
    def ok(self) -> bool:
        return not self.errors

    def add(self, level, file, message, fix=""):
        self.findings.append(Finding(level, str(file), message, fix))

    def to_dict(self) -> dict:
        return {"path": self.path, "layout": self.layout, "ok": self.ok, "splits": self.splits,
                "findings": [asdict(f) for f in self.findings]}

    def format(self) -> str:
        lines = [f"checking {self.path}", f"  layout: {LAYOUT_TITLES.get(self.layout, self.layout or 'unknown')}"]
        for split, s in self.splits.items():
            lines.append(f"  {split:8s} {s.get('shapes', 0)} shapes x {s.get('points', '?')} points"
                         + (f", {s['classes']} classes present" if "classes" in s else ""))
        order = {"error": 0, "warning": 1, "info": 2}
        for f in sorted(self.findings, key=lambda f: order[f.level]):
            lines.append(f.format())
        n_e, n_w = len(self.errors), len(self.warnings)
        lines.append("OK: no problems found" if not n_e and not n_w else
                     f"{'FAILED' if n_e else 'OK with warnings'}: {n_e} error(s), {n_w} warning(s)")
        return "\n".join(lines)


# ----------------------------------------------------------------------------- helpers

def _rows(idx: np.ndarray, limit: int = 10) -> str:
    idx = np.asarray(idx).ravel()
    more = f" (+{len(idx) - limit} more)" if len(idx) > limit else ""
    return f"{idx[:limit].tolist()}{more}"


def _names(path: Path, rep: DataReport, what: str, required: bool = True, missing_level: str = "error",
           consequence: str = "") -> list[str] | None:
    if not path.is_file():
        if required:
            rep.add(missing_level, path, f"missing {what}{consequence}",
                    f"add {path.name} (one name per line, line i = label i)")
        return None
    lines = [ln.split()[0] for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    if not lines:
        rep.add("error", path, f"{what} is empty", f"write one name per line into {path.name}")
        return None
    if len(set(lines)) != len(lines):
        rep.add("warning", path, f"{what} has duplicate names", "make every line unique")
    return lines


def _check_clouds(rep: DataReport, where, pts: np.ndarray) -> bool:
    """Shape, emptiness, NaN/Inf and degenerate clouds of an (M, N, C) array; False if unusable."""
    if pts.ndim != 3 or pts.shape[-1] < 3:
        rep.add("error", where, f"'data' has shape {tuple(pts.shape)}, expected (shapes, points, 3)",
                "store xyz per point as (M, N, 3)")
        return False
    if pts.shape[0] == 0 or pts.shape[1] == 0:
        rep.add("error", where, f"'data' is empty, shape {tuple(pts.shape)}", "rebuild this file")
        return False
    xyz = pts[..., :3].astype(np.float32)
    bad = np.nonzero(~np.isfinite(xyz).all(axis=(1, 2)))[0]
    if len(bad):
        rep.add("error", where, f"{len(bad)} cloud(s) contain NaN/Inf coordinates: rows {_rows(bad)}",
                "drop or re-export those rows")
    finite = np.where(np.isfinite(xyz), xyz, 0)
    with np.errstate(over="ignore", invalid="ignore"):  # damaged values near the float32 limit
        spread = np.ptp(finite.astype(np.float64), axis=1).max(axis=-1)
    flat = np.nonzero(spread == 0)[0]
    if len(flat):
        rep.add("warning", where, f"{len(flat)} cloud(s) have all points at one spot: rows {_rows(flat)}",
                "drop those rows; they cannot be normalised")
    _check_outliers(rep, where, finite)
    _check_padding(rep, where, finite)
    return True


# a point this many times farther from its cloud's centre than the cloud's median point is not
# part of the shape (a flipped bit, an unconverted unit); real scans stay far below this
OUTLIER_RATIO = 50.0
# clouds whose radius differs this much from the file's median radius: mixed units or a damaged cloud
SCALE_RATIO = 20.0


def _check_outliers(rep: DataReport, where, xyz: np.ndarray) -> None:
    """Points far outside their own cloud (errors, naming cloud, point and value) and clouds
    whose scale is far from the rest of the file (warnings)."""
    xyz64 = xyz.astype(np.float64)  # damaged values near the float32 limit must not overflow here
    centred = xyz64 - np.median(xyz64, axis=1, keepdims=True)
    dist = np.sqrt((centred ** 2).sum(-1))  # (M, N)
    typical = np.median(dist, axis=1)  # (M,)
    worst = dist.max(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(typical > 0, worst / typical, 0.0)
    bad = np.nonzero(ratio > OUTLIER_RATIO)[0]
    if len(bad):
        b = int(bad[np.argmax(ratio[bad])])
        j = int(dist[b].argmax())
        rep.add("error", where, f"{len(bad)} cloud(s) have outlier points far outside the shape: rows {_rows(bad)} "
                f"(e.g. cloud {b}, point {j} = {[float(f'{v:.4g}') for v in xyz[b, j]]}, {ratio[b]:.3g}x the cloud's "
                "median distance from its centre)", "the file is probably damaged: re-download it, or drop those rows")
    radius = np.max(np.abs(xyz), axis=(1, 2))
    scale = np.median(radius)
    if scale > 0 and len(radius) > 1:
        off = np.nonzero((radius > SCALE_RATIO * scale) | (radius < scale / SCALE_RATIO))[0]
        off = np.setdiff1d(off, bad)
        if len(off):
            rep.add("warning", where, f"{len(off)} cloud(s) have a scale far from the file's median extent "
                    f"{scale:.3g}: rows {_rows(off)} (extents {[float(f'{v:.4g}') for v in radius[off[:5]]]})",
                    "check their units; loaders normalise each cloud, but mixed units usually mean a conversion error")


def _check_padding(rep: DataReport, where, xyz: np.ndarray) -> None:
    """Clouds made of few distinct points repeated (a short scan padded up to the file's count)."""
    m, n = xyz.shape[:2]
    if n < 8:
        return
    keys = np.ascontiguousarray(xyz).view(np.dtype((np.void, 12))).reshape(m, n)
    ordered = np.sort(keys, axis=1)
    distinct = 1 + (ordered[:, 1:] != ordered[:, :-1]).sum(axis=1)
    few = np.nonzero(distinct < n // 2)[0]
    if len(few):
        b = int(few[np.argmin(distinct[few])])
        rep.add("warning", where, f"{len(few)} cloud(s) repeat points to fill the {n}-point rows: rows {_rows(few)} "
                f"(e.g. cloud {b} has only {int(distinct[b])} distinct points)",
                "such clouds were padded from far fewer points; drop them or re-sample them from denser scans")


def _check_labels(rep, where, lab: np.ndarray, rows: int | None, num_classes: int | None, names_file: str,
                  key: str = "label") -> np.ndarray | None:
    lab = np.asarray(lab)
    if lab.ndim == 2 and lab.shape[1] == 1:
        lab = lab[:, 0]
    if lab.ndim != 1:
        rep.add("error", where, f"{key!r} has shape {tuple(lab.shape)}, expected (shapes,) or (shapes, 1)",
                "store one class label per shape")
        return None
    if rows is not None and len(lab) != rows:
        rep.add("error", where, f"mismatched counts: 'data' has {rows} rows but {key!r} has {len(lab)}",
                "rebuild the file so every shape has one label")
    if not np.issubdtype(lab.dtype, np.integer):
        if np.issubdtype(lab.dtype, np.floating) and np.all(np.isfinite(lab)) and np.all(lab == np.round(lab)):
            rep.add("info", where, f"{key!r} is stored as {lab.dtype}; read as integers")
        else:
            rep.add("error", where, f"{key!r} holds non-integer values ({lab.dtype})", "store integer class ids")
            return None
    lab = lab.astype(np.int64)
    if num_classes is not None and len(lab):
        out = np.nonzero((lab < 0) | (lab >= num_classes))[0]
        if len(out):
            rep.add("error", where, f"{len(out)} label(s) out of range 0..{num_classes - 1} of {names_file} "
                    f"(values {sorted(set(lab[out].tolist()))[:10]}, rows {_rows(out)})",
                    f"fix the labels or add the missing class names to {names_file}")
    return lab


def _open(rep, path: Path):
    import h5py

    if not path.is_file():
        rep.add("error", path, "file is missing", "restore it or remove it from the split list")
        return None
    if path.stat().st_size == 0:
        rep.add("error", path, "file is empty (0 bytes)", "re-download or rebuild it")
        return None
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        rep.add("error", path, f"not a readable HDF5 file ({exc})", "the download is probably truncated: re-download it")
        return None


def _read(rep, path, f, key):
    try:
        return f[key][()]
    except (OSError, ValueError, KeyError) as exc:
        rep.add("error", path, f"dataset {key!r} cannot be read ({exc})", "the file is corrupt: re-download it")
        return None


def _check_h5(rep, path: Path, num_classes, names_file, *, need_pid=False, num_parts=None, category_parts=None,
              optional=()) -> tuple[int, int, np.ndarray | None]:
    """Check one h5 file of clouds; returns (rows, points, labels)."""
    f = _open(rep, path)
    if f is None:
        return 0, 0, None
    with f:
        keys = list(f.keys())
        pid_key = "seg" if need_pid and "pid" not in f and "seg" in f else "pid"
        need = ["data", "label"] + ([pid_key] if need_pid else [])
        missing = [k for k in need if k not in f]
        if missing:
            rep.add("error", path, f"h5 without {missing} (it has {keys})",
                    f"this layout needs datasets {need} in every h5 file; is this the right file?")
        for k in optional:
            if k not in f:
                rep.add("warning", path, f"no {k!r} dataset (optional here)")
        pts = _read(rep, path, f, "data") if "data" in f else None
        lab = _read(rep, path, f, "label") if "label" in f else None
        pid = _read(rep, path, f, pid_key) if need_pid and pid_key in f else None
    rows = npts = 0
    if pts is not None and _check_clouds(rep, path, pts):
        rows, npts = pts.shape[0], pts.shape[1]
    labels = None
    if lab is not None:
        labels = _check_labels(rep, path, lab, rows or None, num_classes, names_file)
    if pid is not None and rows:
        if pid.shape != (rows, npts):
            rep.add("error", path, f"'pid' has shape {tuple(pid.shape)}, expected {(rows, npts)} (one part per point)",
                    "rebuild the file with one part id per point")
        elif num_parts is not None:
            pid = pid.astype(np.int64)
            bad = np.nonzero(((pid < 0) | (pid >= num_parts)).any(1))[0]
            if len(bad):
                rep.add("error", path, f"part ids out of range 0..{num_parts - 1} in rows {_rows(bad)}",
                        "fix 'pid' or the part-name files")
            elif category_parts is not None and labels is not None and len(labels) == rows:
                wrong = [i for i in range(rows) if int(labels[i]) in category_parts
                         and not np.isin(pid[i], category_parts[int(labels[i])]).all()]
                if wrong:
                    rep.add("error", path, f"{len(wrong)} shape(s) have part ids that do not belong to their category "
                            f"(category_parts): rows {_rows(np.array(wrong))}", "fix 'pid' or category_parts.json")
    return rows, npts, labels


def _split_list(rep, folder: Path, split: str, list_name: str, glob: str, required: bool) -> list[Path]:
    lst = folder / list_name
    if not lst.is_file():
        found = sorted(folder.glob(glob))
        if found:
            rep.add("warning", lst, f"missing split list; the {split} files were found by name ({len(found)} files)",
                    f"add {list_name} listing them, one per line")
            return found
        if required:
            rep.add("error", lst, f"missing {split} split list", f"add {list_name} listing the {split} h5 files")
        return []
    entries = [ln.strip() for ln in lst.read_text(errors="replace").splitlines() if ln.strip()]
    if not entries:
        rep.add("error", lst, "split list is empty", f"list the {split} h5 files, one per line")
    out = []
    for e in entries:
        p = resolve_listed(folder, e)
        if p is None:
            rep.add("error", lst, f"lists {e!r}, but that file is absent from {folder}",
                    "restore the file or remove the line")
        else:
            out.append(p)
    return out


def _summarise(rep, split, counts: list[tuple[int, int, np.ndarray | None]]):
    rows = sum(c[0] for c in counts)
    npts = sorted({c[1] for c in counts if c[0]})
    labels = [c[2] for c in counts if c[2] is not None]
    entry = {"shapes": int(rows), "points": npts[0] if len(npts) == 1 else (npts or "?")}
    if labels:
        entry["classes"] = int(len(np.unique(np.concatenate(labels))))
    rep.splits[split] = entry
    if len(npts) > 1:
        rep.add("warning", split, f"the {split} files hold different point counts {npts}",
                "rebuild them with one count (or always load with num_points)")


def _unlisted(rep, folder: Path, used: set[Path], pattern: str = "*.h5"):
    for p in sorted(folder.glob(pattern)):
        if p.resolve() not in used:
            rep.add("warning", p, "h5 file is not in any split list", "add it to a split list or move it away")


# ----------------------------------------------------------------------------- layouts

def _check_modelnet(rep, folder: Path):
    names = _names(folder / "shape_names.txt", rep, "class names (shape_names.txt)", missing_level="warning",
                   consequence="; classes will be numbered and labels cannot be checked against the names")
    used = set()
    for split, lst in (("train", "train_files.txt"), ("test", "test_files.txt")):
        files = _split_list(rep, folder, split, lst, f"ply_data_{split}*.h5", required=True)
        counts = [_check_h5(rep, p, len(names) if names else None, "shape_names.txt") for p in files]
        used |= {p.resolve() for p in files}
        _summarise(rep, split, counts)
    _unlisted(rep, folder, used)


def _load_json(rep, path: Path):
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        rep.add("error", path, f"invalid JSON ({exc})", "repair or re-download the file")
        return None


def _part_tables(rep, folder: Path, names: list[str] | None, keys2: list[str]):
    """(category_parts by index, num_parts) from the part files, with findings on the way."""

    if names is None:
        return None, None
    try:
        if not any((folder / f).is_file() for f in ("category_parts.json", "overallid_to_catid_partid.json")) \
                and _standard_category_parts(names) is None:
            rep.add("warning", folder, "no category_parts.json or overallid_to_catid_partid.json and the categories "
                    "are not the 16 ShapeNetPart ones: parts per category will be inferred from the data",
                    "add category_parts.json ({\"<category>\": [global part ids]})")
            return None, None
        cp = category_parts_for(folder, names, keys2)
    except FoundryInputError as exc:
        rep.add("error", folder, str(exc))
        return None, None
    n_parts = max((max(v) for v in cp.values() if v), default=-1) + 1
    pn = folder / "part_names.txt"
    if pn.is_file():
        lines = [ln for ln in pn.read_text().splitlines() if ln.strip()]
        if len(lines) != n_parts:
            rep.add("warning", pn, f"names {len(lines)} parts but the category tables define {n_parts}",
                    "write one line per global part id")
    return cp, n_parts


def _category_file(rep, path: Path, what: str):
    if not path.is_file():
        rep.add("error", path, f"missing {what}", f"add {path.name}: one category per line, line i = category i")
        return None, []
    rows = [ln.split() for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    if not rows:
        rep.add("error", path, f"{what} is empty", "list one category per line")
        return None, []
    return [r[0] for r in rows], [r[1] if len(r) > 1 else "" for r in rows]


def _check_shapenetpart_h5(rep, folder: Path):
    names, keys2 = _category_file(rep, folder / "all_object_categories.txt", "category list")
    cp, n_parts = _part_tables(rep, folder, names, keys2)
    used = set()
    for split in ("train", "val", "test"):
        files = _split_list(rep, folder, split, f"{split}_hdf5_file_list.txt", f"ply_data_{split}*.h5",
                            required=split != "val")
        counts = [_check_h5(rep, p, len(names) if names else None, "all_object_categories.txt", need_pid=True,
                            num_parts=n_parts, category_parts=cp) for p in files]
        used |= {p.resolve() for p in files}
        if files or split != "val":
            _summarise(rep, split, counts)
    _unlisted(rep, folder, used)


def _check_scanobjectnn(rep, folder: Path):
    found = False
    for v in VARIANTS:
        files = variant_files(folder, v)
        if files is None or not any(f.is_file() for f in files):
            continue
        found = True
        for split, path in zip(("train", "test"), files):
            if not path.is_file():
                rep.add("error", path, f"missing: variant {v} has its other split file but not this one",
                        "restore the file from the ScanObjectNN download")
                continue
            c = _check_h5(rep, path, len(CLASS_NAMES), "ScanObjectNN's 15 classes", optional=("mask",))
            _summarise(rep, f"{v}/{split}", [c])
    if not found:
        rep.add("error", folder, "no ScanObjectNN h5 files: expected main_split/training_objectdataset[_augmentedrot_"
                "scale75].h5 and test_... (or main_split_nobg/...)", "unpack h5_files.zip here")


def _sample(items: list, max_files: int | None) -> list:
    if max_files is None or len(items) <= max_files:
        return items
    idx = np.random.default_rng(0).choice(len(items), max_files, replace=False)
    return [items[i] for i in sorted(idx)]


def _check_shapenet55(rep, folder: Path, max_files: int | None):
    roots = _roots(folder)
    if roots is None:
        rep.add("error", folder, "shapenet_pc/ is here but ShapeNet-55/train.txt and test.txt are not",
                "put the ShapeNet-55 split lists (train.txt, test.txt) in ShapeNet-55/ next to shapenet_pc/")
        return
    lists, pc = roots
    seen: dict[str, set] = {}
    for split in ("train", "test"):
        lst = lists / f"{split}.txt"
        if not lst.is_file():
            rep.add("error", lst, f"missing {split} split list", f"add {split}.txt with one '<synset>-<id>.npy' per line")
            continue
        entries = [ln.strip() for ln in lst.read_text(errors="replace").splitlines() if ln.strip()]
        entries = [e if e.endswith(".npy") else e + ".npy" for e in entries]
        if not entries:
            rep.add("error", lst, "split list is empty", "list one '<synset>-<id>.npy' per line")
        seen[split] = set(entries)
        missing = [e for e in entries if not (pc / e).is_file()]
        if missing:
            rep.add("error", lst, f"{len(missing)} listed file(s) are absent from {pc}: {missing[:5]}"
                    + (" ..." if len(missing) > 5 else ""), "restore them or remove their lines")
        unknown = sorted({synset_of(e) for e in entries} - set(SYNSET_NAMES))
        if unknown:
            rep.add("info", lst, f"synset ids not among the 55 ShapeNetCore categories: {unknown[:10]} "
                    "(they get their id as class name)")
        present = [pc / e for e in entries if (pc / e).is_file()]
        sizes = set()
        for p in _sample(present, max_files):
            if p.stat().st_size == 0:
                rep.add("error", p, "file is empty (0 bytes)", "re-extract it")
                continue
            try:
                arr = np.load(p, allow_pickle=False)
            except (OSError, ValueError, EOFError) as exc:
                rep.add("error", p, f"not a readable .npy array ({exc})", "re-extract it")
                continue
            if arr.ndim != 2 or arr.shape[1] < 3 or arr.shape[0] == 0:
                rep.add("error", p, f"array has shape {arr.shape}, expected (points, 3)", "re-extract it")
                continue
            sizes.add(arr.shape[0])
            if not np.isfinite(arr[:, :3]).all():
                rep.add("error", p, "contains NaN/Inf coordinates", "drop or repair this shape")
        entry = {"shapes": len(entries), "points": sorted(sizes)[0] if len(sizes) == 1 else (sorted(sizes) or "?"),
                 "classes": len({synset_of(e) for e in entries})}
        rep.splits[split] = entry
        if max_files is not None and len(present) > max_files:
            rep.add("info", lst, f"opened a seeded sample of {max_files} of {len(present)} files (all were checked "
                    "to exist); use --full to open every file")
    if "train" in seen and "test" in seen and seen["train"] & seen["test"]:
        both = sorted(seen["train"] & seen["test"])
        rep.add("error", lists, f"{len(both)} shape(s) are in both train.txt and test.txt: {both[:5]}",
                "a shape must be in one split only")


def _check_shapenetpart_txt(rep, folder: Path, max_files: int | None):
    names, synsets = _category_file(rep, folder / "synsetoffset2category.txt", "synsetoffset2category.txt")
    cp, n_parts = _part_tables(rep, folder, names, synsets)
    syn_index = {s: i for i, s in enumerate(synsets)}
    for split, rel in TXT_LISTS.items():
        lst = folder / rel
        if not lst.is_file():
            rep.add("error", lst, f"missing {split} split list",
                    "add train_test_split/shuffled_{train,val,test}_file_list.json (JSON lists of "
                    "'shape_data/<synset>/<id>')")
            continue
        entries = _load_json(rep, lst)
        if entries is None:
            continue
        if not isinstance(entries, list) or not entries:
            rep.add("error", lst, "must be a non-empty JSON list of 'shape_data/<synset>/<id>' strings")
            continue
        files, labels, missing = [], [], []
        for e in entries:
            bits = str(e).replace("\\", "/").split("/")
            if len(bits) < 2 or bits[-2] not in syn_index:
                rep.add("error", lst, f"entry {e!r} names no synset of synsetoffset2category.txt",
                        "fix the entry or add its synset")
                continue
            p = folder / bits[-2] / f"{bits[-1]}.txt"
            (files if p.is_file() else missing).append(p)
            labels.append(syn_index[bits[-2]])
        if missing:
            rep.add("error", lst, f"{len(missing)} listed shape file(s) are absent, e.g. "
                    f"{[str(m.relative_to(folder)) for m in missing[:5]]}", "restore them or remove their entries")
        sizes = set()
        for p in _sample(files, max_files):
            try:
                arr = parse_table(p)
            except ValueError as exc:
                rep.add("error", p, f"not a table of numbers ({exc})", "rows must be 'x y z nx ny nz part'")
                continue
            if arr.shape[0] == 0:
                rep.add("error", p, "file is empty", "re-export this shape or remove it from the split lists")
                continue
            if arr.shape[1] != 7:
                rep.add("error" if arr.shape[1] < 4 else "warning", p,
                        f"rows have {arr.shape[1]} columns, expected 7 (x y z nx ny nz part)")
                if arr.shape[1] < 4:
                    continue
            sizes.add(arr.shape[0])
            if not np.isfinite(arr).all():
                rep.add("error", p, "contains NaN/Inf values", "repair or drop this shape")
            part = arr[:, -1].astype(np.int64)
            cat = syn_index[p.parent.name]
            if cp is not None and cat in cp and not np.isin(part, cp[cat]).all():
                rep.add("error", p, f"part ids {sorted(set(part.tolist()) - set(cp[cat]))[:10]} do not belong to "
                        f"category {names[cat]} (parts {cp[cat]})", "fix the last column")
        rep.splits[split] = {"shapes": len(entries), "points": f"{min(sizes)}..{max(sizes)}" if sizes else "?",
                             "classes": len(set(labels))}
        if max_files is not None and len(files) > max_files:
            rep.add("info", lst, f"opened a seeded sample of {max_files} of {len(files)} files; use --full for all")


def _check_sums(rep, folder: Path):
    """Compare files against a SHA256SUMS list when the folder has one (the bundles do)."""
    import hashlib

    sums = folder / "SHA256SUMS"
    if not sums.is_file():
        return
    for line in sums.read_text().splitlines():
        bits = line.split()
        if len(bits) != 2:
            continue
        digest, name = bits
        p = folder / name
        if not p.is_file():
            rep.add("error", p, "listed in SHA256SUMS but missing", "restore it (for a bundle: reinstall foundry)")
        elif hashlib.sha256(p.read_bytes()).hexdigest() != digest:
            rep.add("error", p, "checksum differs from SHA256SUMS: the file was changed or is corrupt",
                    "restore the original (for a bundle: reinstall, or rebuild with scripts/bundle_data.py)")


# ----------------------------------------------------------------------------- entry point

def check_data(path, *, max_files: int | None = 200) -> DataReport:
    """Inspect a data folder (or a bundled name such as "modelnet10") and return a DataReport.

    Every h5 file is read in full; for per-shape layouts (ShapeNet-55, ShapeNetPart text) all
    files are checked to exist and a seeded sample of `max_files` is opened (None = all).
    `report.ok` is False when there is any error; `report.format()` is the text for users.
    """

    kind, value = _parse_spec(path)
    if kind == "synthetic":
        rep = DataReport(str(path), "synthetic")
        rep.splits["any"] = {"shapes": value, "points": 1024}
        return rep
    if kind == "bundled":
        folder, layout = bundled_path(value), BUNDLED[value]
    else:
        folder, layout = value[0], None
    rep = DataReport(str(folder))
    if not folder.exists():
        rep.add("error", folder, "folder does not exist", "check the path")
        return rep
    if not folder.is_dir():
        rep.add("error", folder, "is a file, not a folder", "give the folder that holds the data and its split lists")
        return rep
    if not any(folder.iterdir()):
        rep.add("error", folder, "folder is empty", "unpack the data set here")
        return rep
    if layout is None:
        try:
            layout = detect_layout(folder)
        except FoundryInputError as exc:
            present = sorted(p.name + ("/" if p.is_dir() else "") for p in folder.iterdir())[:15]
            rep.add("error", folder, f"{str(exc).replace(' Run `foundry check-data` on it.', '')} Found here: {present}")
            return rep
    rep.layout = layout
    _check_sums(rep, folder)
    if layout == "modelnet_h5":
        _check_modelnet(rep, folder)
    elif layout == "shapenetpart_h5":
        _check_shapenetpart_h5(rep, folder)
    elif layout == "scanobjectnn":
        _check_scanobjectnn(rep, folder)
    elif layout == "shapenet55":
        _check_shapenet55(rep, folder, max_files)
    elif layout == "shapenetpart_txt":
        _check_shapenetpart_txt(rep, folder, max_files)
    return rep
