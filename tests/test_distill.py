"""`foundry distill` and the teacher token cache on tiny models (CPU, a few synthetic clouds)."""
import json

import numpy as np
import pytest
import torch

import foundry
from foundry.cli import main as cli
from foundry.models.student import FoundryStudent, student_config_for
from foundry.train.distill import distill, evaluate_tokens
from foundry.train.token_cache import open_token_cache
from foundry.validation import FoundryInputError

DATA = ["synthetic:6"]


def make_student(teacher, **kw):
    torch.manual_seed(1)
    return FoundryStudent(student_config_for("foundry-tiny", teacher, teacher="tiny", **kw))


def run(teacher_path, out, **kw):
    teacher = foundry.load(teacher_path)
    student = make_student(teacher, **kw.pop("student_kw", {}))
    args = dict(teacher_name="tiny", data=DATA, out_dir=out, epochs=2, batch_size=3, views=2, verbose=False)
    args.update(kw)
    return distill(teacher, student, **args), student


def test_distill_saves_self_describing_student(teacher_path, tmp_path):
    summary, student = run(teacher_path, tmp_path / "run", student_kw={"gate": True})
    assert summary["finished"] and len(summary["history"]) == 2
    model = foundry.load(tmp_path / "run" / "student.safetensors")
    assert model.kind == "student" and model.config.teacher == "tiny"
    info = model.checkpoint_info
    for key in ("command", "data", "epochs", "wall_time_s", "device", "final_loss", "teacher_fingerprint"):
        assert key in info
    assert info["epochs"] == 2 and np.isfinite(info["final_loss"])
    assert (tmp_path / "run" / "metrics.csv").exists()
    cache = open_token_cache(tmp_path / "run" / "token_cache")
    assert cache.tokens.shape == (2, 6, 16, 32) and cache.points.shape == (2, 6, 256, 3)
    m = evaluate_tokens(model, cache)
    assert 0 <= m["token_smoothl1"] and -1 <= m["token_cosine"] <= 1
    # the cached targets are exactly the teacher's tokens of the cached points
    teacher = foundry.load(teacher_path)
    pts, tok, cen = cache.get(np.array([1, 1]), np.array([0, 3]))
    ref, centers = teacher.forward_tokens(pts)
    torch.testing.assert_close(tok, ref, atol=2e-3, rtol=2e-3)
    assert torch.equal(cen, centers)


def test_usage_imbalance_and_balance_term(teacher_path, tmp_path):
    from foundry.models.dso import usage_imbalance

    s = 4
    assert float(usage_imbalance(torch.full((2, s), 1 / s))) == pytest.approx(0.0, abs=1e-6)
    one_hot = torch.tensor([[1.0, 0, 0, 0]])
    assert float(usage_imbalance(one_hot)) == pytest.approx(np.log(s), rel=1e-5)
    # the student reports its SuperToken usage in training only; the balance term enters the loss
    teacher = foundry.load(teacher_path)
    student = make_student(teacher).train()
    out = student.forward_supertokens(torch.rand(3, 256, 3))
    assert out["usage"].shape == (3, student.config.num_supertokens)
    torch.testing.assert_close(out["usage"].sum(-1), torch.ones(3))
    assert "usage" not in student.eval().forward_supertokens(torch.rand(3, 256, 3))
    summary, _ = run(teacher_path, tmp_path / "b", epochs=1, balance_weight=1.0)
    assert "KL(SuperToken usage" in summary["info"]["objective"]
    assert summary["run_config"]["balance_weight"] == 1.0


def test_resume_continues_exactly(teacher_path, tmp_path):
    full, a = run(teacher_path, tmp_path / "a")
    run(teacher_path, tmp_path / "b", stop_after_epoch=1)
    resumed, b = run(teacher_path, tmp_path / "b", resume=True)
    assert resumed["finished"] and len(resumed["history"]) == 2
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        torch.testing.assert_close(va, vb, msg=k)
    with pytest.raises(FoundryInputError, match="other settings"):
        run(teacher_path, tmp_path / "b", resume=True, lr=5e-4)


def test_corrupt_or_mismatched_cache_is_refused(teacher_path, tmp_path):
    run(teacher_path, tmp_path / "r", epochs=1)
    cache_dir = tmp_path / "r" / "token_cache"
    # another teacher (other weights) must not reuse the cache
    torch.manual_seed(5)
    other = foundry.create_model("tiny")
    with pytest.raises(FoundryInputError, match="other settings"):
        distill(other, make_student(other), teacher_name="tiny", data=DATA, out_dir=tmp_path / "o", epochs=1,
                batch_size=3, cache_dir=cache_dir, verbose=False)
    with open(cache_dir / "tokens.npy", "r+b") as f:
        f.seek(-7, 2)
        f.write(b"garbage")
    with pytest.raises(FoundryInputError, match="corrupt"):
        run(teacher_path, tmp_path / "r2", epochs=1, cache_dir=cache_dir)
    (cache_dir / "centers.npy").unlink()
    with pytest.raises(FoundryInputError, match="corrupt"):
        open_token_cache(cache_dir)


def test_limit_caches_only_the_subset_or_indexes_a_full_cache(teacher_path, tmp_path, monkeypatch):
    from foundry.train import token_cache
    from foundry.train.distill import subset_indices

    rows_read = []  # (clouds in the cache, rows asked for) of every training batch
    get = token_cache.TokenCache.get
    monkeypatch.setattr(token_cache.TokenCache, "get",
                        lambda self, view, index: rows_read.append((len(self), set(index.tolist()))) or get(self, view, index))
    # --limit 3: the cache holds exactly the 3 trained clouds, its header names the subset
    summary, a = run(teacher_path, tmp_path / "a", limit=3)
    cache = open_token_cache(tmp_path / "a" / "token_cache")
    assert cache.tokens.shape[:2] == (2, 3) and summary["info"]["token_cache"]["clouds"] == 3
    assert {k: cache.header["subset"][k] for k in ("of", "clouds", "seed")} == {"of": 6, "clouds": 3, "seed": 0}
    assert set().union(*(r for _, r in rows_read)) == {0, 1, 2}
    # a resumed limit run matches the uninterrupted one
    run(teacher_path, tmp_path / "b", limit=3, stop_after_epoch=1)
    _, b = run(teacher_path, tmp_path / "b", limit=3, resume=True)
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        torch.testing.assert_close(va, vb, msg=k)
    # a subset cache is never taken for a full one, nor for another seed's subset
    for kw in ({}, {"limit": 3, "seed": 1}):
        with pytest.raises(FoundryInputError, match="subset"):
            run(teacher_path, tmp_path / "x", epochs=1, cache_dir=tmp_path / "a" / "token_cache", **kw)
    # an existing cache of all the data is reused (no rebuild) and indexed by the subset's indices
    run(teacher_path, tmp_path / "full", epochs=1)
    monkeypatch.setattr(token_cache, "build_token_cache", lambda *a, **k: pytest.fail("the full cache was rebuilt"))
    rows_read.clear()
    summary, _ = run(teacher_path, tmp_path / "c", limit=3, cache_dir=tmp_path / "full" / "token_cache")
    assert summary["info"]["token_cache"]["clouds"] == 6 and {n for n, _ in rows_read} == {6}
    assert set().union(*(r for _, r in rows_read)) == set(subset_indices(6, 3, 0).tolist())


def test_cli_cache_only_with_limit_builds_the_subset_cache(teacher_path, tmp_path):
    folder = tmp_path / "cache"
    rc = cli(["distill", "--teacher", str(teacher_path), "--student", "foundry-tiny", "--data", "synthetic:6",
              "--out", str(tmp_path / "o"), "--cache", str(folder), "--views", "2", "--limit", "4", "--cache-only"])
    assert rc == 0 and not (tmp_path / "o" / "student.safetensors").exists()
    cache = open_token_cache(folder)
    assert cache.tokens.shape[:2] == (2, 4) and cache.header["subset"]["clouds"] == 4
    # the training run with the same limit and seed then reuses it as it is
    summary, _ = run(teacher_path, tmp_path / "t", limit=4, views=2, cache_dir=folder, epochs=1,
                     teacher_name=str(teacher_path))
    assert summary["info"]["token_cache"]["clouds"] == 4


def test_width_mismatch_is_a_clear_error(teacher_path, tmp_path):
    teacher = foundry.load(teacher_path)
    student = make_student(teacher, teacher_width=48)
    with pytest.raises(FoundryInputError, match="width mismatch"):
        distill(teacher, student, teacher_name="tiny", data=DATA, out_dir=tmp_path / "w", epochs=1, verbose=False)
    rc = cli(["distill", "--teacher", str(teacher_path), "--student", "foundry-tiny", "--set", "teacher_width=48",
              "--data", "synthetic:6", "--out", str(tmp_path / "w2"), "--epochs", "1"])
    assert rc == 2


def test_cli_distill_no_cache(teacher_path, tmp_path, capsys):
    rc = cli(["distill", "--teacher", str(teacher_path), "--student", "foundry-tiny", "--data", "synthetic:6",
              "--out", str(tmp_path / "c"), "--epochs", "1", "--batch-size", "3", "--no-cache",
              "--fp16-copy", str(tmp_path / "c16.safetensors")])
    assert rc == 0
    model = foundry.load(tmp_path / "c16.safetensors")
    assert model.checkpoint_info["token_cache"] is None
    summary = json.loads((tmp_path / "c" / "summary.json").read_text())
    assert summary["finished"]
    assert summary["info"]["precision"] == "32-true"  # the setting by name (was Lightning's class name, "Precision")


def test_classification_expert(teacher_path, tmp_path):
    rc = cli(["distill", "--teacher", str(teacher_path), "--student", "foundry-tiny", "--expert", "classification",
              "--data", "synthetic:6", "--out", str(tmp_path / "e"), "--epochs", "1", "--batch-size", "3"])
    assert rc == 0
    model = foundry.load(tmp_path / "e" / "student.safetensors")
    assert model.kind == "student" and model.checkpoint_info["expert"] == "classification"
    assert "labels only" in model.checkpoint_info["objective"]


def test_classification_expert_with_the_teachers_soft_targets(teacher_path, tmp_path):
    """A fair expert: a linear head fitted on the frozen teacher first, its logits as soft targets,
    and the teacher's blocks as the expert's initialisation (as the Foundry student can take them)."""
    rc = cli(["distill", "--teacher", str(teacher_path), "--student", "foundry-tiny", "--expert", "classification",
              "--data", "synthetic:6", "--out", str(tmp_path / "e"), "--epochs", "2", "--batch-size", "3",
              "--kd-weight", "0.5", "--teacher-head-epochs", "1", "--init-tokenizer"])
    assert rc == 0
    info = foundry.load(tmp_path / "e" / "student.safetensors").checkpoint_info
    assert "KL at T=2.0" in info["objective"] and info["kd_weight"] == 0.5 and np.isfinite(info["final_kl"])
    assert info["teacher_head"]["epochs"] == 1
    history = json.loads((tmp_path / "e" / "summary.json").read_text())["history"]
    assert len(history) == 2 and (tmp_path / "e" / "metrics.csv").exists()


def test_kd_expert_runs_the_teacher_once_per_cloud(teacher_path, tmp_path):
    """The soft targets come from one teacher pass over the clean clouds (not one per step), and they
    are the fitted head's logits on exactly those outputs."""
    from foundry.train import experts

    teacher = foundry.load(teacher_path)
    calls = []
    original = teacher.forward_features
    teacher.forward_features = lambda x: (calls.append(len(x)), original(x))[1]
    seen = {}
    original_targets = experts._teacher_targets

    def spy(*args, **kw):
        seen["targets"], res = original_targets(*args, **kw)
        return seen["targets"], res

    experts._teacher_targets = spy
    try:
        experts.train_classification_expert(make_student(teacher), data="synthetic:6", out_dir=tmp_path / "e",
                                            epochs=3, batch_size=4, verbose=False, teacher=teacher, kd_weight=1.0,
                                            teacher_head_epochs=2)
    finally:
        experts._teacher_targets = original_targets
    assert calls == [4, 2]  # 6 clouds in batches of 4, once, whatever the epochs of head and expert
    assert seen["targets"].shape[0] == 6 and torch.isfinite(seen["targets"]).all()


def test_segmentation_expert(teacher_path, tmp_path):
    rc = cli(["distill", "--teacher", str(teacher_path), "--student", "foundry-tiny", "--expert", "segmentation",
              "--data", "synthetic:16", "--out", str(tmp_path / "s"), "--epochs", "4", "--batch-size", "4",
              "--lr", "3e-3"])
    assert rc == 0
    model = foundry.load(tmp_path / "s" / "student.safetensors")
    info = model.checkpoint_info
    assert model.kind == "student" and info["expert"] == "segmentation" and info["role"] == "kd-expert"
    assert "labels only" in info["objective"] and info["data"] == ["synthetic:16"]
    for key in ("command", "epochs", "wall_time_s", "device", "final_loss", "final_train_point_accuracy"):
        assert key in info
    history = json.loads((tmp_path / "s" / "summary.json").read_text())["history"]
    assert len(history) == 4 and history[-1]["loss"] < history[0]["loss"]
    # chance: a uniform guess among each synthetic category's 2-4 parts is right for ~35% of the points
    assert info["final_train_point_accuracy"] > 0.4


def test_segmentation_expert_kd_on_shapenetpart_layout(teacher_path, tmp_path):
    from foundry.data.examples import write_example
    from foundry.train.experts import train_segmentation_expert

    write_example("shapenetpart_h5", tmp_path / "parts")
    teacher = foundry.load(teacher_path)
    summary = train_segmentation_expert(make_student(teacher), data=str(tmp_path / "parts"), out_dir=tmp_path / "k",
                                        epochs=1, batch_size=4, seed=0, verbose=False, teacher=teacher,
                                        kd_weight=0.5, temperature=2.0, teacher_head_epochs=1)
    info = foundry.load(tmp_path / "k" / "student.safetensors").checkpoint_info
    assert info["expert"] == "segmentation" and "KL at T=2.0" in info["objective"] and info["kd_weight"] == 0.5
    assert info["teacher_head"]["epochs"] == 1 and np.isfinite(summary["history"][-1]["kl"])


def test_segmentation_expert_refuses_data_without_parts(teacher_path, tmp_path):
    from foundry.data.examples import write_example
    from foundry.train.experts import train_segmentation_expert

    write_example("modelnet_h5", tmp_path / "mn")
    with pytest.raises(FoundryInputError, match="per-point part labels") as err:
        train_segmentation_expert(make_student(foundry.load(teacher_path)), data=str(tmp_path / "mn"),
                                  out_dir=tmp_path / "x", epochs=1, verbose=False)
    assert "kicadpart:train" in str(err.value)
    rc = cli(["distill", "--teacher", str(teacher_path), "--student", "foundry-tiny", "--expert", "segmentation",
              "--data", str(tmp_path / "mn"), "--out", str(tmp_path / "x2"), "--epochs", "1"])
    assert rc == 2 and not (tmp_path / "x2" / "student.safetensors").exists()


def test_cli_continue_with_seeded_dso_queries(teacher_path, tmp_path, capsys):
    """A trained learned-query student continues with FPS-seeded queries: everything but the query
    vectors and the new spatial prior carries over; other --set keys on a checkpoint are refused."""
    first = tmp_path / "a"
    assert cli(["distill", "--teacher", str(teacher_path), "--student", "foundry-tiny", "--data", "synthetic:6",
                "--out", str(first), "--epochs", "1", "--batch-size", "3", "--no-cache"]) == 0
    before = foundry.load(first / "student.safetensors")
    assert before.config.dso_seeding == "learned"
    assert cli(["distill", "--teacher", str(teacher_path), "--student", str(first / "student.safetensors"),
                "--set", "dso_seeding=fps", "--data", "synthetic:6", "--out", str(tmp_path / "b"),
                "--epochs", "1", "--batch-size", "3", "--no-cache", "--lr", "0"]) == 0
    after = foundry.load(tmp_path / "b" / "student.safetensors")
    assert after.config.dso_seeding == "fps" and hasattr(after.dso, "spatial_logit")
    torch.testing.assert_close(after.cau.mlp.fc2.weight, before.cau.mlp.fc2.weight)  # lr 0: carried over as is
    assert after.checkpoint_info["continued_from"]["epochs"] == 1
    capsys.readouterr()
    rc = cli(["distill", "--teacher", str(teacher_path), "--student", str(first / "student.safetensors"),
              "--set", "depth=1", "--data", "synthetic:6", "--out", str(tmp_path / "c"), "--epochs", "1"])
    assert rc == 2 and "cannot change the trained student" in capsys.readouterr().err
    rc = cli(["distill", "--teacher", str(teacher_path), "--student", str(first / "student.safetensors"),
              "--set", "dso_seeding=random", "--data", "synthetic:6", "--out", str(tmp_path / "d"), "--epochs", "1"])
    assert rc == 2 and "dso_seeding must be" in capsys.readouterr().err


def test_extra_layers_are_distilled_and_heads_only_training_keeps_other_outputs(teacher_path, tmp_path):
    """A student can reproduce several teacher blocks (as the part head reads): each extra block gets
    its own cache and loss; training only those heads leaves every other output bit-identical."""
    from foundry.models.surgery import add_extra_layers

    teacher = foundry.load(teacher_path)
    summary, student = run(teacher_path, tmp_path / "multi", student_kw={"extra_layers": [0]}, epochs=1)
    assert summary["finished"] and summary["run_config"]["extra_layers"] == [0]
    assert open_token_cache(f"{tmp_path / 'multi' / 'token_cache'}-layer0").header["layer"] == 0
    model = foundry.load(tmp_path / "multi" / "student.safetensors")
    assert model.reproduced_layers() == [0, 1]
    x = torch.rand(2, 256, 3)
    (l0, l1), _ = model.forward_layers(x, [0, -1])
    torch.testing.assert_close(l1, model.forward_tokens(x)[0])
    with pytest.raises(FoundryInputError, match="reproduces teacher blocks"):
        make_student(teacher).forward_layers(x, [0])
    # a trained single-layer student gains block 0, training only the new head
    base = make_student(teacher).eval()
    grown = add_extra_layers(base, [0]).eval()
    before = base.forward_tokens(x)[0]
    torch.testing.assert_close(grown.forward_layers(x, [0])[0][0], before)  # starts as a copy of the last layer
    distill(teacher, grown.train(), teacher_name="tiny", data=DATA, out_dir=tmp_path / "heads", epochs=1,
            batch_size=3, views=1, verbose=False, train_only="layer-heads")
    assert torch.equal(grown.eval().forward_tokens(x)[0], before)
    assert not torch.equal(grown.forward_layers(x, [0])[0][0], before)
    chain = foundry.load(tmp_path / "heads" / "student.safetensors").checkpoint_info["command_chain"]
    assert len(chain) == 1 and chain[0]["epochs"] == 1


def test_a_gated_student_learns_extra_layers_and_keeps_every_budget(teacher_path, tmp_path):
    """foundry-vits-s16-gate's last step: block heads trained on a gated student; every run-time
    budget r still runs, on the extra layer too, and the heads-only step leaves the final tokens alone."""
    from foundry.api import with_budget
    from foundry.models.surgery import add_extra_layers

    teacher = foundry.load(teacher_path)
    _, gated = run(teacher_path, tmp_path / "gate", student_kw={"gate": True, "gate_training": "budget"}, epochs=1)
    grown = add_extra_layers(foundry.load(tmp_path / "gate" / "student.safetensors"), [0])
    x = torch.rand(2, 256, 3)
    before = grown.eval().forward_tokens(x)[0]
    distill(teacher, grown.train(), teacher_name="tiny", data=DATA, out_dir=tmp_path / "heads", epochs=1,
            batch_size=3, views=1, verbose=False, train_only="layer-heads")
    model = foundry.load(tmp_path / "heads" / "student.safetensors")
    assert model.reproduced_layers() == [0, 1]
    torch.testing.assert_close(model.forward_tokens(x)[0], before)
    groups = model.config.num_groups
    for r in (0, groups // 2, groups):
        (l0, l1), _ = with_budget(model, "r", str(r)).forward_layers(x, [0, -1])
        assert l0.shape == l1.shape == before.shape and torch.isfinite(l0).all()
