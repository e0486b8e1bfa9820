"""Bad input to the loaders: FoundryInputError naming the file and the fix."""
import h5py
import numpy as np
import pytest

from foundry.data import load_arrays, open_dataset
from foundry.data.examples import write_example
from foundry.validation import FoundryInputError


def test_missing_and_unknown(tmp_path):
    with pytest.raises(FoundryInputError, match="does not exist"):
        open_dataset(tmp_path / "nope")
    with pytest.raises(FoundryInputError, match="cannot tell the layout"):
        open_dataset(tmp_path)
    with pytest.raises(FoundryInputError, match="synthetic:N"):
        open_dataset("synthetic:lots")
    with pytest.raises(FoundryInputError, match="unknown split"):
        open_dataset("synthetic:4", "dev")
    with pytest.raises(FoundryInputError, match="positive"):
        open_dataset("synthetic:4", num_points=0)


def test_broken_h5_files(tmp_path):
    write_example("modelnet_h5", tmp_path)
    (tmp_path / "ply_data_test0.h5").write_bytes(b"")
    with pytest.raises(FoundryInputError, match=r"ply_data_test0\.h5 is empty"):
        load_arrays(tmp_path, "test")
    (tmp_path / "ply_data_test0.h5").write_bytes(b"\x89HDF\r\n garbage")
    with pytest.raises(FoundryInputError, match="not a readable HDF5 file.*re-download"):
        load_arrays(tmp_path, "test")
    (tmp_path / "ply_data_train1.h5").unlink()
    with pytest.raises(FoundryInputError, match="ply_data_train1.h5.*remove the line"):
        load_arrays(tmp_path, "train")


def test_bad_contents(tmp_path):
    write_example("modelnet_h5", tmp_path)
    path = tmp_path / "ply_data_test0.h5"
    with h5py.File(path, "r+") as f:
        d = f["data"][()]
        d[2, 0, 1] = np.inf
        f["data"][...] = d
    with pytest.raises(FoundryInputError, match=r"ply_data_test0\.h5.*NaN or Inf.*rows \[2\]"):
        load_arrays(tmp_path, "test")
    with h5py.File(path, "r+") as f:
        del f["data"]
        f["data"] = np.zeros((6, 10), np.float32)
    with pytest.raises(FoundryInputError, match=r"shape \(shapes, points, 3\)"):
        load_arrays(tmp_path, "test")
    with h5py.File(path, "r+") as f:
        del f["data"]
    with pytest.raises(FoundryInputError, match="no dataset 'data'"):
        load_arrays(tmp_path, "test")
    (tmp_path / "shape_names.txt").write_text("one\n")
    with pytest.raises(FoundryInputError, match="shape_names.txt"):
        load_arrays(tmp_path, "train")


def test_part_and_text_errors(tmp_path):
    write_example("shapenetpart_h5", tmp_path / "h5")
    with h5py.File(tmp_path / "h5" / "ply_data_val0.h5", "r+") as f:
        del f["pid"]
        f["pid"] = np.zeros((3, 5), np.uint8)
    with pytest.raises(FoundryInputError, match="one part id per point"):
        load_arrays(tmp_path / "h5", "val")
    ex = write_example("shapenetpart_txt", tmp_path / "txt")
    shape = next((tmp_path / "txt" / "90000000").glob("test*.txt"))
    shape.write_text("1 2 nan 0 0 1 0\n")
    with pytest.raises(FoundryInputError, match="NaN"):
        load_arrays(tmp_path / "txt", "test")
    shape.unlink()
    with pytest.raises(FoundryInputError, match="missing"):
        open_dataset(tmp_path / "txt", "test")
    assert ex["train"]


def test_bad_npy(tmp_path):
    ex = write_example("shapenet55", tmp_path)
    (tmp_path / "shapenet_pc" / ex["test"]["files"][0]).write_bytes(b"not numpy")
    ds = open_dataset(tmp_path, "test")
    with pytest.raises(FoundryInputError, match="not a readable .npy"):
        ds[0]
