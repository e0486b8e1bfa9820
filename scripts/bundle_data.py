#!/usr/bin/env python
"""Rebuild the data sets bundled in the package (src/foundry/assets/data/{modelnet10,kicadpart})
from the full-precision copies in ../shared/data.

The bundles keep the source layouts (so the same loaders read them) and change only the storage:
points as float16 (gzip-9 + byte shuffle), KiCadPart subsampled to --kicad-points points per
shape (seeded, the same subset for a shape's points and part ids) and its normals dropped.
After writing, every file is reloaded and checked (counts, labels, parts, fp16 error), and a
README.md with provenance, licence, the measured error and checksums is written next to it.

    python scripts/bundle_data.py [--source ../shared/data] [--out src/foundry/assets/data]
"""
from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
from pathlib import Path

import h5py
import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))

from foundry.io import atomic_write  # noqa: E402

MODELNET_META = ["shape_names.txt", "train_files.txt", "test_files.txt", "ply_data_train_0_id2file.json",
                 "ply_data_test_0_id2file.json"]
KICAD_META = ["all_object_categories.txt", "category_parts.json", "part_names.txt", "overallid_to_catid_partid.json",
              "train_hdf5_file_list.txt", "val_hdf5_file_list.txt", "test_hdf5_file_list.txt",
              "ply_data_train0_id2file.json", "ply_data_val0_id2file.json", "ply_data_test0_id2file.json"]


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_h5(path: Path, arrays: dict[str, np.ndarray]) -> None:
    def write(tmp):
        with h5py.File(tmp, "w") as f:
            for k, v in arrays.items():
                chunks = (min(64, len(v)),) + v.shape[1:] if v.ndim > 1 else None
                f.create_dataset(k, data=v, compression="gzip", compression_opts=9, shuffle=True, chunks=chunks,
                                 track_times=False)  # no timestamps: rebuilds are byte-identical

    atomic_write(path, write)


def list_h5(folder: Path, list_file: str) -> list[str]:
    return [ln.strip() for ln in (folder / list_file).read_text().splitlines() if ln.strip()]


def bundle(src: Path, dst: Path, lists: list[str], keep_points: int | None, seed: int) -> dict:
    """Write every h5 of `lists` from src to dst as fp16; return per-file stats."""
    dst.mkdir(parents=True, exist_ok=True)
    stats = {}
    for lst in lists:
        for name in list_h5(src, lst):
            with h5py.File(src / name, "r") as f:
                data = f["data"][()]
                label = f["label"][()]
                pid = f["pid"][()] if "pid" in f else None
            if keep_points is not None and data.shape[1] > keep_points:
                idx = np.stack([np.sort(np.random.default_rng([seed, i]).choice(data.shape[1], keep_points,
                                                                               replace=False))
                                for i in range(len(data))])
                data = np.take_along_axis(data, idx[..., None], axis=1)
                pid = None if pid is None else np.take_along_axis(pid, idx, axis=1)
            out = {"data": data.astype(np.float16), "label": label}
            if pid is not None:
                out["pid"] = pid
            write_h5(dst / name, out)
            with h5py.File(dst / name, "r") as f:  # verify what was written
                back = f["data"][()].astype(np.float32)
                assert np.array_equal(f["label"][()], label), name
                if pid is not None:
                    assert np.array_equal(f["pid"][()], pid), name
            assert np.isfinite(back).all(), name
            err = float(np.abs(back - data.astype(np.float32)).max())
            radius = float(np.linalg.norm(back, axis=-1).max())
            stats[name] = {"rows": int(len(data)), "points": int(data.shape[1]), "fp16_max_abs_error": err,
                           "max_radius": radius}
            print(f"  {name}: {data.shape} max |fp16 - fp32| = {err:.3g}, max radius {radius:.5f}")
    return stats


def copy_meta(src: Path, dst: Path, names: list[str]) -> None:
    for n in names:
        shutil.copyfile(src / n, dst / n)


def file_table(dst: Path) -> str:
    rows = ["| file | bytes | md5 | sha256 |", "|---|---|---|---|"]
    for p in sorted(dst.iterdir()):
        if p.name in ("README.md", "SHA256SUMS"):
            continue
        rows.append(f"| `{p.name}` | {p.stat().st_size:,} | `{md5(p)}` | `{sha256(p)[:16]}...` |")
    return "\n".join(rows)


def write_sums(dst: Path) -> None:
    lines = [f"{sha256(p)}  {p.name}" for p in sorted(dst.iterdir()) if p.name not in ("README.md", "SHA256SUMS")]
    atomic_write(dst / "SHA256SUMS", lambda tmp: Path(tmp).write_text("\n".join(lines) + "\n"))


def total_mb(dst: Path) -> float:
    return sum(p.stat().st_size for p in dst.iterdir()) / 1e6


def counts_table(dst: Path, lists: dict[str, str], names: list[str]) -> str:
    counts = {}
    for split, lst in lists.items():
        labels = []
        for name in list_h5(dst, lst):
            with h5py.File(dst / name, "r") as f:
                labels.append(f["label"][()].reshape(-1))
        counts[split] = np.bincount(np.concatenate(labels), minlength=len(names))
    head = "| label | class | " + " | ".join(counts) + " |"
    rows = [head, "|---|---|" + "---|" * len(counts)]
    for i, n in enumerate(names):
        rows.append(f"| {i} | {n} | " + " | ".join(str(int(c[i])) for c in counts.values()) + " |")
    rows.append("| | **total** | " + " | ".join(f"**{int(c.sum())}**" for c in counts.values()) + " |")
    return "\n".join(rows)


def max_err(stats: dict) -> float:
    return max(s["fp16_max_abs_error"] for s in stats.values())


MODELNET_README = """# ModelNet10, 1024 points, bundled with Foundry (compact copy)

Point clouds of **ModelNet10** (Princeton ModelNet; Z. Wu, S. Song, A. Khosla, F. Yu, L. Zhang,
X. Tang, J. Xiao, *3D ShapeNets: A Deep Representation for Volumetric Shapes*, CVPR 2015,
<https://modelnet.cs.princeton.edu/>) with the **official train/test split**: all 4,899 shapes
(train 3,991, test 908), 10 classes, 1,024 points per shape, no normals. Report results on it as
ModelNet10, never as ModelNet40.

## Source and licence

- Built from the full-precision copy in `../shared/data/modelnet10` (its README has the details):
  Poisson-disk samples (1,024 points per shape, from the original ModelNet10 meshes) taken from the
  PCD files of GitHub repo `molivas2022/modelNet10classifier` at commit
  `f5277c678e7db8579ed80a98fc21330924a0d826` (data only).
- Each shape was centred on its centroid and scaled to max radius 1; z is up (ModelNet's own
  alignment). Rows shuffled with seed 0.
- **Licence**: ModelNet is provided by Princeton for **academic research use**; cite Wu et al. 2015
  (above) in any work that uses it.

## Layout (PointNet `modelnet40_ply_hdf5_2048` layout; `foundry.data.open_dataset("modelnet10")`)

| file | content |
|---|---|
| `ply_data_train0.h5` | `data` (3991, 1024, 3) **float16**, `label` (3991, 1) uint8 |
| `ply_data_test0.h5` | `data` (908, 1024, 3) **float16**, `label` (908, 1) uint8 |
| `ply_data_{{train,test}}_0_id2file.json` | source shape of every row, e.g. `chair/train/chair_0001` |
| `shape_names.txt`, `train_files.txt`, `test_files.txt` | class names (line i = label i), split lists |

## What the compaction changed

- Points are stored as float16 (h5 gzip level 9 + byte shuffle) instead of float32.
  Measured max |float16 - float32| over all points: **{err:.3e}** (float16 spacing is 2^-11 ~ 4.9e-4
  for coordinates in [0.5, 1), so the bound is 2.44e-4). Loaders convert to float32 and re-apply
  the unit-sphere normalisation; measured max |loaded bundle - loaded original| through
  `foundry.data.load_arrays`: **{loaded_err:.3e}**.
- Nothing else: same shapes, same order, same labels, same point count. Size {size:.1f} MB.

## Counts

{counts}

## Files and checksums (also in `SHA256SUMS`)

{files}

Rebuild: `python scripts/bundle_data.py` (reads `../shared/data`, reloads and verifies what it writes).
"""

KICAD_README = """# KiCadPart, {npts} points, bundled with Foundry (compact copy)

A real part-segmentation data set of electronic-component CAD models in the PointNet ShapeNetPart
h5 layout: 2,121 shapes, 15 object categories, 35 global parts, split train 1,481 / val 216 /
test 424 (split by footprint family). Part labels come from the materials the CAD exporter
assigned to each sub-shape (metal pins vs. plastic/epoxy body vs. coloured marks).

## Source, licence, attribution

- Built from `../shared/data/kicadpart` (its README documents every step and filter).
- Models: **KiCad 3D models library** (`kicad-packages3D`,
  <https://gitlab.com/kicad/libraries/kicad-packages3D>), (c) the KiCad Community and the
  "kicad StepUp" / FreeCAD-script contributors, from the Debian package `kicad-packages3d`
  6.0.10-1 (bookworm). Files Debian lists as GPL-3+ were excluded.
- **Licence: CC-BY-SA-4.0** (<https://creativecommons.org/licenses/by-sa/4.0/>). This data set is an
  adaptation (surface samples + part labels) of the KiCad models, which are CC-BY-SA-4.0 with the
  KiCad library exception; the exception concerns electronic designs, so the data set as a
  collection is plain CC-BY-SA-4.0. **Keep this notice** when redistributing; adaptations must be
  shared under the same licence. The `ply_data_*_id2file.json` files name the source model of
  every row.

## Layout (ShapeNetPart h5 layout; `foundry.data.open_dataset("kicadpart")`)

| file | content |
|---|---|
| `ply_data_{{train,val,test}}0.h5` | `data` (M, {npts}, 3) **float16**; `label` (M, 1) uint8 category; `pid` (M, {npts}) uint8 global part id |
| `{{train,val,test}}_hdf5_file_list.txt` | h5 file of each split |
| `all_object_categories.txt` | line i = category i |
| `category_parts.json`, `overallid_to_catid_partid.json`, `part_names.txt` | category -> global part ids; part names |
| `ply_data_<split>0_id2file.json` | source `.wrl` of every row |

## What the compaction changed

- **Points per shape: 2,048 -> {npts}**: a random subset without replacement, seeded per row
  (`numpy.random.default_rng([{seed}, row])`, kept in the original point order), the same subset for
  `data` and `pid`. The `normal` dataset is dropped. `shapes.json`, `material_map.json` and
  `build_log.json` are not bundled (see `../shared/data/kicadpart`).
- Points are stored as float16 (gzip 9 + byte shuffle). Measured max |float16 - float32| over all
  kept points: **{err:.3e}** (bound 2.44e-4 inside the unit sphere).
- Same shapes, order, labels and part ids. Size {size:.1f} MB.

## Counts

{counts}

## Files and checksums (also in `SHA256SUMS`)

{files}

Rebuild: `python scripts/bundle_data.py` (reads `../shared/data`, reloads and verifies what it writes).
"""


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--source", default=str(REPO.parent / "shared" / "data"))
    ap.add_argument("--out", default=str(REPO / "src" / "foundry" / "assets" / "data"))
    ap.add_argument("--kicad-points", type=int, default=1024)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    src, out = Path(args.source), Path(args.out)
    if not (src / "modelnet10").is_dir() or not (src / "kicadpart").is_dir():
        print(f"error: {src} must hold modelnet10/ and kicadpart/", file=sys.stderr)
        return 2
    report = {}

    print("modelnet10")
    dst = out / "modelnet10"
    if dst.exists():
        shutil.rmtree(dst)
    st = bundle(src / "modelnet10", dst, ["train_files.txt", "test_files.txt"], None, args.seed)
    copy_meta(src / "modelnet10", dst, MODELNET_META)
    names = (dst / "shape_names.txt").read_text().split()
    write_sums(dst)
    from foundry.data import load_arrays

    loaded_err = max(float(np.abs(load_arrays(dst, sp)["points"] - load_arrays(src / "modelnet10", sp)["points"]).max())
                     for sp in ("train", "test"))
    print(f"  max |loaded bundle - loaded original| = {loaded_err:.3g}")
    text = MODELNET_README.format(err=max_err(st), loaded_err=loaded_err, size=total_mb(dst),
                                  counts=counts_table(dst, {"train": "train_files.txt", "test": "test_files.txt"}, names),
                                  files=file_table(dst))
    atomic_write(dst / "README.md", lambda tmp: Path(tmp).write_text(text))
    report["modelnet10"] = {"files": st, "megabytes": total_mb(dst)}

    print("kicadpart")
    dst = out / "kicadpart"
    if dst.exists():
        shutil.rmtree(dst)
    lists = {s: f"{s}_hdf5_file_list.txt" for s in ("train", "val", "test")}
    st = bundle(src / "kicadpart", dst, list(lists.values()), args.kicad_points, args.seed)
    copy_meta(src / "kicadpart", dst, KICAD_META)
    names = [ln.split()[0] for ln in (dst / "all_object_categories.txt").read_text().splitlines() if ln.strip()]
    write_sums(dst)
    text = KICAD_README.format(npts=args.kicad_points, seed=args.seed, err=max_err(st), size=total_mb(dst),
                               counts=counts_table(dst, lists, names), files=file_table(dst))
    atomic_write(dst / "README.md", lambda tmp: Path(tmp).write_text(text))
    report["kicadpart"] = {"files": st, "megabytes": total_mb(dst)}
    for p in out.glob("*/*"):
        p.chmod(0o644)  # temporary files are created private; the bundle is public
    print(json.dumps({k: {"MB": round(v["megabytes"], 2),
                          "fp16_max_abs_error": max_err(v["files"])} for k, v in report.items()}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
