"""A seeded batch of malformed inputs and damaged files through the public API and the CLI: each
must end in FoundryInputError with a message naming the problem, or in a finite, correct result.
Any other exception (a raw traceback) or a silently wrong result fails the test."""
import json

import h5py
import numpy as np
import pytest
import torch

import foundry
from foundry import FoundryInputError
from foundry.cli import main as cli
from foundry.train import common
from foundry.train.token_cache import build_token_cache, expected_header, open_token_cache, teacher_identity

SEED = 16
DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int64, torch.bool]


def _outcome(fn):
    """'ok' with the value, or 'refused' with the message; anything else propagates and fails."""
    try:
        return "ok", fn()
    except FoundryInputError as exc:
        assert len(str(exc)) > 20, f"unhelpful message: {exc!r}"
        return "refused", str(exc)


def _damage(raw: bytes, rng) -> bytes:
    """Truncated, or 1..1000 bytes flipped anywhere."""
    raw = bytearray(raw)
    if rng.random() < 0.3:
        return bytes(raw[: int(rng.integers(0, len(raw)))])
    for i in rng.choice(len(raw), size=int(rng.integers(1, min(1000, len(raw)))), replace=False):
        raw[i] ^= int(rng.integers(1, 256))
    return bytes(raw)


@pytest.fixture(scope="module")
def models():
    from foundry.models.student import create_student

    torch.manual_seed(0)
    return [foundry.create_model("tiny").eval(), create_student("foundry-tiny").eval()]


def test_fuzz_point_inputs(models):
    rng = np.random.default_rng(SEED)
    tally = {"ok": 0, "refused": 0}
    for trial in range(60):
        model = models[trial % 2]
        shape = [int(rng.integers(1, 3)), int(rng.choice([0, 5, 256, 256, 256])), int(rng.choice([3] * 6 + [2, 6]))]
        if rng.random() < 0.1:
            shape = shape[1:] if rng.random() < 0.5 else shape + [3]
        x = torch.from_numpy(rng.standard_normal(shape).astype(np.float32)) * float(10.0 ** rng.choice([0, 0, 0, -30, -8, 3, 9, 12, 30]))
        if x.numel() and rng.random() < 0.15:
            x.view(-1)[int(rng.integers(0, x.numel()))] = float(rng.choice([np.nan, np.inf, -np.inf]))
        x = x.to(DTYPES[int(rng.choice([0, 0, 1, 2, 3, 4, 5]))])
        if rng.random() < 0.1:
            x = torch.empty(x.shape, dtype=x.dtype, device="meta")
        kind, value = _outcome(lambda: model.forward_features(x))
        tally[kind] += 1
        if kind == "ok":
            assert value.shape == (x.shape[0] if x.dim() == 3 else 1, model.feature_dim)
            assert torch.isfinite(value).all(), f"trial {trial}: non-finite features for {x.dtype} {tuple(x.shape)}"
        else:
            assert "points" in value
    print(f"fuzz point inputs: {tally}")
    assert tally["ok"] >= 10 and tally["refused"] >= 10, tally


def test_fuzz_damaged_checkpoints(models, tmp_path, capsys):
    rng = np.random.default_rng(SEED + 1)
    good = tmp_path / "good.safetensors"
    foundry.save(models[1], good)
    ref = models[1].state_dict()
    raw = good.read_bytes()
    refused = 0
    for trial in range(16):
        bad = tmp_path / f"bad{trial}.safetensors"
        bad.write_bytes(_damage(raw, rng))
        kind, value = _outcome(lambda: foundry.load(bad))
        if kind == "ok":  # only a harmless change may load, with exactly the saved weights
            assert all(torch.equal(value.state_dict()[k], ref[k]) for k in ref)
        refused += kind == "refused"
        if trial < 4:
            assert cli(["info", str(bad)]) == (0 if kind == "ok" else 2)
            assert "Traceback" not in capsys.readouterr().err
    print(f"fuzz checkpoints: 16 damaged, {refused} refused, {16 - refused} loaded with identical weights")
    assert refused >= 14


def test_fuzz_damaged_training_states(models, tmp_path):
    rng = np.random.default_rng(SEED + 2)
    model = models[0]
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    path = tmp_path / "state.pt"
    common.save_training_state(path, model=model, optimizer=opt, scheduler=None, epoch=1, step=2, run_config={"a": 1})
    digest = common.state_digest(common.read_training_state(path))
    raw = path.read_bytes()
    for trial in range(12):
        bad = tmp_path / f"state{trial}.pt"
        bad.write_bytes(_damage(raw, rng))
        kind, value = _outcome(lambda: common.read_training_state(bad))
        if kind == "ok":
            assert common.state_digest(value) == digest
        print(f"fuzz training state {trial}: {kind}")


def test_fuzz_damaged_token_caches(models, tmp_path):
    rng = np.random.default_rng(SEED + 3)
    teacher = models[0]
    want = expected_header(teacher_identity(teacher, "t"), layer=-1, data=["x"], num_points=256, views=1, seed=0,
                           augment=False)
    clouds = torch.rand(3, 256, 3, generator=torch.Generator().manual_seed(0))
    folder = tmp_path / "cache"
    build_token_cache(folder, teacher, list(clouds), want)
    files = {p.name: p.read_bytes() for p in folder.iterdir()}
    ref = {n: np.array(getattr(open_token_cache(folder), n)) for n in ("points", "tokens", "centers")}
    for trial in range(10):
        name = sorted(files)[trial % len(files)]
        (folder / name).write_bytes(_damage(files[name], rng))
        kind, value = _outcome(lambda: open_token_cache(folder, want))
        if kind == "ok":
            assert all(np.array_equal(np.array(getattr(value, n)), ref[n]) for n in ref)
        print(f"fuzz token cache {name}: {kind}")
        del value
        (folder / name).write_bytes(files[name])


def test_fuzz_damaged_h5_files(tmp_path, capsys):
    from foundry.data import load_arrays
    from foundry.data.check import check_data

    rng = np.random.default_rng(SEED + 4)
    pts = (rng.random((8, 64, 3), dtype=np.float32) * 2 - 1)
    for trial in range(8):
        folder = tmp_path / f"mn{trial}"
        folder.mkdir()
        for split in ("train", "test"):
            with h5py.File(folder / f"ply_data_{split}0.h5", "w") as f:
                data = pts.copy()
                if split == "train":  # bit flips in the exponent byte of a few coordinates
                    flat = data.view(np.uint32).reshape(-1)
                    flat[rng.choice(flat.size, size=int(rng.integers(1, 4)), replace=False)] ^= 1 << 30
                f["data"] = data
                f["label"] = np.zeros((8, 1), dtype=np.int64)
            (folder / f"{split}_files.txt").write_text(f"ply_data_{split}0.h5\n")
        (folder / "shape_names.txt").write_text("a\n")
        if trial % 2:  # a truncated download instead
            p = folder / "ply_data_train0.h5"
            p.write_bytes(p.read_bytes()[: int(rng.integers(0, p.stat().st_size))])
        rep = check_data(folder)
        assert not rep.ok, f"trial {trial}: damaged data passed check-data"
        assert cli(["check-data", str(folder)]) == 1
        if trial % 2:
            with pytest.raises(FoundryInputError):
                load_arrays(str(folder), "train")
    assert "Traceback" not in capsys.readouterr().err


def test_fuzz_cli_arguments(tmp_path, capsys):
    rng = np.random.default_rng(SEED + 5)
    bad_values = ["0", "-5", "abc", "1e9999"]
    commands = [["bench", "tiny", "--points"], ["export", "tiny", "--out", str(tmp_path / "m.onnx"), "--points"],
                ["info", "tiny", "--points"], ["bench", "tiny", "--scaling", "--sizes"]]
    for _ in range(8):
        cmd = list(commands[int(rng.integers(0, len(commands)))]) + [str(rng.choice(bad_values))]
        try:
            rc = cli(cmd)
        except SystemExit as exc:  # argparse rejects non-integers itself, with usage and exit code 2
            rc = exc.code
        assert rc == 2, cmd
    for spec in ("", "   ", str(tmp_path), json.dumps({"a": 1})):
        assert cli(["info", spec]) == 2
    assert "Traceback" not in capsys.readouterr().err
