"""foundry.export: ONNX parity with PyTorch (dynamic batch and points), int8, ONNX features for the SVM."""
import json

import numpy as np
import pytest
import torch

pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from foundry.api import create_model  # noqa: E402
from foundry.export.onnx import export_onnx, extract_features_onnx, onnx_session, quantize_int8  # noqa: E402


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory):
    model = create_model("tiny").eval()
    path = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    report = export_onnx(model, path)
    return model, path, report


def test_export_matches_pytorch_with_dynamic_batch_and_points(tiny_onnx):
    model, path, report = tiny_onnx
    assert report["check"]["passed"] and report["check"]["max_abs_diff"] < 1e-4
    sess = onnx_session(path)
    for b, n in ((1, 256), (5, 256), (2, 300)):
        pts = torch.randn(b, n, 3, generator=torch.Generator().manual_seed(b))
        got = sess.run(None, {"points": pts.numpy()})[0]
        with torch.no_grad():
            ref = model.forward_features(pts).numpy()
        assert got.shape == ref.shape
        assert np.abs(got - ref).max() < 1e-4


def test_tokenizer_weights_stay_constants_in_the_graph(tiny_onnx):
    """Every MatMul of the mini-PointNet multiplies by an initializer: the eval path's folded and split
    weights are constant-folded at export (no per-call weight arithmetic), and int8 quantises them all."""
    import onnx

    graph = onnx.load(str(tiny_onnx[1])).graph
    inits = {i.name for i in graph.initializer}
    matmuls = [n for n in graph.node if n.op_type in ("MatMul", "Gemm") and "patch_embed" in n.name]
    assert len(matmuls) == 5  # conv1a, conv1b, the second MLP's two halves, conv2b
    assert all(any(i in inits for i in n.input) for n in matmuls), [n.name for n in matmuls]


def test_int8_quantisation_and_onnx_features(tiny_onnx, tmp_path):
    model, path, _ = tiny_onnx
    q = quantize_int8(path, tmp_path / "tiny.int8.onnx")
    assert q["bytes"] < q["fp32_bytes"]
    pts = torch.randn(7, 256, 3, generator=torch.Generator().manual_seed(0))
    f32 = extract_features_onnx(path, pts, batch_size=3)
    i8 = extract_features_onnx(q["path"], pts.numpy(), batch_size=4)
    assert f32.shape == i8.shape == (7, model.feature_dim) and f32.dtype == np.float32
    with torch.no_grad():
        ref = model.forward_features(pts).numpy()
    assert np.abs(f32 - ref).max() < 1e-4
    assert np.isfinite(i8).all()


@pytest.mark.parametrize("seeding", ["learned", "fps"])
def test_export_student_tokens(tmp_path, seeding):
    student = pytest.importorskip("foundry.models.student")
    model = student.create_student("foundry-tiny", dso_seeding=seeding).eval()
    report = export_onnx(model, tmp_path / "s.onnx", output="tokens")
    assert report["check"]["max_abs_diff"] < 1e-4
    outs = [o.name for o in onnx_session(tmp_path / "s.onnx").get_outputs()]
    assert outs == ["tokens", "centers"]
    with pytest.raises(ValueError, match="features"):
        extract_features_onnx(tmp_path / "s.onnx", np.zeros((1, 256, 3), np.float32))


def test_svm_on_onnx_features(tiny_onnx, tmp_path):
    from foundry.export.onnx import svm_fp32_vs_int8

    model, path, _ = tiny_onnx
    q = quantize_int8(path, tmp_path / "q.onnx")
    g = torch.Generator().manual_seed(0)
    labels = np.arange(24) % 2
    clouds = torch.randn(24, 256, 3, generator=g) * torch.tensor([1.0, 1.0, 0.3])
    clouds[labels == 1] *= torch.tensor([0.3, 1.0, 1.0])  # two separable shape classes
    data = {"points": clouds.numpy(), "labels": labels}
    res = svm_fp32_vs_int8(model, path, q["path"], arrays=(data, data), num_points=256, seeds=(0,),
                           svm_kwargs={"c_grid": (0.1,), "cv": 2}, log=None)
    for name in ("pytorch", "onnx_fp32", "onnx_int8"):
        assert 0.0 <= res[name]["accuracy_mean"] <= 1.0
    assert res["onnx_fp32"]["feature_max_abs_diff_vs_pytorch"] < 1e-4


def test_export_cli(tmp_path, capsys):
    from foundry.cli import main

    out = tmp_path / "m.onnx"
    assert main(["export", "tiny", "--out", str(out), "--int8", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["check"]["passed"] and out.exists() and (tmp_path / "m.int8.onnx").exists()
    assert main(["export", "tiny", "--out", str(tmp_path / "m.txt")]) == 2


def test_svm_subset_is_stratified_and_seeded():
    from foundry.export.onnx import _subset

    labels = np.array([0] * 90 + [1] * 8 + [2] * 2)
    data = {"points": np.zeros((100, 4, 3), np.float32), "labels": labels}
    a, b = _subset(data, 20, 0), _subset(data, 20, 0)
    assert np.array_equal(a["labels"], b["labels"])
    counts = np.bincount(a["labels"])
    assert counts.min() >= 2 and 18 <= counts.sum() <= 24


def test_onnx_profile_splits_student_time_by_stage(tmp_path):
    from foundry.export.profile import format_profile, node_stage, profile_onnx

    assert node_stage("/tokenizer/patch_embed/conv1a/Gemm") == "tokenizer"
    assert node_stage("/tokenizer/ArgMax_3") == "grouping"  # FPS is a function inside the tokenizer
    assert node_stage("/dso/Sub") == "dso" and node_stage("Constant_17") == "grouping"
    model = create_model("foundry-tiny").eval()
    path = tmp_path / "s.onnx"
    export_onnx(model, path, check=False)
    prof = profile_onnx(path, torch.randn(1, 256, 3).numpy(), runs=2, warmup=1)
    assert {"grouping", "tokenizer", "dso", "encoder", "cau"} <= set(prof["ms_per_stage"])
    assert prof["profiled_calls"] >= 2 and prof["kernel_ms"] > 0
    assert "grouping" in format_profile({"fp32": prof})


@pytest.mark.parametrize("name", ["tiny", "foundry-tiny"])
def test_host_grouping_graph_starts_from_the_patches_and_matches_pytorch(tmp_path, name):
    """grouping="host": inputs are the patches, the grouping settings travel in the metadata, and
    onnx_feed prepares them from raw points of any size; features equal PyTorch's from points."""
    from foundry.bench.latency import onnx_latency
    from foundry.export import onnx_feed
    from foundry.export.profile import profile_onnx

    model = create_model(name).eval()
    path = tmp_path / "h.onnx"
    report = export_onnx(model, path, grouping="host")
    assert report["check"]["passed"] and report["grouping_mode"] == "host"
    sess = onnx_session(path)
    assert [i.name for i in sess.get_inputs()] == ["neighborhoods", "centers"]
    assert json.loads(sess.get_modelmeta().custom_metadata_map["foundry.host_grouping"])["num_groups"] == \
        model.config.num_groups
    pts = torch.randn(3, 300, 3, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ref = model.forward_features(pts).numpy()
    assert np.abs(sess.run(None, onnx_feed(sess, pts.numpy()))[0] - ref).max() < 1e-4
    assert np.abs(extract_features_onnx(path, pts, batch_size=2) - ref).max() < 1e-4
    assert len(sess.get_inputs()) == 2 and onnx_latency(path, pts[:1], runs=2)["grouping"] == "host"
    prof = profile_onnx(path, pts[:1].numpy(), runs=2, warmup=1)
    assert prof["grouping"] == "host" and prof["host_grouping_ms"] > 0
    with pytest.raises(ValueError, match="grouping"):
        export_onnx(model, tmp_path / "x.onnx", grouping="device")
