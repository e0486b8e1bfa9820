"""Corrupted distillation views (robustness training) on tiny models."""
import json

import pytest
import torch

import foundry
from foundry.cli import main as cli
from foundry.models.patches import make_patches
from foundry.models.student import FoundryStudent, student_config_for
from foundry.train.corrupted_views import CorruptedBatch, CorruptedViews
from foundry.train.distill import distill
from foundry.validation import FoundryInputError


def _student(teacher):
    torch.manual_seed(1)
    return FoundryStudent(student_config_for("foundry-tiny", teacher, teacher="tiny"))


def test_corrupt_batch_is_seeded_by_step_and_keeps_the_clean_centres(teacher_path):
    config = _student(foundry.load(teacher_path)).config
    pts = torch.rand(4, 256, 3) * 2 - 1
    views = CorruptedViews(["jitter", "partial"], share=1.0, seed=3)
    a = views.corrupt_batch(pts, step=5, config=config, num_groups=16)
    b = views.corrupt_batch(pts, step=5, config=config, num_groups=16)
    c = views.corrupt_batch(pts, step=6, config=config, num_groups=16)
    assert a.points.shape == pts.shape and a.points.dtype == pts.dtype
    assert a.rows.tolist() == [0, 1, 2, 3] and torch.equal(a.points, b.points) and not torch.equal(a.points, c.points)
    assert not torch.equal(a.points, pts)  # every row corrupted, the input untouched
    assert torch.equal(a.clean_centers, make_patches(pts, config, 16)[1])
    half = CorruptedViews(["jitter"], share=0.5, seed=0)
    shares = [half.corrupt_batch(pts, s, config, 16).rows.numel() for s in range(40)]
    assert 0 < sum(shares) < 160  # some rows of some batches, not all
    for s in range(5):
        d = half.corrupt_batch(pts, s, config, 16)
        untouched = [i for i in range(4) if i not in d.rows.tolist()]
        assert torch.equal(d.points[untouched], pts[untouched])


def test_targets_follow_the_nearest_clean_centre():
    target = torch.arange(2 * 5 * 3, dtype=torch.float32).reshape(2, 5, 3)
    clean = torch.rand(1, 5, 3)
    perm = torch.tensor([4, 0, 3, 1, 2])
    student_centres = torch.rand(2, 5, 3)
    student_centres[1] = clean[0, perm] + 1e-4  # row 1 corrupted: its patches sit at permuted clean centres
    batch = CorruptedBatch(torch.rand(2, 8, 3), torch.tensor([1]), clean)
    tokens, layers, pooled = CorruptedViews.targets(batch, student_centres, target, {3: target + 100}, "max")
    assert torch.equal(tokens[0], target[0])  # a clean row keeps its targets
    assert torch.equal(tokens[1], target[1, perm]) and torch.equal(layers[3][1], target[1, perm] + 100)
    torch.testing.assert_close(pooled, target.amax(1))  # the clean cloud's pooled feature, not the remapped one


def test_frame_moving_families_and_bad_shares_are_refused():
    with pytest.raises(FoundryInputError, match="frame"):
        CorruptedViews(["scale"])
    with pytest.raises(FoundryInputError, match="unknown corruption"):
        CorruptedViews(["fog"])
    with pytest.raises(FoundryInputError, match="share"):
        CorruptedViews(["jitter"], share=0.0)


def test_distill_with_corrupted_views_records_them_and_resumes_exactly(teacher_path, tmp_path):
    def go(out, **kw):
        teacher = foundry.load(teacher_path)
        student = _student(teacher)
        summary = distill(teacher, student, teacher_name="tiny", data=["synthetic:6"], out_dir=out, epochs=2,
                          batch_size=3, views=1, verbose=False,
                          corrupted_views={"families": ["jitter", "drop_local", "partial"], "share": 0.5}, **kw)
        return summary, student

    full, a = go(tmp_path / "a")
    assert full["finished"] and full["run_config"]["corrupted_views"]["share"] == 0.5
    assert foundry.load(tmp_path / "a" / "student.safetensors").checkpoint_info["corrupted_views"]["families"] == [
        "jitter", "drop_local", "partial"]
    go(tmp_path / "b", stop_after_epoch=1)
    resumed, b = go(tmp_path / "b", resume=True)
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        torch.testing.assert_close(va, vb, msg=k)


def test_cli_corrupted_views_default(teacher_path, tmp_path):
    rc = cli(["distill", "--teacher", str(teacher_path), "--student", "foundry-tiny", "--data", "synthetic:6",
              "--out", str(tmp_path / "c"), "--epochs", "1", "--batch-size", "3", "--views", "1",
              "--corrupted-views", "default", "--corrupted-share", "1.0"])
    assert rc == 0
    summary = json.loads((tmp_path / "c" / "summary.json").read_text())
    assert summary["run_config"]["corrupted_views"] == {
        "families": ["jitter", "drop_local", "add_local", "partial"], "share": 1.0}
    assert summary["history"][-1].get("corrupted_share", 1.0) == 1.0
