"""Every supported layout, written tiny into tmp_path, loads with the right shapes, labels, parts
and unit-sphere normalisation."""
import numpy as np
import torch

from foundry.data import detect_layout, load_arrays, open_dataset
from foundry.data.examples import write_example


def _unit(points):
    r = np.linalg.norm(points, axis=-1).max(-1)
    c = points.mean(-2)
    assert np.allclose(r, 1, atol=1e-5), r
    assert np.abs(c).max() < 1e-5


def _same_up_to_normalisation(a, b):
    from foundry.data import normalize_unit_sphere

    assert np.allclose(a, normalize_unit_sphere(b), atol=1e-5)


def test_modelnet_h5(tmp_path):
    ex = write_example("modelnet_h5", tmp_path)
    assert detect_layout(tmp_path) == "modelnet_h5"
    for split in ("trainval", "test"):  # the official train split (train/val are carved out of it)
        a = load_arrays(tmp_path, split)
        split = "train" if split == "trainval" else split
        assert a["points"].shape == ex[split]["points"].shape and a["points"].dtype == np.float32
        assert a["labels"].dtype == np.int64 and (a["labels"] == ex[split]["labels"]).all()
        assert a["class_names"] == ex["class_names"] and "parts" not in a
        _unit(a["points"])
        _same_up_to_normalisation(a["points"], ex[split]["points"])
    ds = open_dataset(str(tmp_path), "test")
    s = ds[2]
    assert set(s) == {"points", "label", "index"} and s["points"].dtype == torch.float32
    assert s["label"].dtype == torch.int64 and s["index"] == 2
    assert ds.num_classes == 3 and ds.class_names == ex["class_names"]


def test_subsampling_is_seeded(tmp_path):
    write_example("modelnet_h5", tmp_path)
    a = load_arrays(tmp_path, "test", num_points=20)
    b = load_arrays(tmp_path, "test", num_points=20)
    c = load_arrays(tmp_path, "test", num_points=20, seed=1)
    assert a["points"].shape == (6, 20, 3) and np.array_equal(a["points"], b["points"])
    assert not np.array_equal(a["points"], c["points"])
    ev = open_dataset(tmp_path, "test", num_points=20)
    assert torch.equal(ev[1]["points"], torch.from_numpy(a["points"][1]))
    tr = open_dataset(tmp_path, "train", num_points=20)  # train: a fresh subset per epoch, repeatable
    e0 = tr[0]["points"]
    tr.set_epoch(1)
    e1 = tr[0]["points"]
    tr.set_epoch(0)
    assert torch.equal(tr[0]["points"], e0) and not torch.equal(e0, e1)
    up = load_arrays(tmp_path, "test", num_points=100)  # more than stored: padded by repeats
    assert up["points"].shape == (6, 100, 3)


def test_shapenet55(tmp_path):
    ex = write_example("shapenet55", tmp_path)
    assert detect_layout(tmp_path) == "shapenet55"
    for where in (tmp_path, tmp_path / "ShapeNet-55"):  # the root or its list folder
        ds = open_dataset(where, "train")
        assert len(ds) == 10 and ds.num_classes == 3
    a = load_arrays(tmp_path, "test", num_points=32)
    assert a["points"].shape == (5, 32, 3)
    assert (a["labels"] == ex["test"]["labels"]).all()  # synsets sorted == category order here
    full = load_arrays(tmp_path, "train")
    _same_up_to_normalisation(full["points"], ex["train"]["points"])
    assert ds.class_names[0].startswith("9")  # unknown synsets keep their id as name


def test_scanobjectnn_variants(tmp_path):
    ex = write_example("scanobjectnn", tmp_path)
    assert detect_layout(tmp_path) == "scanobjectnn"
    assert (load_arrays(tmp_path, "train")["labels"] == ex["pb_t50_rs"]["train"]["labels"]).all()  # default: hardest
    for var in ("obj_bg", "obj_only", "pb_t50_rs"):
        a = load_arrays(tmp_path, "test", variant=var)
        assert (a["labels"] == ex[var]["test"]["labels"]).all() and len(a["class_names"]) == 15
        _same_up_to_normalisation(a["points"], ex[var]["test"]["points"])
    assert (load_arrays(f"{tmp_path}#obj_only", "test")["labels"] == ex["obj_only"]["test"]["labels"]).all()
    assert (load_arrays(tmp_path / "main_split_nobg", "test")["labels"] == ex["obj_only"]["test"]["labels"]).all()


def test_shapenetpart_h5(tmp_path):
    ex = write_example("shapenetpart_h5", tmp_path)
    assert detect_layout(tmp_path) == "shapenetpart_h5"
    ds = open_dataset(tmp_path, "val", num_points=32)
    s = ds[0]
    assert s["part"].shape == (32,) and s["part"].dtype == torch.int64
    assert ds.num_parts == ex["num_parts"] and ds.class_names == ex["class_names"]
    assert ds.category_parts[1] == [4, 5] and int(s["part"].min()) in ds.category_parts[int(s["label"])]
    a = load_arrays(tmp_path, "train")
    assert (a["parts"] == ex["train"]["parts"]).all() and a["parts"].shape == (9, 64)
    _unit(a["points"])
    assert len(open_dataset(tmp_path, "trainval")) == 12


def test_shapenetpart_text(tmp_path):
    ex = write_example("shapenetpart_txt", tmp_path)
    assert detect_layout(tmp_path) == "shapenetpart_txt"
    ds = open_dataset(tmp_path, "test")
    pts, q = ex["test"]["clouds"][1]
    s = ds[1]
    assert s["points"].shape == pts.shape and torch.equal(s["part"], torch.from_numpy(q))
    assert ds.num_parts == ex["num_parts"] and ds.num_classes == 3
    a = load_arrays(tmp_path, "val")  # shapes differ in size: default 2048 points
    assert a["points"].shape == (3, 2048, 3) and a["parts"].shape == (3, 2048)
    assert (a["labels"] == ex["val"]["labels"]).all()
    b = load_arrays(tmp_path, "train", num_points=50)
    for lab, parts in zip(b["labels"], b["parts"]):
        assert set(parts.tolist()) <= set(ds.category_parts[int(lab)])


def test_dataloader_batches(tmp_path):
    write_example("shapenetpart_h5", tmp_path)
    loader = torch.utils.data.DataLoader(open_dataset(tmp_path, "train", num_points=16), batch_size=4)
    batch = next(iter(loader))
    assert batch["points"].shape == (4, 16, 3) and batch["part"].shape == (4, 16) and batch["label"].shape == (4,)


def test_cache_returns_copies_and_sees_changes(tmp_path):
    import h5py

    write_example("modelnet_h5", tmp_path)
    a = load_arrays(tmp_path, "test")
    a["points"][:] = 0  # the caller's copy; the cache must not change
    b = load_arrays(tmp_path, "test")
    assert b["points"].std() > 0.1
    open_dataset(tmp_path, "test")[0]["points"].mul_(0)  # in-place transform on a sample
    assert load_arrays(tmp_path, "test")["points"][0].std() > 0.1
    with h5py.File(tmp_path / "ply_data_test0.h5", "r+") as f:
        lab = f["label"][()]
        lab[0] = 2 - lab[0]
        f["label"][...] = lab
    assert load_arrays(tmp_path, "test")["labels"][0] == 2 - b["labels"][0]


def test_shapenetpart_h5_seg_alias(tmp_path):
    import h5py

    write_example("shapenetpart_h5", tmp_path)
    with h5py.File(tmp_path / "ply_data_val0.h5", "r+") as f:
        f["seg"] = f["pid"][()]
        del f["pid"]
    assert load_arrays(tmp_path, "val")["parts"].shape == (3, 64)


def test_up_axis_attribute(tmp_path):
    assert open_dataset("modelnet10", "test").up_axis == 2 and open_dataset("synthetic:2").up_axis == 2
    write_example("scanobjectnn", tmp_path / "sc")
    assert open_dataset(tmp_path / "sc", "test").up_axis == 1
    write_example("modelnet_h5", tmp_path / "mn")
    assert open_dataset(tmp_path / "mn", "test").up_axis is None  # the layout does not say
