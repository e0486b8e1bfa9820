"""foundry.bench: FLOP counter pinned to hand-computed MACs, stage mapping, timing, a tiny bench run."""
import json

import pytest
import torch

from foundry.api import create_model
from foundry.bench.flops import STAGES, count_flops, model_macs, stage_costs, stage_of


def tiny_analytic_macs(cfg, n_points: int, groups: int | None = None) -> dict:
    """MACs of the backbone's forward_features, by hand: only matmul-like ops count."""
    g = groups or cfg.num_groups
    k, c, depth = cfg.group_size, cfg.width, cfg.depth
    h1, h2, h3 = cfg.tokenizer_hidden
    hidden = int(c * cfg.mlp_ratio)
    grouping = g * n_points * 3  # kNN: (G x 3) @ (3 x N) distance product
    # mini-PointNet: 4 linears per point, the pooled half of the third once per patch (eval mode)
    tokenizer = g * k * (3 * h1 + h1 * h2 + h2 * h3 + h3 * c) + g * h2 * h3
    pos = g * (3 * cfg.pos_hidden + cfg.pos_hidden * c)
    per_block = g * (3 * c * c + c * c + 2 * c * hidden) + 2 * g * g * c  # qkv, proj, MLP + QK^T and AV
    return {"grouping": grouping, "tokenizer": tokenizer, "encoder": pos + depth * per_block}


@pytest.mark.parametrize("groups", [None, 24])
def test_flop_counter_pinned_to_analytic_formula(groups):
    model = create_model("tiny")
    cost = stage_costs(model, 256, 1, num_groups=groups)
    want = tiny_analytic_macs(model.config, 256, groups)
    for stage in STAGES:
        assert cost["macs"][stage] == want.get(stage, 0), stage
    assert cost["total_macs"] == sum(want.values())
    assert cost["total_flops"] == 2 * cost["total_macs"]


def test_flop_counter_counts_attention_and_scales_with_batch():
    model = create_model("tiny")
    one, two = stage_costs(model, 256, 1), stage_costs(model, 256, 2)
    assert two["total_flops"] == 2 * one["total_flops"]
    cfg = model.config
    attention = cfg.depth * 2 * cfg.num_groups ** 2 * cfg.width
    # FlopCounterMode alone misses the CPU flash-attention kernel: our count must exceed it by that much
    from torch.utils.flop_counter import FlopCounterMode

    from foundry.ops.knn import brute_force_knn

    with FlopCounterMode(display=False) as plain, brute_force_knn(), torch.no_grad():
        model.eval().forward_features(torch.randn(1, 256, 3))  # eval, as stage_costs counts
    assert one["total_flops"] - plain.get_total_flops() == 2 * attention
    assert model_macs(model, 256) == one["total_macs"]


def test_count_flops_keeps_its_signature_and_names_modules():
    model = create_model("tiny")
    total, per_module = count_flops(model.forward_features, torch.randn(1, 256, 3))
    assert total == sum(per_module.values())
    assert set(per_module) == {"grouping", "patch_embed", "pos_embed", "encoder"}


def test_stage_mapping_of_student_modules():
    assert stage_of("patch_embed") == stage_of("tokenizer") == "tokenizer"
    assert stage_of("pos_embed") == stage_of("norm") == "encoder"
    for name in ("gate", "dso", "encoder", "cau"):
        assert stage_of(name) == name
    assert stage_of("head") == "other"
    student = pytest.importorskip("foundry.models.student")
    model = student.create_student("foundry-tiny")
    cost = stage_costs(model, 256, 1)
    assert cost["macs"]["dso"] > 0 and cost["macs"]["cau"] > 0 and cost["macs"]["tokenizer"] > 0
    assert sum(cost["flops"].values()) == cost["total_flops"]
    more = stage_costs(model, 512, 1, num_groups=32)  # the student takes num_groups= like the backbone
    assert more["macs"]["tokenizer"] == 2 * cost["macs"]["tokenizer"]

    class NoOverride(student.FoundryStudent):
        def forward_features(self, points):
            return super().forward_features(points)

    # a model that takes no num_groups argument still runs with more patches (config set for the call)
    plain = NoOverride(model.config)
    assert stage_costs(plain, 512, 1, num_groups=32)["macs"] == more["macs"]
    assert plain.config.num_groups == 16


def test_extrapolated_macs_match_counted():
    from foundry.bench.scaling import extrapolated_macs

    model = create_model("tiny")
    est = extrapolated_macs(model, 2048, 128)
    counted = stage_costs(model, 2048, 1, num_groups=128)["macs"]
    assert all(est[s] == counted[s] for s in STAGES)


def test_grouping_hooks_restore_the_ops():
    import foundry.models.patches as backbone
    import foundry.ops as ops
    from foundry.bench.hooks import GroupingRecorder

    before = (backbone.group_patches, ops.knn, ops.farthest_point_sample)
    rec = GroupingRecorder(keep_indices=True)
    with rec.watch():
        create_model("tiny").forward_features(torch.randn(1, 256, 3))
    assert (backbone.group_patches, ops.knn, ops.farthest_point_sample) == before
    assert rec.calls == {"farthest_point_sample": 1, "knn": 1, "group_patches": 1}
    assert 0 < rec.coverage(256) <= 1 and rec.seconds > 0


def test_summary_statistics():
    from foundry.bench.latency import summarize, time_call

    s = summarize([1.0, 2.0, 3.0, 4.0, 5.0])
    assert s["median_s"] == 3.0 and s["q25_s"] == 2.0 and s["q75_s"] == 4.0 and s["iqr_s"] == 2.0
    calls = []
    out = time_call(lambda: calls.append(1), warmup=2, runs=5)
    assert out["runs"] == 5 and len(calls) == 7


def test_grouping_bench_both_backends():
    from foundry.bench.grouping import format_grouping, grouping_times

    rows = grouping_times(sizes=(256, 5000), budget_s=0.05, backends=("plain", "auto", "bucket"))
    assert {r["backend"] for r in rows} == {"plain", "auto", "bucket"}
    ok = [r for r in rows if r["status"] == "ok"]
    assert ok and all(r["fps_s"] > 0 and r["knn_s"] > 0 for r in ok)
    assert "FPS" in format_grouping(rows)


def test_bench_cli_on_tiny_models(tmp_path, capsys):
    from foundry.cli import main

    models = ["tiny"]
    try:
        import foundry.models.student  # noqa: F401

        models.append("foundry-tiny")
    except ImportError:
        pass
    rc = main(["bench", *models, "--fast", "--points", "256", "--batch", "2", "--no-memory", "--out", str(tmp_path)])
    assert rc == 0
    result = json.loads((tmp_path / "bench.json").read_text())
    st = result["settings"]
    assert st["points"] == 256 and st["throughput_batch"] == 2 and st["torch_threads"] >= 1 and st["device"] == "cpu"
    rec = result["models"][0]
    assert rec["parameters"] > 0 and rec["cost"]["total_macs"] > 0
    assert rec["cpu_latency_b1"]["median_s"] > 0 and rec["cpu_throughput"]["batch"] == 2
    assert rec["onnx"]["status"] in ("ok", "onnxruntime not installed")
    assert "MACs per stage" in capsys.readouterr().out


def test_scaling_runs_in_fresh_processes_and_plots(tmp_path):
    from foundry.bench.scaling import plot_scaling, run_scaling

    recs = run_scaling(["tiny"], sizes=(1024,), time_limit=60, max_memory_gb=4, log=None)
    assert [r["status"] for r in recs] == ["ok"]
    big = recs[0]
    assert big["num_groups"] == 64 and big["nominal_coverage"] == pytest.approx(64 * 16 / 1024)
    assert big["peak_extra_mb"] > 0 and big["time_s"] > 0 and 0 < big["coverage"] <= 1
    assert big["macs"]["total"] == stage_costs(create_model("tiny"), 1024, 1, num_groups=64)["total_macs"]
    failed = {**big, "points": 4096, "status": "time limit"}
    plot_scaling(recs + [failed], tmp_path / "s.png")
    assert (tmp_path / "s.png").stat().st_size > 1000


def test_bench_refuses_without_models(capsys):
    from foundry.cli import main

    assert main(["bench"]) == 2
    assert "name at least one model" in capsys.readouterr().err


def test_bench_checks_every_model_name_before_timing_any(tmp_path, capsys):
    from foundry.cli import main

    assert main(["bench", "tiny", "no-such-model", "--fast", "--no-memory", "--out", str(tmp_path)]) == 2
    captured = capsys.readouterr()
    assert "no-such-model" in captured.err and "[tiny]" not in captured.out


def test_merge_scaling_runs(tmp_path, capsys):
    from foundry.cli import main

    rec = {"model": "tiny", "num_groups": 64, "group_size": 16, "status": "ok", "time_s": 0.01, "grouping_s": 0.001,
           "peak_extra_mb": 5.0, "coverage": 0.7, "macs": {"total": 1e6}}
    settings = {"device": "cpu", "cpu": "x", "torch_threads": 1, "group_ratio": 16}
    for i, n in enumerate((1024, 8192)):
        (tmp_path / f"{i}.json").write_text(json.dumps({"settings": settings, "scaling": [{**rec, "points": n}]}))
    out = tmp_path / "merged"
    assert main(["bench", "--merge-scaling", str(tmp_path / "0.json"), str(tmp_path / "1.json"), "--out", str(out)]) == 0
    merged = json.loads((out / "scaling.json").read_text())
    assert [r["points"] for r in merged["scaling"]] == [1024, 8192]
    assert (out / "scaling.png").exists()


def test_stage_timer_splits_a_forward_call_into_stages():
    import torch

    from foundry.api import create_model
    from foundry.bench.stages import StageTimer, format_stages

    for name, expected in (("foundry-tiny", {"fps", "knn", "tokenizer", "dso", "encoder", "cau"}),
                           ("tiny", {"fps", "knn", "tokenizer", "encoder"})):
        model = create_model(name).eval()
        timer = StageTimer()
        with torch.no_grad(), timer.watch(model):
            model.forward_features(torch.randn(1, 256, 3))
        sec = timer.seconds
        assert expected <= set(sec) and all(sec[s] >= 0 for s in expected)
        assert abs(sum(v for k, v in sec.items() if k != "total") - sec["total"]) < 1e-9
        assert name[:4] in format_stages([{"model": name, "points": 256, "stages": {"seconds": sec}}])


def test_retain_freed_memory_takes_on_glibc_and_can_be_switched_off(monkeypatch):
    import platform

    from foundry.runtime import retain_freed_memory
    monkeypatch.setenv("FOUNDRY_MALLOC", "default")
    assert retain_freed_memory() is False
    monkeypatch.delenv("FOUNDRY_MALLOC")
    if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
        assert retain_freed_memory() is True


def test_scaling_ratios_without_a_teacher_use_the_first_model():
    from foundry.bench.scaling import format_ratios

    def rec(model, t):
        return {"model": model, "kind": "student", "points": 1000, "status": "ok", "time_s": t,
                "peak_extra_mb": 10.0, "macs": {"total": 1e6}}

    text = format_ratios([rec("a", 2.0), rec("b", 1.0)])
    assert "ratios to a" in text and "50.0%" in text
    tiny = [rec("a", 2.0), rec("b", 1.0)]
    tiny[0]["peak_extra_mb"] = 0.01  # a reference needing next to nothing: no memory ratio, not 100000%
    row = format_ratios(tiny).splitlines()[-1].split()
    assert row[2:] == ["50.0%", "-", "100.0%"]


def test_paired_latency_interleaves_models_and_brackets_their_ratio():
    from foundry.bench.paired import paired_latency, ratio_interval

    calls = []

    class Slow(torch.nn.Module):
        def __init__(self, name, spin):
            super().__init__()
            self.name, self.spin = name, spin

        def forward_features(self, x):
            calls.append(self.name)
            t = torch.zeros(())
            for _ in range(self.spin):
                t = t + x.sum()
            return t

    res = paired_latency({"a": Slow("a", 400), "b": Slow("b", 40)}, torch.ones(1, 8, 3), rounds=4, calls=2, warmup=1)
    # warm-up, then per round one untimed + two timed calls each, the order reversed every round
    rounds = calls[2:]
    assert [rounds[i * 6] for i in range(4)] == ["a", "b", "a", "b"]
    r = res["ratios"]["b"]
    assert r["low"] <= r["median"] <= r["high"] and r["rounds"] == 4 and 0 < r["median"] < 1
    assert len(res["models"]["a"]["round_medians_s"]) == 4
    exact = ratio_interval([0.2, 0.2, 0.2])
    assert exact["median"] == exact["low"] == exact["high"] == pytest.approx(0.2)


def test_bench_paired_cli(tmp_path, capsys):
    from foundry.cli import main

    rc = main(["bench", "tiny", "foundry-tiny", "--paired", "--fast", "--points", "256", "--out", str(tmp_path)])
    assert rc == 0
    result = json.loads((tmp_path / "paired.json").read_text())
    assert result["settings"]["batch"] == 1 and result["paired"]["points"] == 256
    assert set(result["paired"]["ratios"]) == {"foundry-tiny"}
    assert "ratio to tiny" in capsys.readouterr().out
    assert main(["bench", "tiny", "foundry-tiny", "--paired", "--fast", "--out", str(tmp_path)]) == 2  # no overwrite
    assert main(["bench", "tiny", "--paired", "--fast", "--out", str(tmp_path / "one")]) == 2
    assert "at least two models" in capsys.readouterr().err
