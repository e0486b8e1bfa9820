"""check_data / `foundry check-data` on healthy and broken folders."""
import json

import h5py
import numpy as np
import pytest

from foundry.cli import main as cli
from foundry.data import check_data
from foundry.data.examples import write_example


def _msgs(rep, level="error"):
    return " | ".join(f"{f.file}: {f.message}" for f in rep.findings if f.level == level)


@pytest.mark.parametrize("layout", ["modelnet_h5", "shapenet55", "scanobjectnn", "shapenetpart_h5",
                                    "shapenetpart_txt"])
def test_healthy_layouts_pass(tmp_path, layout):
    write_example(layout, tmp_path)
    rep = check_data(tmp_path)
    assert rep.ok, rep.format()
    assert rep.layout == layout and rep.splits


def test_bundled_pass_and_cli_exit_codes(tmp_path, capsys):
    assert check_data("kicadpart").ok
    assert cli(["check-data", "kicadpart"]) == 0
    assert "OK" in capsys.readouterr().out
    assert cli(["check-data", str(tmp_path / "nope")]) == 1
    assert "does not exist" in capsys.readouterr().out
    write_example("modelnet_h5", tmp_path)
    (tmp_path / "test_files.txt").unlink()
    (tmp_path / "ply_data_test0.h5").unlink()
    assert cli(["check-data", str(tmp_path), "--json"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert not out["ok"] and any("missing test split list" in f["message"] for f in out["findings"])


def test_modelnet_problems(tmp_path):
    write_example("modelnet_h5", tmp_path)
    with open(tmp_path / "train_files.txt", "a") as f:
        f.write("data/modelnet40_ply_hdf5_2048/ply_data_train9.h5\n")
    (tmp_path / "shape_names.txt").write_text("a\nb\n")  # 3 classes are used
    with h5py.File(tmp_path / "ply_data_test0.h5", "r+") as f:
        d = f["data"][()]
        d[1, 3, 0] = np.nan
        f["data"][...] = d
    (tmp_path / "ply_data_train1.h5").write_bytes(b"")
    (tmp_path / "stray.h5").write_bytes(b"x")
    rep = check_data(tmp_path)
    e = _msgs(rep)
    assert not rep.ok
    assert "ply_data_train9.h5" in e and "absent" in e
    assert "out of range" in e and "shape_names.txt" in e
    assert "NaN/Inf" in e and "rows [1]" in e
    assert "empty (0 bytes)" in e
    assert "stray.h5" in _msgs(rep, "warning")


def test_h5_keys_shapes_counts(tmp_path):
    write_example("shapenetpart_h5", tmp_path)
    with h5py.File(tmp_path / "ply_data_val0.h5", "r+") as f:
        del f["pid"]
    with h5py.File(tmp_path / "ply_data_test0.h5", "r+") as f:
        lab = f["label"][()]
        del f["label"]
        f["label"] = lab[:-1]
        pid = f["pid"][()]
        pid[0, 0] = 200
        del f["pid"]
        f["pid"] = pid
    with h5py.File(tmp_path / "ply_data_train0.h5", "r+") as f:
        d = f["data"][()]
        del f["data"]
        f["data"] = d[..., :2]
    (tmp_path / "val_hdf5_file_list.txt").unlink()
    e = _msgs(check_data(tmp_path))
    assert "without ['pid']" in e
    assert "mismatched counts" in e
    assert "part ids out of range" in e
    assert "expected (shapes, points, 3)" in e


def test_per_shape_layout_problems(tmp_path):
    sn = tmp_path / "sn"
    ex = write_example("shapenet55", sn)
    (sn / "shapenet_pc" / ex["train"]["files"][0]).unlink()
    np.save(sn / "shapenet_pc" / ex["train"]["files"][1], np.zeros((5, 2)))
    with open(sn / "ShapeNet-55" / "test.txt", "a") as f:
        f.write(ex["train"]["files"][2] + "\n")
    e = _msgs(check_data(sn))
    assert "1 listed file(s) are absent" in e and "expected (points, 3)" in e and "both train.txt and test.txt" in e

    st = tmp_path / "st"
    write_example("shapenetpart_txt", st)
    (st / "train_test_split" / "shuffled_val_file_list.json").unlink()
    bad = next((st / "90000001").glob("*.txt"))
    bad.write_text("1 2 3 0 0 1 0\n")  # part 0 belongs to category 0, not 1
    e = _msgs(check_data(st))
    assert "missing val split list" in e and "do not belong to category" in e


def test_unknown_and_empty(tmp_path):
    rep = check_data(tmp_path)
    assert not rep.ok and "empty" in _msgs(rep)
    (tmp_path / "readme.txt").write_text("hi")
    rep = check_data(tmp_path)
    assert "cannot tell the layout" in _msgs(rep) and "readme.txt" in _msgs(rep)
    sc = tmp_path / "sc"
    write_example("scanobjectnn", sc)
    (sc / "main_split_nobg" / "test_objectdataset.h5").unlink()
    assert "other split file" in _msgs(check_data(sc))


def test_checksum_list_is_verified(tmp_path):
    import shutil

    from foundry.data import bundled_path

    dst = tmp_path / "kp"
    shutil.copytree(bundled_path("kicadpart"), dst)
    assert check_data(dst).ok
    with open(dst / "part_names.txt", "a") as f:
        f.write("extra/part\n")
    e = _msgs(check_data(dst))
    assert "checksum differs" in e and "part_names.txt" in e
