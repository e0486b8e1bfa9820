"""Robustness: each corruption seeded, shape and dtype preserving, identity at severity 0 and doing
what its name says at severity 5; the partial view hides the far side of a sphere; the outlier
filter's backends agree and catch stray points; the protocol and compare's mCE on tiny models."""
import json

import numpy as np
import pytest
import torch
from scipy.spatial import cKDTree

import foundry
from foundry import FoundryInputError
from foundry.data.corruptions import (FAMILIES, LEVELS, change_density, corrupt, hidden_point_removal, partial_view,
                                      resample)
from foundry.eval.corruption_error import robustness_summary
from foundry.ops.outliers import neighbour_distance, outlier_mask

N = 512


def sphere(n=N, seed=0):
    x = np.random.default_rng(seed).normal(size=(n, 3))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def clouds(m=3):
    return np.stack([sphere(seed=i) * np.array([1.0, 0.6, 0.3], np.float32) for i in range(m)])


@pytest.mark.parametrize("family", FAMILIES + ("partial",))
def test_corruption_seeded_shape_dtype_identity(family):
    pts = clouds()
    a, sa = corrupt(pts, family, 3, seed=7)
    b, sb = corrupt(pts, family, 3, seed=7)
    c, _ = corrupt(pts, family, 3, seed=8)
    assert np.array_equal(a, b) and np.array_equal(sa, sb)  # seeded, deterministic
    assert not np.array_equal(a, c)  # another seed, another corruption
    assert a.shape == pts.shape and a.dtype == pts.dtype and sa.shape == pts.shape[:2] and sa.dtype == np.int64
    one, _ = corrupt(pts[1].astype(np.float64), family, 3, seed=7)  # one cloud, float64
    assert one.shape == pts[1].shape and one.dtype == np.float64
    same, src = corrupt(pts, family, 0, seed=7)
    assert np.array_equal(same, pts) and np.array_equal(src, np.tile(np.arange(N), (3, 1)))  # severity 0: identity
    assert not np.array_equal(a, pts)


def test_severity_five_does_what_the_name_says():
    pts = clouds(2)
    k = lambda count: round(count * N / 1024)  # noqa: E731  counts are given per 1024 points

    out, _ = corrupt(pts, "jitter", 5, 0)
    assert np.std(out - pts) == pytest.approx(LEVELS["jitter"][4], rel=0.05)

    out, _ = corrupt(pts, "scale", 5, 0)
    assert np.allclose(np.linalg.norm(out, axis=-1).max(1), 1.0) and np.allclose(out.mean(1), 0.0, atol=1e-6)
    ratio = np.ptp(out, axis=1) / np.ptp(pts, axis=1)
    assert (ratio.max(1) / ratio.min(1) > 1.05).all() and (ratio.max(1) / ratio.min(1) <= 2.0 ** 2).all()

    out, src = corrupt(pts, "rotate", 5, 0)
    for p, o in zip(pts, out):
        r, *_ = np.linalg.lstsq(p.astype(np.float64), o.astype(np.float64), rcond=None)
        r = r.T
        assert np.allclose(r @ r.T, np.eye(3), atol=1e-4)
        angles = np.degrees([np.arctan2(r[2, 1], r[2, 2]), -np.arcsin(r[2, 0]), np.arctan2(r[1, 0], r[0, 0])])
        assert np.abs(angles).max() <= 30.0 + 1e-3 and np.abs(angles).max() > 1.0

    _, src = corrupt(pts, "drop_global", 5, 0)
    assert all(len(np.unique(s)) == N - round(0.75 * N) for s in src)  # 75% of the points gone

    _, src = corrupt(pts, "drop_local", 5, 0)
    for p, s in zip(pts, src):
        dropped = np.setdiff1d(np.arange(N), s)
        assert len(dropped) == k(500)
        random = np.random.default_rng(0).choice(N, len(dropped), replace=False)
        spacing = lambda idx: cKDTree(p[idx]).query(p[idx], k=2)[0][:, 1].mean()  # noqa: E731
        assert spacing(dropped) < 0.85 * spacing(random)  # holes, not a thinning

    out, src = corrupt(pts, "add_global", 5, 0)
    assert ((src == -1).sum(1) == k(50)).all()
    assert (np.linalg.norm(out[src == -1], axis=-1) <= 1.0 + 1e-6).all()
    kept = src >= 0
    assert np.array_equal(out[kept], np.take_along_axis(pts, src.clip(0)[..., None], 1)[kept])

    out, src = corrupt(pts, "add_local", 5, 0)
    assert ((src == -1).sum(1) == k(500)).all()
    for p, o, s in zip(pts, out, src):  # blobs around surface points, not spread over the ball
        d, _ = cKDTree(p).query(o[s == -1])
        assert np.median(d) < 0.15


def test_partial_view_hides_the_far_side_of_a_sphere():
    s = sphere(2048).astype(np.float64)
    visible = hidden_point_removal(s, [0.0, 0.0, 3.0])
    z = s[visible, 2]
    assert z.min() > 0.15  # nothing of the far side; the horizon seen from distance 3 is z = 1/3
    assert (s[visible, 2] > 0.5).sum() >= 0.98 * (s[:, 2] > 0.5).sum()  # the near cap is seen
    out, src = partial_view(sphere()[None], seed=3)
    assert out.shape == (1, N, 3)
    seen = sphere()[np.unique(src)]
    direction = seen.mean(0) / np.linalg.norm(seen.mean(0))
    assert (seen @ direction).min() > 0.0 and len(np.unique(src)) < 0.5 * N  # one side only


def test_resample_and_density():
    p = sphere().astype(np.float64)
    rng = np.random.default_rng(0)
    keep = np.arange(0, N, 4)
    out, src = resample(p, keep, N, rng)
    assert out.shape == (N, 3) and np.array_equal(out[:len(keep)], p[keep])
    assert np.linalg.norm(out[len(keep):], axis=1).max() <= 1.0 + 1e-9  # between two points of the sphere
    reach = cKDTree(p[keep]).query(p[keep], k=9)[0][:, -1].max()  # the farthest of 8 kept neighbours
    assert np.linalg.norm(out - p[src], axis=1).max() <= reach + 1e-9  # near the point they come from
    down, _ = change_density(clouds(), 128)
    up, src = change_density(clouds(), 1024, seed=1)
    assert down.shape == (3, 128, 3) and up.shape == (3, 1024, 3) and up.dtype == np.float32
    assert np.array_equal(up[:, :N], clouds())
    with pytest.raises(FoundryInputError, match="unknown corruption"):
        corrupt(clouds(), "fog", 1)
    with pytest.raises(FoundryInputError, match="severity"):
        corrupt(clouds(), "jitter", 6)


def test_outlier_filter_backends_agree_and_catch_strays():
    pts = clouds(2)
    strays = np.random.default_rng(0).normal(size=(2, 10, 3))
    strays = 2.0 * strays / np.linalg.norm(strays, axis=-1, keepdims=True)
    x = torch.from_numpy(np.concatenate([pts, strays.astype(np.float32)], 1))
    d_torch, d_tree = neighbour_distance(x, 8, "torch"), neighbour_distance(x, 8, "kdtree")
    assert torch.allclose(d_torch, d_tree, atol=1e-5)
    keep = outlier_mask(x, backend="torch")
    assert torch.equal(keep, outlier_mask(x, backend="kdtree"))
    assert not keep[:, N:].any()  # every stray point dropped
    assert keep[:, :N].float().mean() > 0.97  # the surface kept


@pytest.mark.parametrize("tree", ["pykdtree", "scipy"])
def test_suppress_outliers_host_path_equals_the_brute_force_with_either_tree(tree, monkeypatch):
    """The CPU path (one tree query per cloud, nearest kept point from each flagged point's own
    neighbour list) moves the same points to the same places as the traced brute force, also for a
    loose cluster of strays whose neighbour lists hold strays only (the second tree's case)."""
    from foundry.ops import host_tree
    from foundry.ops.accel import plain_grouping
    from foundry.ops.outliers import suppress_outliers

    if tree == "scipy":
        monkeypatch.setattr(host_tree, "_pykdtree", lambda: None)
    elif host_tree._pykdtree() is None:
        pytest.skip("pykdtree is not installed (the `fast` extra)")
    assert host_tree.backend_name() == tree
    rng = np.random.default_rng(2)
    pts = clouds(3)
    strays = rng.normal(size=(3, 12, 3)).astype(np.float32)
    strays = 2.0 * strays / np.linalg.norm(strays, axis=-1, keepdims=True)
    cluster = (np.array([3.0, 0, 0]) + 0.3 * rng.normal(size=(3, 10, 3))).astype(np.float32)
    x = torch.from_numpy(np.concatenate([pts, strays, cluster], 1))
    with plain_grouping():
        plain = suppress_outliers(x)
    fast = suppress_outliers(x)
    assert torch.equal(fast, plain)
    assert not torch.equal(fast[:, -10:], x[:, -10:])  # the cluster was flagged and moved
    clean = torch.from_numpy(pts)
    assert torch.equal(suppress_outliers(clean), plain_suppress(clean))
    assert torch.equal(suppress_outliers(x.bfloat16()), plain_suppress(x.bfloat16()))  # scores in the points' dtype
    with pytest.raises(ValueError, match="k=8 neighbours in clouds of 5 points"):
        suppress_outliers(x[:, :5])


def plain_suppress(x):
    from foundry.ops.accel import plain_grouping
    from foundry.ops.outliers import suppress_outliers

    with plain_grouping():
        return suppress_outliers(x)


def test_suppress_outliers_moves_strays_onto_the_surface_and_the_tokenizer_switch_uses_it(tmp_path):
    """Flagged points land on their nearest kept point (CPU tree = brute force), kept points stay;
    with config outlier_filter no patch centre is a stray; the switch is a spec suffix and leaves
    the fingerprint of a model without it unchanged; the filtered model still exports to ONNX."""
    from foundry.export.onnx import export_onnx
    from foundry.ops import group_patches
    from foundry.ops.accel import plain_grouping
    from foundry.ops.outliers import suppress_outliers

    pts = clouds(2)
    strays = np.random.default_rng(1).normal(size=(2, 10, 3))
    strays = 2.0 * strays / np.linalg.norm(strays, axis=-1, keepdims=True)
    x = torch.from_numpy(np.concatenate([pts, strays.astype(np.float32)], 1))
    keep = outlier_mask(x)
    fast = suppress_outliers(x)
    with plain_grouping():
        plain = suppress_outliers(x)
    assert torch.equal(fast, plain) and fast.shape == x.shape
    assert torch.equal(fast[keep], x[keep])
    for b in range(2):  # every moved point is now a kept point of its cloud
        moved = fast[b][~keep[b]]
        assert ((moved[:, None] - x[b][keep[b]][None]) ** 2).sum(-1).min(-1).values.eq(0).all()
    assert fast.norm(dim=-1).max() < 1.01  # nothing left off the (unit) surface
    _, centers = group_patches(fast, 32, 8)
    assert centers.norm(dim=-1).max() < 1.01
    _, raw_centers = group_patches(x, 32, 8)
    assert raw_centers.norm(dim=-1).max() > 1.9  # unfiltered, FPS takes strays as centres

    # on by default (since 2026-12-05) and always written, so that a file from before (no field: off
    # then) loads with it on and never takes the fingerprint of its filter-off evaluations
    model = foundry.create_model("foundry-tiny", outlier_filter=False)
    assert model.config.to_dict()["outlier_filter"] is False
    on = foundry.create_model("foundry-tiny").eval()
    assert on.config.to_dict()["outlier_filter"] is True
    with torch.no_grad():
        on_out = on.forward_supertokens(x)
    assert on_out["centers"].norm(dim=-1).max() < 1.01
    path = tmp_path / "f.safetensors"
    foundry.save(model, path)
    assert foundry.load(f"{path}@outliers=1").config.outlier_filter
    assert not foundry.load(f"{path}@outliers=0").config.outlier_filter and not foundry.load(path).config.outlier_filter
    # fingerprints (evaluations, caches) name a filter-off model as before the switch, so its earlier
    # evaluations stay reusable; the filter-on model is another model
    from foundry.io import identity_config, model_fingerprint
    assert "outlier_filter" not in identity_config(model) and identity_config(on)["outlier_filter"] is True
    teacher = foundry.create_model("tiny", outlier_filter=False)
    from foundry.models.baselines import ToMeTeacher
    assert "outlier_filter" not in json.dumps(identity_config(ToMeTeacher.wrap(teacher, 2)))  # nested too
    same_weights_on = foundry.load(f"{path}@outliers=1")
    assert model_fingerprint(foundry.load(path)) == model_fingerprint(model) != model_fingerprint(same_weights_on)
    with pytest.raises(FoundryInputError, match="outliers"):
        foundry.load(f"{path}@outliers=2")
    for grouping in ("graph", "host"):  # in the graph, or with the host's grouping (the filter there too)
        report = export_onnx(on, tmp_path / f"f-{grouping}.onnx", num_points=x.shape[1], grouping=grouping)
        assert report["check"]["passed"]
    from foundry.export import onnx_feed
    from foundry.export.onnx import onnx_session

    sess = onnx_session(tmp_path / "f-host.onnx")
    with torch.no_grad():
        ref = on.forward_features(x).numpy()
    assert np.abs(sess.run(None, onnx_feed(sess, x.numpy()))[0] - ref).max() < 1e-4


def _fake_eval(scores: dict) -> dict:
    settings = {"families": ["jitter"], "severities": [1, 2], "partial": True, "density": [], "seg": False,
                "num_points": 256, "outlier_filter": False, "density_patches": "fixed"}
    summary = {k: {"mean": v, "std": 0.0, "n": 1} for k, v in scores.items()}
    return {"protocols": {"robustness": {"settings": settings, "summary": summary}}}


def test_corruption_error_relative_to_the_teacher_by_hand():
    t = _fake_eval({"clean": 90.0, "jitter_s1": 80.0, "jitter_s2": 70.0, "jitter": 75.0, "corrupted": 75.0,
                    "partial": 60.0})
    s = _fake_eval({"clean": 88.0, "jitter_s1": 75.0, "jitter_s2": 60.0, "jitter": 67.5, "corrupted": 67.5,
                    "partial": 57.0})
    res = robustness_summary({"t": t, "s": s}, "t")
    row = res["models"]["s"]
    assert row["mce"] == pytest.approx((25 + 40) / (20 + 30))  # errors summed over severities
    assert row["rmce"] == pytest.approx(((88 - 75) + (88 - 60)) / ((90 - 80) + (90 - 70)))
    assert row["retention"]["partial"] == pytest.approx(100 * 57 / 60)
    assert row["ce"]["partial"] == pytest.approx(43 / 40)
    assert res["models"]["t"]["mce"] == pytest.approx(1.0)


def test_markdown_names_the_protocol_filter_and_each_models_own():
    from foundry.eval.corruption_error import robustness_markdown

    t, s = _fake_eval({"clean": 90.0, "jitter_s1": 80.0, "jitter_s2": 70.0}), _fake_eval({"clean": 88.0})
    t["model"], s["model"] = {"config": {"outlier_filter": True}}, {"config": {"outlier_filter": True}}
    note = "\n".join(robustness_markdown(robustness_summary({"t": t, "s": s}, "t"), "t"))
    assert "protocol's outlier pre-filter off, every model's own grouping filter on" in note
    s["model"]["config"]["outlier_filter"] = False
    note = "\n".join(robustness_markdown(robustness_summary({"t": t, "s": s}, "t"), "t"))
    assert "own grouping filter t on, s off" in note
    val = "\n".join(robustness_markdown(robustness_summary({"t": t, "s": s}, "t"), "t", split="val"))
    assert "validation clouds" in val and "test clouds" not in val


TINY = {"robustness": dict(data="synthetic:32", num_points=256, families=["jitter"], severities=[5], density=[],
                           seg_data="synthetic:32", seg_num_points=256, seg_per_class=2, seg_test_per_class=2,
                           seg_severities=[5], epochs=1, proj_dim=8, point_dim=8, hidden=16, cv=2)}


def test_protocol_and_compare_on_tiny_models(tmp_path):
    from foundry.eval.compare import run_compare

    torch.manual_seed(3)
    tpath = foundry.save(foundry.create_model("tiny"), tmp_path / "teach.safetensors")
    res = run_compare(tpath, ["foundry-tiny"], tmp_path / "cmp", protocols=("robustness",), seeds=(0, 1),
                      overrides=TINY, include_random=False, labels={"foundry-tiny": "stu"}, log=lambda *a: None)
    assert res["mismatches"] == []  # the same (corrupted) clouds for both models, seeds consistent
    rob = res["robustness"]
    assert rob["models"]["teach"]["mce"] == pytest.approx(1.0) and rob["models"]["stu"]["mce"] > 0
    entry = __import__("json").loads((tmp_path / "cmp" / "evals" / "stu" / "results.json").read_text())
    summ = entry["protocols"]["robustness"]["summary"]
    for key in ("clean", "jitter_s5", "jitter", "corrupted", "partial", "seg_clean", "seg_jitter_s5",
                "seg_drop_local_s5", "seg_partial"):
        assert key in summ and summ[key]["n"] == 2, key
    items = entry["protocols"]["robustness"]["details"]["0"]["item_scores"]
    assert len(items["jitter_s5"]) == 32 and set(items["jitter_s5"]) <= {"0", "1"}
    stu = next(r for r in res["rows"] if r["label"] == "stu")
    assert "robustness/corrupted" in stu["paired"] and "robustness/partial" in stu["retention_raw"]
    md = (tmp_path / "cmp" / "compare.md").read_text()
    assert "## Robustness" in md and "| mCE |" in md
    assert open(tmp_path / "cmp" / "robustness.png", "rb").read(4) == b"\x89PNG"
    # every condition paired with the teacher (family means, partial view, part segmentation), in compare.md too
    paired = rob["models"]["stu"]["paired"]
    assert {"jitter", "partial", "seg_jitter", "seg_partial"} <= set(paired) and "paired" not in rob["models"]["teach"]
    iv, teacher_jitter = paired["jitter"], rob["models"]["teach"]["scores"]["jitter"]["mean"]
    assert iv["items"] == 32 and iv["seeds"] == 2 and iv["difference"]["low"] <= iv["difference"]["high"]
    assert iv["difference"]["estimate"] == pytest.approx(summ["jitter"]["mean"] - teacher_jitter, abs=1e-6)
    assert "Paired with the teacher per condition" in md and " seg jitter |" in md


def test_protocol_outlier_filter_switch(tmp_path):
    from foundry.eval.runner import run_eval

    torch.manual_seed(0)
    model = foundry.create_model("tiny").eval()
    over = {"robustness": dict(TINY["robustness"], families=["add_global"], severities=[5], density=[128, 512],
                               density_patches="scaled", seg=False, partial=False, outlier_filter=True)}
    res = run_eval(model, ["robustness"], seeds=[0], overrides=over, log=lambda *a: None)
    details = res["protocols"]["robustness"]["details"]["0"]
    assert details["density_groups"] == {"density_128": 8, "density_512": 32}  # 16 patches at 256 points, scaled
    assert {"density_128", "density_512", "add_global_s5"} <= set(res["protocols"]["robustness"]["summary"])
    dropped = details["filter_dropped_share"]
    assert details["outlier_filter"] and dropped["add_global_s5"] > dropped["clean"]
    with pytest.raises(FoundryInputError, match="seg_families"):
        run_eval(model, ["robustness"], seeds=[0], overrides={"robustness": dict(
            TINY["robustness"], seg_families=["add_local"])}, log=lambda *a: None)


def test_outlier_filter_default_and_its_environment_switch(monkeypatch):
    """On by default in every model's grouping (backbone, PointGPT, student, pretraining); the
    environment's FOUNDRY_OUTLIER_FILTER=0 restores the earlier default (what the study scripts
    reproduce their figures with); anything else than 0/1 is refused."""
    from foundry.models.config import default_outlier_filter
    from foundry.models.pointgpt import PointGPTConfig
    from foundry.train.pretrain import PretrainConfig

    monkeypatch.delenv("FOUNDRY_OUTLIER_FILTER", raising=False)
    assert foundry.create_model("tiny").config.outlier_filter and foundry.create_model("foundry-tiny").config.outlier_filter
    assert PointGPTConfig().outlier_filter and PretrainConfig().outlier_filter
    monkeypatch.setenv("FOUNDRY_OUTLIER_FILTER", "0")
    assert not foundry.create_model("tiny").config.outlier_filter and not default_outlier_filter()
    assert foundry.create_model("tiny", outlier_filter=True).config.outlier_filter  # an explicit setting wins
    monkeypatch.setenv("FOUNDRY_OUTLIER_FILTER", "maybe")
    with pytest.raises(FoundryInputError, match="FOUNDRY_OUTLIER_FILTER"):
        default_outlier_filter()


def test_protocol_resumes_from_its_feature_cache(tmp_path, monkeypatch):
    """Every condition's features go through the evaluation's cache: a run cut short resumes where it
    stopped, and a second run over the same clouds extracts nothing and scores the same."""
    import foundry.eval.common as common
    from foundry.eval.common import FeatureCache
    from foundry.eval.runner import run_eval

    torch.manual_seed(0)
    model = foundry.create_model("tiny").eval()
    over = {"robustness": dict(TINY["robustness"], families=["jitter", "add_global"], severities=[1, 5],
                               density=[128], density_patches="scaled", seg=False)}

    def once(out):
        FeatureCache._shared.clear()  # as a fresh process
        return run_eval(model, ["robustness"], seeds=[0], overrides=over, out_dir=tmp_path / out,
                        cache_dir=tmp_path / "cache", log=lambda *a: None)["protocols"]["robustness"]["summary"]

    first = once("a")
    files = sorted(p.name for p in (tmp_path / "cache").glob("features_*.npz"))
    # train, clean test, 2 families x 2 severities, partial view, density (its own patch count's key)
    assert len(files) == 1 + 1 + 4 + 1 + 1
    monkeypatch.setattr(common, "extract_features", lambda *a, **k: pytest.fail("features extracted again"))
    second = once("b")
    assert {k: v["mean"] for k, v in second.items()} == {k: v["mean"] for k, v in first.items()}


def test_markdown_lists_each_severity_when_several_ran():
    from foundry.eval.corruption_error import robustness_markdown

    t = _fake_eval({"clean": 90.0, "jitter_s1": 80.0, "jitter_s2": 70.0, "jitter": 75.0, "corrupted": 75.0})
    s = _fake_eval({"clean": 88.0, "jitter_s1": 75.0, "jitter_s2": 60.0, "jitter": 67.5, "corrupted": 67.5})
    lines = robustness_markdown(robustness_summary({"t": t, "s": s}, "t"), "t")
    assert "| s | jitter | 88.0 ± 0.0 | 75.0 ± 0.0 | 60.0 ± 0.0 |" in lines
    one = robustness_summary({"t": t, "s": s}, "t")  # one severity: the family column says it all
    one["severities"] = [3]
    assert not any("severity 3" in line for line in robustness_markdown(one, "t"))
