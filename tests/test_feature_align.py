"""Feature alignment (train/feature_align.py, `foundry align`): the closed-form map, the aligned student's
features, checkpoints, and the command's guards."""
import json

import numpy as np
import pytest
import torch

from foundry.api import create_model
from foundry.models.checkpoint import load_checkpoint, save_checkpoint
from foundry.train.feature_align import align_features, global_features, ridge_map, without_alignment


def test_ridge_map_recovers_an_affine_map():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 6))
    a, c = rng.normal(size=(6, 4)), rng.normal(size=4)
    w, b = ridge_map(x, x @ a + c, alpha=1e-9)
    np.testing.assert_allclose(w, a, atol=1e-6)
    np.testing.assert_allclose(b, c, atol=1e-6)
    w_strong, _ = ridge_map(x, x @ a + c, alpha=100.0)
    assert np.abs(w_strong).sum() < np.abs(w).sum()  # the ridge shrinks the map
    with pytest.raises(Exception, match="positive"):
        ridge_map(x, x, alpha=0.0)


def test_aligned_student_maps_its_feature_and_keeps_its_tokens(tmp_path):
    torch.manual_seed(0)
    teacher, student = create_model("tiny").eval(), create_model("foundry-tiny").eval()
    assert "feature_align" not in student.config.to_dict()  # unaligned students serialise as before
    aligned, report = align_features(student, teacher, data=["synthetic:24"], alpha=1e-3, log=None)
    assert report["clouds"] == 24 and report["feature_mse_after"] < report["feature_mse_before"]
    assert aligned.config.feature_align and student.feature_align is None  # the input is not changed
    pts = torch.rand(3, 256, 3) * 2 - 1
    with torch.no_grad():
        raw = student.forward_features(pts)
        torch.testing.assert_close(aligned.forward_tokens(pts)[0], student.forward_tokens(pts)[0])
        torch.testing.assert_close(aligned.forward_features(pts), aligned.feature_align(raw))
    path = save_checkpoint(aligned, tmp_path / "aligned.safetensors")
    back = load_checkpoint(path)
    with torch.no_grad():
        torch.testing.assert_close(back.forward_features(pts), aligned.forward_features(pts))
    assert back.config.extra["feature_align"]["alpha"] == 1e-3
    with pytest.raises(Exception, match="already has"):
        align_features(aligned, teacher, data=["synthetic:8"], log=None)
    again, _ = align_features(aligned, teacher, data=["synthetic:24"], alpha=1e-3, refit=True, log=None)
    with torch.no_grad():  # refitting on the same clouds starts from the unaligned student: the same map
        torch.testing.assert_close(again.forward_features(pts), aligned.forward_features(pts))
    plain = without_alignment(aligned)
    assert plain.feature_align is None and "feature_align" not in plain.config.to_dict()
    with torch.no_grad():
        torch.testing.assert_close(plain.forward_features(pts), raw)


def test_identity_alignment_changes_nothing():
    torch.manual_seed(0)
    student = create_model("foundry-tiny").eval()
    same = create_model("foundry-tiny", feature_align=True).eval()
    same.load_state_dict({**student.state_dict(), **{f"feature_align.{k}": v for k, v in
                                                     same.feature_align.state_dict().items()}})
    pts = torch.rand(2, 256, 3)
    with torch.no_grad():
        torch.testing.assert_close(same.forward_features(pts), student.forward_features(pts))
    feats = global_features(student, [p.numpy() for p in pts])
    assert feats.shape == (2, student.feature_dim) and feats.dtype == np.float64


def test_align_command_writes_once(tmp_path, capsys):
    from foundry.cli import main

    out = tmp_path / "a.safetensors"
    args = ["align", "foundry-tiny", "--teacher", "tiny", "--data", "synthetic:16", "--out", str(out)]
    assert main(args) == 0
    report = json.loads(out.with_suffix(".json").read_text())
    assert report["clouds"] == 16 and report["teacher"] == "tiny"
    assert load_checkpoint(out).config.feature_align
    assert main(args) == 2 and "already exists" in capsys.readouterr().err
    assert main(["align", "foundry-tiny", "--teacher", "tiny", "--out", str(tmp_path / "b.pt")]) == 2


def test_distillation_refuses_to_continue_an_aligned_student(tmp_path):
    from foundry.train.students import student_for_run
    from foundry.validation import FoundryInputError

    torch.manual_seed(0)
    teacher, student = create_model("tiny").eval(), create_model("foundry-tiny").eval()
    aligned, _ = align_features(student, teacher, data=["synthetic:8"], log=None)
    path = save_checkpoint(aligned, tmp_path / "aligned.safetensors")
    with pytest.raises(FoundryInputError, match="feature alignment"):
        student_for_run(str(path), teacher, "tiny", {})
