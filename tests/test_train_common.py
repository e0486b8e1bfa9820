"""foundry.train.common: schedule, logger, training-state round trip and refusals, data mix."""
import csv

import numpy as np
import pytest
import torch

from foundry.train import common
from foundry.train.common import (
    RunLogger,
    cosine_with_warmup,
    load_training_state,
    make_fabric,
    parse_spec,
    save_training_state,
)
from foundry.validation import FoundryInputError


def _opt_sched(model, total=10):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    return opt, cosine_with_warmup(opt, warmup_steps=2, total_steps=total, min_lr_ratio=0.1)


def test_cosine_with_warmup_shape():
    model = torch.nn.Linear(2, 2)
    opt, sched = _opt_sched(model)
    lrs = []
    for _ in range(12):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(5e-4) and lrs[1] == pytest.approx(1e-3)
    assert all(a >= b for a, b in zip(lrs[1:10], lrs[2:10]))
    assert lrs[-1] == pytest.approx(1e-4)


def test_make_fabric_cpu_precision():
    fabric = make_fabric(devices=1, accelerator="cpu")
    assert "32" in str(fabric._precision.precision)


def test_run_logger_grows_columns_and_truncates_on_resume(tmp_path):
    log = RunLogger(tmp_path, tensorboard=False)
    log.log(1, loss=1.0)
    log.log(2, loss=0.5, lr=0.1)
    log.log(3, loss=0.25)
    log.close()
    rows = list(csv.DictReader(open(tmp_path / "metrics.csv")))
    assert [r["step"] for r in rows] == ["1", "2", "3"] and rows[1]["lr"] == "0.1"
    log = RunLogger(tmp_path, resume_step=2, tensorboard=False)
    log.log(3, loss=0.3)
    rows = list(csv.DictReader(open(tmp_path / "metrics.csv")))
    assert [r["step"] for r in rows] == ["1", "2", "3"] and rows[2]["loss"] == "0.3"


def test_training_state_round_trip_and_refusals(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    opt, sched = _opt_sched(model)
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    sched.step()
    cfg = {"objective": "mae", "model": {"width": 3}, "batch_size": 4}
    path = tmp_path / "state.pt"
    save_training_state(path, model=model, optimizer=opt, scheduler=sched, epoch=1, step=7, run_config=cfg,
                        extra={"note": "x"})
    expected_next = torch.rand(3)

    model2 = torch.nn.Linear(3, 2)
    opt2, sched2 = _opt_sched(model2)
    epoch, step, extra = load_training_state(path, model2, opt2, sched2, cfg)
    assert (epoch, step, extra) == (1, 7, {"note": "x"})
    assert torch.equal(model2.weight, model.weight)
    assert sched2.last_epoch == sched.last_epoch
    assert opt2.state_dict()["state"][0]["step"] == opt.state_dict()["state"][0]["step"]
    assert torch.equal(torch.rand(3), expected_next)  # RNG restored

    with pytest.raises(FoundryInputError, match="objective"):
        load_training_state(path, model2, opt2, sched2, {**cfg, "objective": "jepa"})
    with pytest.raises(FoundryInputError, match="no training state"):
        load_training_state(tmp_path / "missing.pt", model2, opt2, sched2, cfg)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(FoundryInputError, match="cannot read"):
        load_training_state(tmp_path / "junk.pt", model2, opt2, sched2, cfg)


def test_parse_spec():
    assert parse_spec("modelnet10:train") == ("modelnet10", "train")
    assert parse_spec("synthetic:50") == ("synthetic:50", "train")
    assert parse_spec("/data/shapenet55") == ("/data/shapenet55", "train")
    assert parse_spec("/data/x:test") == ("/data/x", "test")


def test_unlabelled_mix_synthetic():
    ds = common.unlabelled_mix(["synthetic:6", "synthetic:4"], num_points=128, seed=0)
    assert len(ds) == 10
    item = ds[7]
    assert item["points"].shape == (ds.points_per_cloud, 3) and item["points"].dtype == torch.float32
    assert ds.points_per_cloud >= 128


def test_unlabelled_mix_bad_inputs(monkeypatch, tmp_path):
    with pytest.raises(FoundryInputError, match="no training data"):
        common.unlabelled_mix([], num_points=64)
    def fake(arrays):
        monkeypatch.setattr(common, "load_arrays", lambda spec, split, num_points=None: arrays)

    fake({"points": np.zeros((0, 100, 3), np.float32)})
    with pytest.raises(FoundryInputError, match="empty"):
        common.unlabelled_mix(["x"], num_points=64)
    fake({"points": np.zeros((5, 100, 6), np.float32)})
    with pytest.raises(FoundryInputError, match="shape"):
        common.unlabelled_mix(["x"], num_points=64)
    bad = np.zeros((5, 100, 3), np.float32)
    bad[2, 3, 1] = np.nan
    fake({"points": bad})
    with pytest.raises(FoundryInputError, match="NaN"):
        common.unlabelled_mix(["x"], num_points=64)
    fake({"points": np.zeros((5, 32, 3), np.float32)})
    with pytest.raises(FoundryInputError, match="fewer"):
        common.unlabelled_mix(["x"], num_points=64)
