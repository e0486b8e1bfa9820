"""The data sets bundled in the package, and the real copies in ../shared/data through the same loaders."""
import json
from pathlib import Path

import numpy as np
import pytest

from foundry.data import bundled_path, load_arrays, open_dataset

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
FP16_TOL = 2e-3  # fp16 storage (<= 2.44e-4) plus the re-normalisation of the rounded points


def test_bundled_modelnet10():
    tr, te = load_arrays("modelnet10", "trainval"), load_arrays("modelnet10", "test")
    assert tr["points"].shape == (3991, 1024, 3) and te["points"].shape == (908, 1024, 3)
    assert tr["points"].dtype == np.float32 and len(tr["class_names"]) == 10
    assert tr["class_names"][2] == "chair" and np.bincount(te["labels"]).tolist()[:3] == [50, 100, 100]
    r = np.linalg.norm(te["points"], axis=-1).max(-1)
    assert np.allclose(r, 1, atol=1e-5)
    ds = open_dataset("modelnet10", "test", num_points=256)
    assert len(ds) == 908 and ds[0]["points"].shape == (256, 3) and ds.num_classes == 10


def test_modelnet10_validation_split_is_held_out_of_train():
    """val: a class-stratified 10% of the official train split, saved with its indices and checksums;
    train is the rest, trainval the official train split; test is untouched."""
    from foundry.data.holdout import SAVED_SPLITS, labels_checksum, split_record

    official = load_arrays("modelnet10", "trainval")
    tr, va = load_arrays("modelnet10", "train"), load_arrays("modelnet10", "val")
    assert len(tr["labels"]) + len(va["labels"]) == len(official["labels"]) == 3991 and len(va["labels"]) == 399
    rec = json.loads(SAVED_SPLITS[0].read_text())
    assert rec["train_labels_sha256"] == labels_checksum(official["labels"])
    assert rec == split_record(official["labels"])  # the saved split is the documented rule
    idx = np.asarray(rec["val_indices"])
    assert np.array_equal(va["points"], official["points"][idx]) and np.array_equal(va["labels"], official["labels"][idx])
    rest = np.setdiff1d(np.arange(3991), idx)
    assert np.array_equal(tr["points"], official["points"][rest])
    counts, val_counts = np.bincount(official["labels"]), np.bincount(va["labels"], minlength=10)
    assert (val_counts >= 1).all() and (np.abs(val_counts - 0.1 * counts) <= 0.5).all()  # stratified


def test_bundled_kicadpart():
    ds = open_dataset("kicadpart", "val")
    assert len(ds) == 216 and ds.num_classes == 15 and ds.num_parts == 35
    assert ds.part_names[2] == "capacitor/marking" and ds.category_parts[0] == [0, 1, 2]
    s = ds[5]
    assert s["points"].shape == (1024, 3) and s["part"].shape == (1024,)
    assert set(s["part"].tolist()) <= set(ds.category_parts[int(s["label"])])
    sizes = {split: len(open_dataset("kicadpart", split)) for split in ("train", "test")}
    assert sizes == {"train": 1481, "test": 424}


def test_bundle_readmes_and_checksums():
    import hashlib

    for name in ("modelnet10", "kicadpart"):
        folder = bundled_path(name)
        readme = (folder / "README.md").read_text()
        assert "Licence" in readme or "licence" in readme.lower()
        for line in (folder / "SHA256SUMS").read_text().splitlines():
            digest, fname = line.split()
            assert hashlib.sha256((folder / fname).read_bytes()).hexdigest() == digest, fname
    assert "CC-BY-SA-4.0" in (bundled_path("kicadpart") / "README.md").read_text()
    assert "Wu" in (bundled_path("modelnet10") / "README.md").read_text()


@pytest.mark.skipif(not (SHARED_DATA / "modelnet10").exists(), reason="../shared/data/modelnet10 not present")
def test_bundled_modelnet10_matches_shared():
    for split in ("train", "val", "test"):  # the fp32 originals get the same held-out val split
        a = load_arrays("modelnet10", split)
        b = load_arrays(SHARED_DATA / "modelnet10", split)
        assert (a["labels"] == b["labels"]).all() and a["class_names"] == b["class_names"]
        assert np.abs(a["points"] - b["points"]).max() < FP16_TOL


@pytest.mark.skipif(not (SHARED_DATA / "kicadpart").exists(), reason="../shared/data/kicadpart not present")
def test_shared_kicadpart_and_bundle_subset():
    import h5py

    full = open_dataset(SHARED_DATA / "kicadpart", "val")
    assert len(full) == 216 and full.num_parts == 35 and full[0]["points"].shape == (2048, 3)
    assert full.category_parts == open_dataset("kicadpart", "val").category_parts
    # the bundled points are a seeded subset of the full shapes: rows match after fp16 rounding
    with h5py.File(SHARED_DATA / "kicadpart" / "ply_data_val0.h5") as f:
        raw, pid = f["data"][:3], f["pid"][:3]
    with h5py.File(bundled_path("kicadpart") / "ply_data_val0.h5") as f:
        small, spid = f["data"][:3].astype(np.float32), f["pid"][:3]
    for i in range(3):
        d = np.linalg.norm(small[i][:, None] - raw[i][None], axis=-1)
        nearest = d.argmin(1)
        assert d.min(1).max() < 1e-3 and (pid[i][nearest] == spid[i]).all()
    ids = json.loads((SHARED_DATA / "kicadpart" / "ply_data_val0_id2file.json").read_text())
    assert len(ids) == 216
