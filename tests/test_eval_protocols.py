"""Evaluation protocols: metrics against hand-computed values, each protocol end to end on tiny
models and tiny synthetic data, resume, and refusals of bad input."""
import json

import numpy as np
import pytest
import torch

import foundry
from foundry import FoundryInputError
from foundry.eval import fewshot, fidelity, partseg
from foundry.eval.common import Split, default_layers, load_split, stratified_cap
from foundry.eval.runner import EvalContext, run_eval

DATA = "synthetic:48"  # 8 categories x 6 clouds per split, with part labels
TINY = {  # small everything so that the whole file runs in seconds
    "svm": {"data": DATA, "num_points": 256, "train_per_class": None, "test_per_class": None},
    "probe": {"data": DATA, "num_points": 256, "epochs": 5, "hidden": 32},
    "finetune": {"data": DATA, "num_points": 256, "epochs": 1, "batch_size": 16, "train_per_class": 3,
                 "test_per_class": 2},
    "fewshot": {"data": DATA, "num_points": 256, "settings": [[3, 2]], "n_query": 2, "folds": 3, "per_class": None},
    "partseg": {"data": DATA, "num_points": 256, "epochs": 2, "train_per_class": 2, "test_per_class": 2,
                "proj_dim": 16, "point_dim": 8, "hidden": 16},
    "fidelity": {"data": DATA, "num_points": 256, "per_class": 2},
    "transfer": {"data": DATA, "num_points": 256, "seg_data": DATA, "seg_num_points": 256, "epochs": 2,
                 "seg_per_class": 2, "seg_test_per_class": 2, "proj_dim": 16, "point_dim": 8, "hidden": 16},
}


def tiny(seed=0):
    torch.manual_seed(seed)
    return foundry.create_model("tiny").eval()


# ----------------------------------------------------------------------------- metrics by hand

def test_shape_iou_absent_part_counts_one():
    gt = np.array([0, 0, 1, 1])
    pred = np.array([0, 1, 1, 1])
    # part 0: I=1 U=2 -> 0.5; part 1: I=2 U=3 -> 2/3; part 2 absent in both -> 1
    assert partseg.shape_iou(pred, gt, [0, 1, 2]) == pytest.approx((0.5 + 2 / 3 + 1.0) / 3)
    # a part predicted but absent from the ground truth counts 0
    assert partseg.shape_iou(np.array([2, 2]), np.array([0, 0]), [0, 2]) == 0.0


def test_class_and_instance_miou():
    cp = {0: [0, 1], 1: [2, 3]}
    preds = [np.array([0, 0]), np.array([0, 1]), np.array([2, 3])]
    gts = [np.array([0, 0]), np.array([0, 0]), np.array([2, 2])]
    # shape ious: cat0 -> 1.0 (part 1 absent in both); cat0 -> (0.5 + 0) / 2 = 0.25; cat1 -> (0.5 + 0) / 2
    res = partseg.segmentation_miou(preds, gts, [0, 0, 1], cp)
    assert res["instance_miou"] == pytest.approx(100 * (1.0 + 0.25 + 0.25) / 3)
    assert res["class_miou"] == pytest.approx(100 * ((1.0 + 0.25) / 2 + 0.25) / 2)


def test_prediction_restricted_to_category_parts():
    mask = partseg.category_mask({0: [0, 1], 1: [2]}, 2, 3)
    assert mask.tolist() == [[True, True, False], [False, False, True]]


def test_interpolation_weights():
    centers = torch.tensor([[[0.0, 0, 0], [1.0, 0, 0]]])
    feats = torch.tensor([[[0.0], [3.0]]])
    pts = torch.tensor([[[0.25, 0, 0], [1.0, 0, 0]]])
    from foundry.models.heads import interpolate

    out = interpolate(pts, centers, feats, k=2)
    # weights 1/0.25 and 1/0.75 -> 0.75 / 0.25 split -> 0.75; a point on a centre takes its value
    assert out[0, 0, 0].item() == pytest.approx(0.75, abs=1e-5)
    assert out[0, 1, 0].item() == pytest.approx(3.0, abs=1e-4)


def test_svm_on_linearly_separable_data():
    from foundry.eval.svm import linear_svm_eval

    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 4))
    y = (x[:, 0] > 0).astype(int)
    x[:, 0] += np.where(y == 1, 2.0, -2.0)  # a clear margin
    res = linear_svm_eval(x[:40], y[:40], x[40:], y[40:], seeds=(0, 1, 2))
    assert res["accuracy_mean"] == 1.0 and res["accuracy_std"] == 0.0


def test_linear_cka():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 8))
    q, _ = np.linalg.qr(rng.normal(size=(8, 8)))
    assert fidelity.linear_cka(x, x) == pytest.approx(1.0)
    assert fidelity.linear_cka(x, 3.0 * x @ q + 1.0) == pytest.approx(1.0)  # invariant to rotation, scale, shift
    assert fidelity.linear_cka(x, rng.normal(size=(200, 8))) < 0.15


def test_fewshot_splits_deterministic_and_disjoint(tmp_path):
    labels = np.repeat(np.arange(6), 10)
    a = fewshot.make_splits(labels, 3, 2, 4, folds=5, seed=7).episodes
    b = fewshot.make_splits(labels, 3, 2, 4, folds=5, seed=7).episodes
    c = fewshot.make_splits(labels, 3, 2, 4, folds=5, seed=8).episodes
    assert a == b and a != c and len(a) == 5
    for ep in a:
        assert len(ep["support"]) == 6 and len(ep["query"]) == 12
        assert not set(ep["support"]) & set(ep["query"])
        assert len(set(labels[ep["support"]])) == 3
    path = tmp_path / "s.json"
    first = fewshot.load_or_make_splits(path, labels, 3, 2, 4, 5, 7, "x")
    assert first == a and json.loads(path.read_text())["episodes"] == first
    path.write_text(path.read_text().replace('"seed": 7', '"seed": 7 '))  # still the same splits: reused
    assert fewshot.load_or_make_splits(path, labels, 3, 2, 4, 5, 7, "x") == first
    # saved splits of other data are not applied: drawn again for this data
    other = fewshot.load_or_make_splits(path, labels[::-1].copy(), 3, 2, 4, 5, 7, "y")
    assert json.loads(path.read_text())["dataset_checksum"] == "y" and len(other) == 5
    # queries from another split (support from train, queries from test)
    q = fewshot.make_splits(labels, 3, 2, 9, folds=2, seed=0, query_labels=np.repeat(np.arange(6), 9)).episodes
    assert all(len(ep["query"]) == 27 for ep in q)
    with pytest.raises(FoundryInputError, match="enough examples"):
        fewshot.make_splits(labels, 3, 8, 4, folds=1, seed=0)


def test_fewshot_episode_perfect_on_separated_features():
    labels = np.repeat(np.arange(3), 6)
    feats = np.eye(3)[labels] * 5 + np.random.default_rng(0).normal(scale=0.1, size=(18, 3))
    ep = fewshot.make_splits(labels, 3, 2, 4, folds=1, seed=0).episodes[0]
    for clf in ("svm", "logreg", "centroid"):
        assert fewshot.episode_accuracy(feats, labels, ep, clf) == 100.0


def test_stratified_cap_and_default_layers():
    labels = np.array([0] * 10 + [1] * 3)
    idx = stratified_cap(labels, 4)
    assert (labels[idx] == 0).sum() == 4 and (labels[idx] == 1).sum() == 3
    assert np.array_equal(idx, stratified_cap(labels, 4))
    assert default_layers(12) == [3, 7, 11] and default_layers(6) == [1, 3, 5] and default_layers(2) == [0, 1]


# ----------------------------------------------------------------------------- end to end

def test_all_protocols_run_and_resume(tmp_path):
    logs = []
    protos = list(TINY)
    res = run_eval(tiny(0), protos, seeds=[0, 1, 2], out_dir=tmp_path, overrides=TINY, reference=tiny(1),
                   batch_size=16, log=logs.append, name="tiny-a")
    for p in protos:
        summ = res["protocols"][p]["summary"]
        assert summ and all(s["n"] == 3 for s in summ.values()), p
    assert 0 <= res["protocols"]["svm"]["summary"]["accuracy"]["mean"] <= 100
    assert res["protocols"]["partseg"]["details"]["0"]["layers"] == [0, 1]  # both blocks of the 2-block tiny
    assert "acc_3w2s_minus_ref" in res["protocols"]["fewshot"]["summary"]
    assert res["protocols"]["fewshot"]["pooled"]["acc_3w2s"]["all_folds"]["n"] == 9
    saved = json.loads((tmp_path / "results.json").read_text())
    for key in ("seeds", "versions", "git", "device", "wall_time_s"):
        assert key in saved
    assert saved["protocols"]["svm"]["data_checksums"]["train"]
    assert (tmp_path / "results.md").read_text().count("| svm |") == 1
    assert (tmp_path / "heads" / "partseg_seed0.safetensors").exists()

    # resume: everything is skipped, values are identical
    logs.clear()
    again = run_eval(tiny(0), protos, seeds=[0, 1, 2], out_dir=tmp_path, overrides=TINY, reference=tiny(1),
                     log=logs.append, name="tiny-a")
    assert not any("running" in m for m in logs)
    assert again["protocols"]["svm"]["per_seed"] == res["protocols"]["svm"]["per_seed"]
    # a published folder that kept results.json but not runs/: every seed is restored from it, none rerun
    import shutil
    shutil.rmtree(tmp_path / "runs")
    logs.clear()
    restored = run_eval(tiny(0), protos, seeds=[0, 1, 2], out_dir=tmp_path, overrides=TINY, reference=tiny(1),
                        log=logs.append, name="tiny-a")
    assert not any("running" in m for m in logs)
    assert restored["protocols"]["svm"]["details"] == res["protocols"]["svm"]["details"]
    assert json.loads((tmp_path / "runs" / "svm" / "seed_2.json").read_text())["restored_from"] == "results.json"
    # a lost seed result (in neither place) is recomputed, alone
    (tmp_path / "runs" / "probe" / "seed_1.json").unlink()
    saved = json.loads((tmp_path / "results.json").read_text())
    del saved["protocols"]["probe"]["per_seed"]["1"]
    (tmp_path / "results.json").write_text(json.dumps(saved))
    logs.clear()
    run_eval(tiny(0), ["probe"], seeds=[0, 1, 2], out_dir=tmp_path, overrides=TINY, log=logs.append, name="tiny-a")
    assert [m for m in logs if "running" in m] == ["[probe seed 1] running on tiny-a ..."]
    assert set(json.loads((tmp_path / "results.json").read_text())["protocols"]) == set(protos)  # others kept
    # another model in the same folder is refused, not mixed in
    with pytest.raises(FoundryInputError, match="results of another model"):
        run_eval(tiny(5), ["probe"], seeds=[0], out_dir=tmp_path, overrides=TINY, log=logs.append)


def test_fidelity_of_a_model_with_itself():
    m = tiny(0)
    ctx = EvalContext(m, "t", reference=m)
    res = fidelity.run(ctx, TINY["fidelity"] | {"beta": 1.0, "split": "test"}, seed=0)["metrics"]
    assert res["smooth_l1"] == pytest.approx(0.0, abs=1e-6)
    assert res["cosine"] == pytest.approx(1.0, abs=1e-5)
    assert res["cka_tokens"] == pytest.approx(1.0, abs=1e-5)


def test_partseg_head_of_another_width_is_refused(tmp_path):
    settings = dict(partseg.DEFAULTS) | TINY["partseg"]
    ctx = EvalContext(tiny(0), "tiny", out_dir=tmp_path)
    partseg.run(ctx, settings, seed=0)
    head = tmp_path / "heads" / "partseg_seed0.safetensors"
    # the saved head works on its own model
    ok = partseg.run(EvalContext(tiny(0), "tiny"), settings | {"head": str(head)}, seed=0)
    assert ok["details"]["head_trained"] is False
    wide = foundry.create_model("tiny", width=48, heads=2).eval()
    with pytest.raises(FoundryInputError, match="tokens 64 wide.*tokens 96 wide"):
        partseg.run(EvalContext(wide, "wide"), settings | {"head": str(head)}, seed=0)


def test_partseg_without_part_labels_is_refused():
    ctx = EvalContext(tiny(0), "tiny")
    pts = np.random.default_rng(0).normal(size=(6, 256, 3)).astype(np.float32)
    ctx._memo[("split", "nolabels", "trainval", 256, None)] = Split(pts, np.arange(6) % 2, spec="nolabels",
                                                                   split="train")
    ctx._memo[("split", "nolabels", "test", 256, None)] = Split(pts, np.arange(6) % 2, spec="nolabels", split="test")
    settings = dict(partseg.DEFAULTS) | {"data": "nolabels", "num_points": 256, "seeded_points": False}
    with pytest.raises(FoundryInputError, match="no per-point part labels"):
        partseg.run(ctx, settings, seed=0)
    with pytest.raises(FoundryInputError, match="'modelnet10' .* no per-point part labels"):  # the real loader
        load_split("modelnet10", "test", need_parts=True)


def test_unknown_setting_and_protocol_are_refused(tmp_path):
    with pytest.raises(FoundryInputError, match="no setting 'epoch'"):
        run_eval(tiny(0), ["probe"], seeds=[0], out_dir=tmp_path, overrides={"probe": {"epoch": 3}})
    with pytest.raises(FoundryInputError, match="unknown protocol"):
        run_eval(tiny(0), ["knn"], seeds=[0], out_dir=tmp_path)
    with pytest.raises(FoundryInputError, match="--reference"):
        run_eval(tiny(0), ["fidelity"], seeds=[0], out_dir=tmp_path, overrides=TINY)


def test_finetune_voting_is_labelled_and_backbone_untouched():
    from foundry.eval import finetune

    m = tiny(0)
    before = {k: v.clone() for k, v in m.state_dict().items()}
    settings = dict(finetune.DEFAULTS) | TINY["finetune"] | {"vote": 2}
    res = finetune.run(EvalContext(m, "tiny"), settings, seed=0)
    assert set(res["metrics"]) == {"accuracy_vote2", "mean_class_accuracy_vote2"}
    assert res["details"]["voting"] == 2
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())  # fine-tuned a copy
