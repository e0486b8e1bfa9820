"""Issue 16: every bad input, corrupt file and collision is refused with a clear message (or gives
the correct result); one test per finding, tiny models only."""
import json
import os
import struct
import threading
import time

import h5py
import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

import foundry
from foundry import FoundryInputError
from foundry.cli import main as cli
from foundry.io import atomic_write, remove_stale_temporaries
from foundry.models.checkpoint import load_checkpoint
from foundry.ops import farthest_point_sample, knn
from foundry.train import common
from foundry.train.token_cache import (build_token_cache, expected_header, load_or_build, lock_path, open_token_cache,
                                       teacher_identity)


def tiny(seed=0):
    torch.manual_seed(seed)
    return foundry.create_model("tiny").eval()


def clouds(b=2, n=256, seed=0):
    return torch.rand(b, n, 3, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def data_offset(path) -> int:
    """Where the tensor bytes of a safetensors file start."""
    with open(path, "rb") as f:
        return 8 + struct.unpack("<Q", f.read(8))[0]


def flip_bytes(path, count, start=0, seed=0):
    raw = bytearray(open(path, "rb").read())
    rng = np.random.default_rng(seed)
    for i in rng.choice(np.arange(start, len(raw)), size=min(count, len(raw) - start), replace=False):
        raw[i] ^= 0xFF
    open(path, "wb").write(bytes(raw))


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp("ck") / "tiny.safetensors"
    foundry.save(tiny(), path)
    return path


# ----------------------------------------------------------------------------- 1. corrupt checkpoints

def test_flipped_tensor_bytes_are_refused(ckpt, tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(ckpt.read_bytes())
    flip_bytes(bad, 1000, start=data_offset(bad))
    with pytest.raises(FoundryInputError, match="digest"):
        foundry.load(bad)


def test_files_without_a_digest_still_load(ckpt, tmp_path):
    with safe_open(str(ckpt), framework="pt") as f:
        meta = {k: v for k, v in f.metadata().items() if k != "sha256"}
        state = {k: f.get_tensor(k) for k in f.keys()}
    save_file(state, str(tmp_path / "old.safetensors"), metadata=meta)
    x = clouds()
    assert torch.equal(foundry.load(tmp_path / "old.safetensors").forward_features(x),
                       foundry.load(ckpt).forward_features(x))
    assert foundry.load("teacher-small") is not None  # shipped weights (written before digests)


def test_edited_provenance_is_refused(ckpt, tmp_path):
    with safe_open(str(ckpt), framework="pt") as f:
        meta = dict(f.metadata())
        state = {k: f.get_tensor(k) for k in f.keys()}
    meta["info"] = json.dumps({"epochs": 300})
    save_file(state, str(tmp_path / "edited.safetensors"), metadata=meta)
    with pytest.raises(FoundryInputError, match="digest"):
        foundry.load(tmp_path / "edited.safetensors")


def test_non_finite_weights_are_never_saved(tmp_path):
    m = tiny()
    with torch.no_grad():
        m.norm.weight[0] = float("inf")
    with pytest.raises(FoundryInputError, match="NaN/Inf.*norm.weight"):
        foundry.save(m, tmp_path / "m.safetensors")
    assert not (tmp_path / "m.safetensors").exists()
    with torch.no_grad():
        m.norm.weight[0] = 7e4  # finite in float32, inf in float16
    with pytest.raises(FoundryInputError, match="float16"):
        foundry.save(m, tmp_path / "m16.safetensors", dtype=torch.float16)


def _state(tmp_path, model=None):
    model = model or tiny()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(clouds()).sum().backward()
    opt.step()
    path = tmp_path / "state.pt"
    common.save_training_state(path, model=model, optimizer=opt, scheduler=None, epoch=1, step=3,
                               run_config={"a": 1})
    return path, model, opt


def test_training_state_digest_and_finiteness(tmp_path):
    path, model, opt = _state(tmp_path)
    assert common.read_training_state(path)["epoch"] == 1
    raw = bytearray(path.read_bytes())
    key = raw.find(b"data/0")  # the first tensor record of the zip: flip bytes inside its data
    start = raw.find(b"PK", key + 1) - 64
    for i in range(start, start + 32):
        raw[i] ^= 0xFF
    (tmp_path / "flipped.pt").write_bytes(bytes(raw))
    with pytest.raises(FoundryInputError):
        common.read_training_state(tmp_path / "flipped.pt")
    with torch.no_grad():
        next(model.parameters()).fill_(float("nan"))
    good = path.read_bytes()
    with pytest.raises(FoundryInputError, match="diverged"):
        common.save_training_state(path, model=model, optimizer=opt, scheduler=None, epoch=2, step=6,
                                   run_config={"a": 1})
    assert path.read_bytes() == good  # the last good state is kept


# ----------------------------------------------------------------------------- 2. scale, dtype, device

def test_huge_coordinates_are_refused_and_ops_stay_exact():
    m, x = tiny(), clouds()
    with pytest.raises(FoundryInputError, match="coordinates up to 1e\\+30 in cloud\\(s\\) \\[0, 1\\]"):
        m.forward_features(x * 1e30)
    assert torch.isfinite(m.forward_features(x * 1e6)).all()
    idx, nn_ = farthest_point_sample(x, 16), knn(x[:, :16], x, 8)
    for shift in (-100, 100):  # powers of two: the same cloud up to exact rounding
        y = torch.ldexp(x, torch.tensor(shift))
        assert torch.equal(farthest_point_sample(y, 16), idx)
        assert torch.equal(knn(y[:, :16], y, 8), nn_)
    big = x.double() * 1e300  # beyond float32 entirely
    assert torch.equal(farthest_point_sample(big, 16), idx)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
def test_other_float_dtypes_are_cast(dtype):
    m, x = tiny(), clouds()
    out = m.forward_features(x.to(dtype))
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
    if dtype == torch.float64:
        assert torch.equal(out, m.forward_features(x))


def test_meta_tensor_and_student_are_refused():
    with pytest.raises(FoundryInputError, match="meta"):
        tiny().forward_features(torch.empty(2, 256, 3, device="meta"))
    from foundry.models.student import create_student

    with pytest.raises(FoundryInputError, match="meta"):
        create_student("foundry-tiny").eval().forward_features(torch.empty(2, 256, 3, device="meta"))


@pytest.mark.parametrize("bad", [None, 123, "", "   ", 1.5])
def test_load_of_non_names(bad):
    with pytest.raises(FoundryInputError, match="shipped model name or a checkpoint path"):
        foundry.load(bad)


def test_load_of_a_folder(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(FoundryInputError, match="is a folder.*notes.txt"):
        foundry.load(tmp_path)


# ----------------------------------------------------------------------------- crafted headers

def _crafted(tmp_path, ckpt, **changes):
    with safe_open(str(ckpt), framework="pt") as f:
        meta = dict(f.metadata())
        state = {k: f.get_tensor(k) for k in f.keys()}
    meta.pop("sha256")
    for k, v in changes.items():
        if v is None:
            meta.pop(k)
        else:
            meta[k] = v
    path = tmp_path / "crafted.safetensors"
    save_file(state, str(path), metadata=meta)
    return path


@pytest.mark.parametrize("changes, match", [
    ({"kind": "alien"}, "unknown kind 'alien'"),
    ({"config": None}, "no 'config' entry"),
    ({"config": "{not json"}, "not valid JSON"),
    ({"config": "[1, 2]"}, "not a JSON object"),
    ({"config": json.dumps({**foundry.create_model("tiny").config.to_dict(), "width": 4096})}, "do not fit"),
    ({"config": json.dumps({**foundry.create_model("tiny").config.to_dict(), "width": 10 ** 9})}, "not describe a valid"),
    ({"config": json.dumps({"width": "wide"})}, "does not describe a valid"),
])
def test_crafted_headers_give_clear_errors(tmp_path, ckpt, changes, match, capsys):
    path = _crafted(tmp_path, ckpt, **changes)
    with pytest.raises(FoundryInputError, match=match):
        foundry.load(path)
    assert cli(["info", str(path)]) == 2
    assert match.split("'")[0].split(".")[0] in capsys.readouterr().err


def test_malicious_pickle_message(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    torch.save({"state_dict": {"w": torch.zeros(1)}, "x": Evil()}, tmp_path / "evil.pth")
    with pytest.raises(FoundryInputError, match="refused: besides weights it carries Python objects or code") as e:
        foundry.load(tmp_path / "evil.pth")
    assert "weights_only=False" not in str(e.value) and "set to `False`" not in str(e.value)


# ----------------------------------------------------------------------------- 3. eval feature cache

def test_feature_cache_is_verified_or_rebuilt(tmp_path, capsys):
    from foundry.eval.common import FeatureCache, Split
    from foundry.io import model_fingerprint

    m = tiny()
    split = Split(clouds(6).numpy(), np.arange(6) % 2, spec="arrays", split="t")
    cache = FeatureCache(tmp_path)
    ref = cache.features(m, split, model_fingerprint(m))
    path = next(tmp_path.glob("features_*.npz"))
    for damage in ("flip", "truncate"):
        FeatureCache._shared.clear()
        raw = bytearray(path.read_bytes())
        if damage == "flip":
            for i in range(len(raw) // 2, len(raw) // 2 + 40):
                raw[i] ^= 0x5A
        else:
            raw = raw[: len(raw) // 2]
        path.write_bytes(bytes(raw))
        again = FeatureCache(tmp_path).features(m, split, model_fingerprint(m))
        assert np.array_equal(again, ref)
        assert "extracting the features again" in capsys.readouterr().out
    FeatureCache._shared.clear()


# ----------------------------------------------------------------------------- 4. token cache collisions

class _Clouds(torch.utils.data.Dataset):
    def __init__(self, n=4, seed=0):
        self.x = clouds(n, 256, seed)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"points": self.x[i]}


def _want(teacher, name="t", views=1):
    return expected_header(teacher_identity(teacher, name), layer=-1, data=["x"], num_points=256, views=views, seed=0,
                           augment=False)


def test_concurrent_cache_build_waits_then_reuses(tmp_path):
    teacher, folder = tiny(), tmp_path / "cache"
    want = _want(teacher)
    result, messages = {}, []

    def second():
        result["value"] = load_or_build(folder, teacher, _Clouds(), want, log=messages.append)

    from foundry.locks import file_lock

    with file_lock(lock_path(folder)):  # a first run is building
        t = threading.Thread(target=second)
        t.start()
        time.sleep(0.3)
        assert t.is_alive() and messages and "waiting" in messages[0]
        build_token_cache(folder, teacher, _Clouds(), want)
    t.join(20)
    cache, built = result["value"]
    assert not built and len(cache) == 4


def test_rebuild_never_changes_what_a_reader_has_open(tmp_path):
    teacher, folder = tiny(), tmp_path / "cache"
    want = _want(teacher)
    first = build_token_cache(folder, teacher, _Clouds(seed=0), want)
    before = np.array(first.points)
    load_or_build(folder, teacher, _Clouds(seed=1), want, rebuild=True)
    assert np.array_equal(np.array(first.points), before)  # the open memmap still reads the old file
    assert not np.array_equal(np.array(open_token_cache(folder, want).points), before)
    assert not [p for p in folder.iterdir() if p.name.endswith(".tmp")]


def test_cache_is_keyed_by_teacher_content_and_header_checked(tmp_path):
    teacher, folder = tiny(), tmp_path / "cache"
    build_token_cache(folder, teacher, _Clouds(), _want(teacher, "runs/t.safetensors"))
    open_token_cache(folder, _want(teacher, "/abs/path/runs/t.safetensors"))  # same weights: accepted
    with pytest.raises(FoundryInputError, match="fingerprint"):
        open_token_cache(folder, _want(tiny(3), "runs/t.safetensors"))
    header = json.loads((folder / "header.json").read_text())
    del header["checksums"]
    (folder / "header.json").write_text(json.dumps(header))
    with pytest.raises(FoundryInputError, match="lacks .*checksums"):
        open_token_cache(folder)


# ----------------------------------------------------------------------------- 5. concurrent eval results

def test_results_of_concurrent_evals_merge(tmp_path):
    from foundry.eval.runner import _write_results

    def results(protocol):
        return {"model": {"fingerprint": "f" * 64, "name": "m"}, "protocols": {protocol: {"per_seed": {}}}}

    a, b = results("svm"), results("fewshot")
    _write_results(tmp_path, a, ["svm"])  # run A writes first ...
    _write_results(tmp_path, b, ["fewshot"])  # ... run B (started before A wrote) keeps A's protocol
    _write_results(tmp_path, a, ["svm"])  # ... and A's next write keeps B's
    assert set(json.loads((tmp_path / "results.json").read_text())["protocols"]) == {"svm", "fewshot"}


# ----------------------------------------------------------------------------- 6. overwrites

def test_outputs_are_not_replaced_without_overwrite(ckpt, tmp_path, capsys):
    src = tmp_path / "t.safetensors"
    src.write_bytes(ckpt.read_bytes())
    before = src.read_bytes()
    assert cli(["models", "tome", str(src), str(src), "--r", "2", "--overwrite"]) == 2  # onto its own input
    assert "also an input" in capsys.readouterr().err
    assert src.read_bytes() == before
    (tmp_path / "done.safetensors").write_bytes(b"x")
    assert cli(["models", "tome", str(src), str(tmp_path / "done.safetensors"), "--r", "2"]) == 2
    assert cli(["models", "convert", str(src), str(tmp_path / "done.safetensors")]) == 2
    (tmp_path / "m.onnx").write_bytes(b"x")
    assert cli(["export", str(src), "--out", str(tmp_path / "m.onnx")]) == 2
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "bench.json").write_text("{}")
    assert cli(["bench", "tiny", "--out", str(tmp_path / "b"), "--fast", "--no-memory", "--no-onnx"]) == 2
    err = capsys.readouterr().err
    assert err.count("already exists") == 4 and "--overwrite" in err
    assert (tmp_path / "done.safetensors").read_bytes() == b"x" and (tmp_path / "m.onnx").read_bytes() == b"x"


def test_distill_refuses_a_finished_run_and_an_early_resume(ckpt, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "student.safetensors").write_bytes(b"finished")
    base = ["distill", "--teacher", str(ckpt), "--student", "foundry-tiny", "--data", "synthetic:4", "--epochs", "1"]
    assert cli(base + ["--out", str(run)]) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert cli(base + ["--out", str(tmp_path / "fresh"), "--resume"]) == 2
    assert "nothing to resume" in capsys.readouterr().err
    assert not (tmp_path / "fresh" / "token_cache").exists()  # refused before building the cache
    assert (run / "student.safetensors").read_bytes() == b"finished"


def test_student_as_teacher_is_refused(tmp_path, capsys):
    from foundry.models.student import create_student

    foundry.save(create_student("foundry-tiny"), tmp_path / "s.safetensors")
    assert cli(["distill", "--teacher", str(tmp_path / "s.safetensors"), "--student", "foundry-tiny",
                "--out", str(tmp_path / "o")]) == 2
    assert "cannot be a teacher" in capsys.readouterr().err


def test_bench_and_export_point_counts(capsys):
    for args in (["bench", "tiny", "--points", "0"], ["bench", "tiny", "--points", "-5"],
                 ["export", "tiny", "--points", "0", "--out", "never.onnx"]):
        assert cli(args) == 2
        assert "--points must be a positive whole number" in capsys.readouterr().err


# ----------------------------------------------------------------------------- 7. check-data

def _modelnet(folder, points, names=True):
    folder.mkdir()
    with h5py.File(folder / "ply_data_train0.h5", "w") as f:
        f["data"] = points
        f["label"] = np.zeros((len(points), 1), dtype=np.int64)
    with h5py.File(folder / "ply_data_test0.h5", "w") as f:
        f["data"] = points[:2]
        f["label"] = np.zeros((2, 1), dtype=np.int64)
    (folder / "train_files.txt").write_text("ply_data_train0.h5\n")
    (folder / "test_files.txt").write_text("ply_data_test0.h5\n")
    if names:
        (folder / "shape_names.txt").write_text("a\n")


def test_check_data_finds_flipped_values_padding_and_names(tmp_path):
    from foundry.data.check import check_data

    pts = (np.random.default_rng(0).random((6, 128, 3), dtype=np.float32) * 2 - 1)
    _modelnet(tmp_path / "ok", pts)
    assert check_data(tmp_path / "ok").ok and not check_data(tmp_path / "ok").warnings
    bad = pts.copy()
    bad[4, 17, 1] = 689.0  # a flipped exponent bit in a unit-scale cloud
    _modelnet(tmp_path / "flip", bad)
    rep = check_data(tmp_path / "flip")
    assert not rep.ok and any("rows [4]" in f.message and "point 17" in f.message for f in rep.errors)
    padded = pts.copy()
    padded[2] = np.resize(pts[2, :10], (128, 3))  # 10 points repeated to fill the row
    _modelnet(tmp_path / "pad", padded, names=False)
    rep = check_data(tmp_path / "pad")
    assert rep.ok  # no shape_names.txt is a warning, as eval runs without it
    text = " ".join(f.message for f in rep.warnings)
    assert "only 10 distinct points" in text and "shape_names.txt" in text


# ----------------------------------------------------------------------------- smaller

def test_stale_temporaries_are_removed_and_modes_follow_umask(tmp_path):
    target = tmp_path / "state.pt"
    dead = tmp_path / ".state.pt.999999999.abcd.tmp"  # a writer killed mid-save (no such process)
    dead.write_bytes(b"")
    alive = tmp_path / f".state.pt.{os.getpid()}.efgh.tmp"  # one still being written
    alive.write_bytes(b"")
    atomic_write(target, lambda tmp: open(tmp, "wb").write(b"ok"))
    assert not dead.exists() and alive.exists()
    old = os.umask(0o022)
    try:
        atomic_write(tmp_path / "x.json", lambda tmp: open(tmp, "w").write("{}"))
    finally:
        os.umask(old)
    assert (os.stat(tmp_path / "x.json").st_mode & 0o777) == 0o666 & ~common_umask()
    remove_stale_temporaries(target)


def common_umask():
    from foundry.io import _umask

    return _umask()


def test_garbage_metrics_line_on_resume(tmp_path, capsys):
    (tmp_path / "metrics.csv").write_text("step,loss\n1,0.5\n\x00\x00garbage,,,\n2,0.4\n9,0.1\n")
    logger = common.RunLogger(tmp_path, resume_step=5, tensorboard=False)
    assert [r["step"] for r in logger.rows] == ["1", "2"]
    assert "dropped 1 unreadable row" in capsys.readouterr().out
    logger.log(6, loss=0.3)
    assert (tmp_path / "metrics.csv").read_text().splitlines() == ["step,loss", "1,0.5", "2,0.4", "6,0.3"]


def test_checkpoint_round_trip_still_exact(ckpt):
    m = load_checkpoint(ckpt)
    x = clouds()
    assert torch.equal(m.forward_features(x), tiny().forward_features(x))
