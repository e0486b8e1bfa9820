"""Write tiny example folders in each supported layout (from synthetic shapes, at a raw scale).

Used by the tests and handy to see exactly what a layout looks like:

    python -c "from foundry.data.examples import write_example; write_example('shapenet55', 'demo_sn55')"

Every writer returns a dict with the split labels it wrote, so tests can compare.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .synthetic import CATEGORY_PARTS, CLASS_NAMES, PART_NAMES, make_shape

# Made-up synset ids for the synthetic categories (8 digits, like ShapeNet's).
SYNSETS = [f"9{i:07d}" for i in range(len(CLASS_NAMES))]


def _clouds(n: int, num_points: int, seed: int, num_classes: int, scale: float = 37.0):
    """n shapes (raw scale: scaled and shifted, as real data arrives), labels, global parts."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % num_classes
    pts, parts = [], []
    for lab in labels:
        p, q = make_shape(int(lab), rng, num_points)
        pts.append(p * scale + rng.normal(size=3) * 5)
        parts.append(q)
    return np.stack(pts).astype(np.float32), labels.astype(np.int64), np.stack(parts)


def _h5(path: Path, **arrays):
    import h5py

    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        for k, v in arrays.items():
            f.create_dataset(k, data=v)


def write_modelnet_h5(folder, n_train: int = 12, n_test: int = 6, num_points: int = 64, num_classes: int = 3,
                      seed: int = 0) -> dict:
    """modelnet40_ply_hdf5_2048 layout; the split lists use the official 'data/<folder>/' prefix."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = {"class_names": CLASS_NAMES[:num_classes]}
    for split, n, files in (("train", n_train, 2), ("test", n_test, 1)):
        pts, lab, _ = _clouds(n, num_points, seed + (split == "test"), num_classes)
        names = []
        for k, chunk in enumerate(np.array_split(np.arange(n), files)):
            name = f"ply_data_{split}{k}.h5"
            _h5(folder / name, data=pts[chunk], label=lab[chunk, None].astype(np.uint8))
            names.append(f"data/modelnet40_ply_hdf5_2048/{name}")
        (folder / f"{split}_files.txt").write_text("\n".join(names) + "\n")
        out[split] = {"points": pts, "labels": lab}
    (folder / "shape_names.txt").write_text("\n".join(out["class_names"]) + "\n")
    return out


def write_shapenet55(root, n_train: int = 10, n_test: int = 5, num_points: int = 128, num_classes: int = 3,
                     seed: int = 0) -> dict:
    """Point-BERT ShapeNet55-34 layout: shapenet_pc/<synset>-<id>.npy + ShapeNet-55/{train,test}.txt."""
    root = Path(root)
    (root / "shapenet_pc").mkdir(parents=True, exist_ok=True)
    (root / "ShapeNet-55").mkdir(exist_ok=True)
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        pts, lab, _ = _clouds(n, num_points, seed + (split == "test"), num_classes)
        names = []
        for i in range(n):
            name = f"{SYNSETS[lab[i]]}-{split}{i:04d}abcdef.npy"
            np.save(root / "shapenet_pc" / name, pts[i])
            names.append(name)
        (root / "ShapeNet-55" / f"{split}.txt").write_text("\n".join(names) + "\n")
        out[split] = {"points": pts, "labels": lab, "files": names}
    return out


def write_scanobjectnn(root, n_train: int = 9, n_test: int = 6, num_points: int = 64, seed: int = 0) -> dict:
    """h5_files layout with all three variants (OBJ_BG, OBJ_ONLY, PB_T50_RS)."""
    root = Path(root)
    out = {}
    for k, (sub, stem, var) in enumerate((("main_split", "objectdataset", "obj_bg"),
                                          ("main_split_nobg", "objectdataset", "obj_only"),
                                          ("main_split", "objectdataset_augmentedrot_scale75", "pb_t50_rs"))):
        out[var] = {}
        for split, n, prefix in (("train", n_train, "training"), ("test", n_test, "test")):
            pts, lab, _ = _clouds(n, num_points, seed + 10 * k + (split == "test"), 3)
            lab = lab + 4 * k  # distinct labels per variant, to tell them apart in tests
            _h5(root / sub / f"{prefix}_{stem}.h5", data=pts, label=lab.astype(np.int64),
                mask=np.zeros(pts.shape[:2], np.int64))
            out[var][split] = {"points": pts, "labels": lab}
    return out


def _part_meta(num_classes: int):
    names = CLASS_NAMES[:num_classes]
    n_parts = CATEGORY_PARTS[num_classes - 1][-1] + 1
    overall = [[SYNSETS[c], k] for c in range(num_classes) for k in range(len(CATEGORY_PARTS[c]))]
    return names, n_parts, overall


def write_shapenetpart_h5(folder, n: dict | None = None, num_points: int = 64, num_classes: int = 3,
                          seed: int = 0) -> dict:
    """PointNet shapenet_part_seg_hdf5_data layout (all_object_categories.txt with synset ids,
    overallid_to_catid_partid.json, {train,val,test}_hdf5_file_list.txt)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    n = n or {"train": 9, "val": 3, "test": 6}
    names, n_parts, overall = _part_meta(num_classes)
    (folder / "all_object_categories.txt").write_text("".join(f"{c.capitalize()}\t{SYNSETS[i]}\n"
                                                              for i, c in enumerate(names)))
    (folder / "overallid_to_catid_partid.json").write_text(json.dumps(overall))
    out = {"class_names": [c.capitalize() for c in names], "num_parts": n_parts}
    for k, (split, m) in enumerate(n.items()):
        pts, lab, parts = _clouds(m, num_points, seed + k, num_classes)
        _h5(folder / f"ply_data_{split}0.h5", data=pts, label=lab[:, None].astype(np.uint8),
            pid=parts.astype(np.uint8))
        (folder / f"{split}_hdf5_file_list.txt").write_text(f"ply_data_{split}0.h5\n")
        out[split] = {"points": pts, "labels": lab, "parts": parts}
    return out


def write_shapenetpart_txt(folder, n: dict | None = None, num_classes: int = 3, seed: int = 0) -> dict:
    """shapenetcore_partanno_segmentation_benchmark_v0_normal layout (shapes of different sizes)."""
    folder = Path(folder)
    (folder / "train_test_split").mkdir(parents=True, exist_ok=True)
    n = n or {"train": 6, "val": 3, "test": 3}
    names, n_parts, overall = _part_meta(num_classes)
    (folder / "synsetoffset2category.txt").write_text("".join(f"{c.capitalize()}\t{SYNSETS[i]}\n"
                                                              for i, c in enumerate(names)))
    (folder / "overallid_to_catid_partid.json").write_text(json.dumps(overall))
    rng = np.random.default_rng(seed)
    out = {"class_names": [c.capitalize() for c in names], "num_parts": n_parts}
    for split, m in n.items():
        entries, labels, clouds = [], [], []
        for i in range(m):
            lab = i % num_classes
            p, q = make_shape(lab, rng, int(rng.integers(90, 140)))
            p = p * 12.0
            normals = np.zeros_like(p)
            (folder / SYNSETS[lab]).mkdir(exist_ok=True)
            sid = f"{split}{i:04d}"
            np.savetxt(folder / SYNSETS[lab] / f"{sid}.txt", np.column_stack([p, normals, q]), fmt="%.6f")
            entries.append(f"shape_data/{SYNSETS[lab]}/{sid}")
            labels.append(lab)
            clouds.append((p, q))
        (folder / "train_test_split" / f"shuffled_{split}_file_list.json").write_text(json.dumps(entries))
        out[split] = {"labels": np.array(labels), "clouds": clouds}
    return out


WRITERS = {"modelnet_h5": write_modelnet_h5, "shapenet55": write_shapenet55, "scanobjectnn": write_scanobjectnn,
           "shapenetpart_h5": write_shapenetpart_h5, "shapenetpart_txt": write_shapenetpart_txt}


def write_example(layout: str, folder, **kwargs) -> dict:
    if layout not in WRITERS:
        raise KeyError(f"unknown layout {layout!r}; one of {sorted(WRITERS)}")
    return WRITERS[layout](folder, **kwargs)


__all__ = ["WRITERS", "write_example", "PART_NAMES"]
