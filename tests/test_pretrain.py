"""foundry pretrain: both objectives, exact resume, refusals of bad input (tiny preset, synthetic data)."""
import math
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from foundry.train.common import read_training_state
from foundry.train.objectives import build_objective, greedy_walk_order
from foundry.train.pretrain import PretrainConfig, pretrain
from foundry.validation import FoundryInputError


def cfg(tmp_path, name="run", **kw):
    base = dict(preset="tiny", objective="mae", data=["synthetic:12"], epochs=2, batch_size=4, out=str(tmp_path / name),
                progress=False, log_every=1, threads=1)
    base.update(kw)
    return PretrainConfig(**base)


@pytest.mark.parametrize("objective", ["mae", "jepa"])
def test_objective_runs_and_learns(tmp_path, objective):
    s = pretrain(cfg(tmp_path, objective=objective, epochs=3))
    assert s["complete"] and s["steps"] == 9 and math.isfinite(s["final_loss"])
    import csv

    rows = list(csv.DictReader(open(tmp_path / "run" / "metrics.csv")))
    losses = [float(r["loss"]) for r in rows]
    assert len(losses) == 9 and all(math.isfinite(x) for x in losses)
    assert min(losses[-3:]) < losses[0]
    import foundry

    enc = foundry.load(str(tmp_path / "run" / "encoder.safetensors"))
    assert enc.checkpoint_info["objective"] == objective and enc.checkpoint_info["steps"] == 9
    assert enc.forward_features(torch.rand(2, 256, 3)).shape == (2, enc.feature_dim)


def test_objective_pieces():
    from foundry.api import create_model

    c = torch.tensor([[[0.0, 0, 0], [3, 0, 0], [1, 0, 0], [2, 0, 0]]])
    assert greedy_walk_order(c).tolist() == [[0, 2, 3, 1]]
    jepa = build_objective("jepa", create_model("tiny"))
    targets, context = jepa.sample_blocks(3, 16, torch.Generator().manual_seed(0))
    for t, ctx in zip(targets, context):
        flat = t.flatten().tolist()
        assert len(set(flat)) == len(flat)  # blocks do not overlap
        assert all(row.tolist() == list(range(row[0], row[0] + len(row))) for row in t)  # contiguous
        assert set(flat).isdisjoint(ctx.tolist()) and len(flat) + len(ctx) == 16
    # Point-JEPA's contiguous context: a run of the non-target sequence, about that share of the patches
    jepa = build_objective("jepa", create_model("tiny"), context_ratio=(0.4, 0.5))
    for seed in range(5):
        targets, context = jepa.sample_blocks(3, 64, torch.Generator().manual_seed(seed))
        free = 64 - targets[0].numel()
        assert 0.4 * free - 1 <= context.shape[1] <= 0.5 * free + 1
        for t, ctx in zip(targets, context):
            free = [i for i in range(64) if i not in set(t.flatten().tolist())]
            first = free.index(int(ctx[0]))
            assert ctx.tolist() == free[first:first + len(ctx)]  # contiguous among the non-target patches
    from foundry.validation import FoundryInputError

    for bad in ((0.6, 0.4), (0.4,), (0.0, 0.5), (0.5, 1.5)):
        with pytest.raises(FoundryInputError, match="context ratio"):
            build_objective("jepa", create_model("tiny"), context_ratio=bad)


@pytest.mark.parametrize("objective", ["mae", "jepa"])
def test_resume_is_exact(tmp_path, objective):
    full = pretrain(cfg(tmp_path, "full", objective=objective, max_steps=5))
    pretrain(cfg(tmp_path, "split", objective=objective, max_steps=2))  # stops mid-epoch 0
    assert read_training_state(tmp_path / "split" / "training_state.pt")["step"] == 2
    resumed = pretrain(cfg(tmp_path, "split", objective=objective, max_steps=5, resume="auto"))
    assert resumed["steps"] == full["steps"] == 5
    a = read_training_state(tmp_path / "full" / "training_state.pt")
    b = read_training_state(tmp_path / "split" / "training_state.pt")
    assert (a["epoch"], a["step"]) == (b["epoch"], b["step"]) == (1, 5)
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    assert a["scheduler"] == b["scheduler"]
    sa, sb = a["optimizer"]["state"], b["optimizer"]["state"]
    assert all(torch.equal(sa[i]["exp_avg"], sb[i]["exp_avg"]) for i in sa)
    assert torch.equal(a["rng"]["torch"], b["rng"]["torch"])
    la = (tmp_path / "full" / "metrics.csv").read_text()
    lb = (tmp_path / "split" / "metrics.csv").read_text()
    assert [r.split(",")[:3] for r in la.splitlines()] == [r.split(",")[:3] for r in lb.splitlines()]


def test_resume_refusals(tmp_path):
    pretrain(cfg(tmp_path, max_steps=1))
    with pytest.raises(FoundryInputError, match="objective"):
        pretrain(cfg(tmp_path, objective="jepa", resume="auto"))
    with pytest.raises(FoundryInputError, match="batch_size"):
        pretrain(cfg(tmp_path, batch_size=2, resume="auto"))
    with pytest.raises(FoundryInputError, match="already holds a run"):
        pretrain(cfg(tmp_path))
    with pytest.raises(FoundryInputError, match="no training state"):
        pretrain(cfg(tmp_path, "other", resume=str(tmp_path / "nothing" / "state.pt")))
    (tmp_path / "bad.pt").write_bytes(b"garbage")
    with pytest.raises(FoundryInputError, match="cannot read"):
        pretrain(cfg(tmp_path, "other", resume=str(tmp_path / "bad.pt")))


def test_bad_data(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FoundryInputError):
        pretrain(cfg(tmp_path, data=[str(empty)]))
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "train_files.txt").write_text("ply_data_train0.h5\n")
    (tmp_path / "broken" / "ply_data_train0.h5").write_bytes(b"not hdf5")
    with pytest.raises(FoundryInputError):
        pretrain(cfg(tmp_path, data=[str(tmp_path / "broken")]))
    with pytest.raises(FoundryInputError, match="fewer than one batch"):
        pretrain(cfg(tmp_path, data=["synthetic:3"]))
    with pytest.raises(FoundryInputError, match="no training data"):
        pretrain(cfg(tmp_path, data=[]))


def test_cli_ctrl_c_saves_state_and_resumes(tmp_path):
    out = tmp_path / "cli"
    cmd = [sys.executable, "-m", "foundry.cli", "pretrain", "--preset", "tiny", "--data", "synthetic:12",
           "--batch-size", "4", "--epochs", "500", "--out", str(out), "--threads", "1", "--no-progress",
           "--log-every", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while not (out / "metrics.csv").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    state = read_training_state(out / "training_state.pt")
    assert state["step"] >= 1
    s = pretrain(cfg(tmp_path, "cli", epochs=500, resume="auto", max_steps=state["step"] + 1))
    assert s["steps"] == state["step"] + 1


def test_max_minutes_writes_encoder_and_resumes(tmp_path):
    s = pretrain(cfg(tmp_path, max_minutes=1e-9))
    assert s["steps"] == 1 and not s["complete"]
    assert (tmp_path / "run" / "encoder.safetensors").exists()
    s = pretrain(cfg(tmp_path, resume="auto"))
    assert s["steps"] == 6 and s["complete"]


def test_svm_validation_is_logged(tmp_path):
    s = pretrain(cfg(tmp_path, epochs=1, val_every=1, val_data="synthetic:16"))
    assert len(s["val"]) == 1 and 0.0 <= s["val"][0]["val_svm_acc"] <= 1.0
    assert "val_svm_acc" in (tmp_path / "run" / "metrics.csv").read_text().splitlines()[0]


def test_jepa_ema_moves_the_target_by_the_set_momentum():
    from foundry.api import create_model

    torch.manual_seed(0)
    jepa = build_objective("jepa", create_model("tiny"), predictor_depth=1, ema=(0.9, 1.0))
    with torch.no_grad():
        for p in jepa.encoder.parameters():
            p.add_(torch.randn_like(p))  # the online encoder has moved away from the target
    before = [p.clone() for p in jepa.target.parameters()]
    assert jepa.momentum(0, 10) == pytest.approx(0.9) and jepa.momentum(5, 10) == pytest.approx(0.95)
    assert jepa.after_step(5, 10)["ema"] == pytest.approx(0.95)
    for old, new, online in zip(before, jepa.target.parameters(), jepa.encoder.parameters()):
        torch.testing.assert_close(new, 0.95 * old + 0.05 * online)
    assert not any(p.requires_grad for p in jepa.target.parameters())


def test_jepa_context_path_never_sees_target_patches():
    """Changing the points of the target patches changes the targets but not the prediction: the
    online encoder and the predictor read the context patches (and the targets' positions) only."""
    from foundry.api import create_model

    torch.manual_seed(0)
    jepa = build_objective("jepa", create_model("tiny"), predictor_depth=1).eval()
    x = torch.rand(1, 256, 3)
    nbhd, centers = jepa.encoder.group(x)
    order = greedy_walk_order(centers)[0]  # forward walks the patches in this order
    targets, _ = jepa.sample_blocks(1, centers.shape[1], torch.Generator().manual_seed(1))
    hidden = order[targets.reshape(-1)]  # the target patches, as grouped
    changed = nbhd.clone()
    changed[:, hidden] = torch.rand_like(changed[:, hidden])
    seen = {}
    jepa.predictor_proj.register_forward_hook(lambda m, i, o: seen.setdefault("pred", []).append(o.detach()))
    other = nbhd.clone()
    context_patch = order[[i for i in range(centers.shape[1]) if i not in set(targets.reshape(-1).tolist())][0]]
    other[:, context_patch] = torch.rand_like(other[:, context_patch])
    for patches in (nbhd, changed, other):
        jepa.encoder.group = lambda points, patches=patches: (patches, centers)
        with torch.no_grad():
            loss, _ = jepa(x, generator=torch.Generator().manual_seed(1))
        seen.setdefault("loss", []).append(float(loss))
    torch.testing.assert_close(seen["pred"][0], seen["pred"][1])
    assert seen["loss"][0] != seen["loss"][1]  # the targets did change
    assert not torch.allclose(seen["pred"][0], seen["pred"][2])  # a context patch is seen
