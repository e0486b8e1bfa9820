"""Side-by-side benchmark of several models: cost per stage, latency, throughput, memory, ONNX.

Everything measured in one process on one machine, one model after another, with the settings
recorded next to the numbers (device, CPU, torch version, threads, batch, points).
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from .. import io
from ..export.onnx import export_onnx, quantize_int8
from .flops import STAGES, random_cloud, stage_costs
from .latency import measure_model, onnx_latency
from .worker import build_model, run_in_subprocess


def machine_info(threads: int, device: str) -> dict:
    """foundry.io.machine_info, with the onnxruntime version (the ORT latency columns)."""
    info = io.machine_info(device, threads)
    try:
        import onnxruntime

        info["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        info["onnxruntime"] = None
    return info


def bench_one(spec: str, *, points: int = 1024, batch: int = 16, flops_batch: int = 1, device: str = "cpu",
              threads: int = 1, warmup: int = 3, runs: int = 20, min_seconds: float = 1.0,
              max_seconds: float = 30.0, memory: bool = True, onnx: bool = True, latency: bool = True,
              amp=("bf16", "fp16"), log=print) -> dict:
    """All figures for one model; see `bench_models`."""
    model = build_model(spec)
    rec = {"model": str(spec), "kind": model.kind,
           "parameters": sum(p.numel() for p in model.parameters()),
           "num_groups": getattr(model.config, "num_groups", None),
           "group_size": getattr(model.config, "group_size", None)}
    s = getattr(model.config, "num_supertokens", None)
    if s:
        rec["num_supertokens"] = s
    cost = stage_costs(model, points, flops_batch)
    rec["cost"] = cost
    if log:
        log(f"[{spec}] {rec['parameters'] / 1e6:.2f} M parameters, {cost['total_macs'] / flops_batch / 1e9:.3f} "
            f"GMACs per cloud at {points} points")
    if latency:
        timing = dict(warmup=warmup, runs=runs, min_seconds=min_seconds, max_seconds=max_seconds)
        cpu_model = model.to("cpu")
        rec["cpu_latency_b1"] = measure_model(cpu_model, random_cloud(1, points, 0), **timing)
        rec["cpu_throughput"] = measure_model(cpu_model, random_cloud(batch, points, 0), **timing)
        if log:
            log(f"[{spec}] CPU batch 1: {rec['cpu_latency_b1']['median_s'] * 1e3:.2f} ms median; "
                f"batch {batch}: {rec['cpu_throughput']['clouds_per_s']:.1f} clouds/s")
        if torch.device(device).type == "cuda":
            gpu_model = model.to(device)
            rec["gpu"] = {}
            for dtype in ("fp32",) + tuple(amp):
                if dtype == "bf16" and not torch.cuda.is_bf16_supported():
                    continue
                a = None if dtype == "fp32" else dtype
                torch.cuda.reset_peak_memory_stats(device)
                before = torch.cuda.memory_allocated(device)
                b1 = measure_model(gpu_model, random_cloud(1, points, 0, device), amp=a, **timing)
                bt = measure_model(gpu_model, random_cloud(batch, points, 0, device), amp=a, **timing)
                bt["cuda_peak_extra_mb"] = (torch.cuda.max_memory_allocated(device) - before) / (1 << 20)
                rec["gpu"][dtype] = {"latency_b1": b1, "throughput": bt}
            model.to("cpu")
    if memory:
        rec["memory_b1"] = run_in_subprocess({"model": spec, "points": points, "batch": 1, "threads": threads,
                                              "device": "cpu", "repeat_budget_s": 0}, timeout=600)
        rec["memory_batch"] = run_in_subprocess({"model": spec, "points": points, "batch": batch, "threads": threads,
                                                 "device": "cpu", "repeat_budget_s": 0}, timeout=600)
        if torch.device(device).type == "cuda":
            rec["memory_gpu_b1"] = run_in_subprocess({"model": spec, "points": points, "batch": 1, "threads": threads,
                                                      "device": device, "repeat_budget_s": 0}, timeout=600)
    if onnx:
        rec["onnx"] = _onnx_column(model, points, threads, warmup, runs, min_seconds, max_seconds)
    return rec


def _onnx_column(model, points, threads, warmup, runs, min_seconds, max_seconds) -> dict:
    """onnxruntime batch-1 latency, fp32 and int8, of the graph that groups its points itself and
    (under "host") of the graph that leaves the grouping to the host (host grouping included)."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return {"status": "onnxruntime not installed"}

    timing = dict(threads=threads, warmup=warmup, runs=runs, min_seconds=min_seconds, max_seconds=max_seconds)
    with tempfile.TemporaryDirectory() as tmp:
        out = _onnx_latencies(model, points, Path(tmp), "graph", timing)
        if out.get("status") == "ok":
            out["host"] = _onnx_latencies(model, points, Path(tmp), "host", timing)
        return out


def _onnx_latencies(model, points, tmp: Path, grouping: str, timing: dict) -> dict:
    path = tmp / f"model-{grouping}.onnx"
    try:
        export_onnx(model.to("cpu"), path, num_points=points, check=False, grouping=grouping)
    except Exception as exc:
        return {"status": f"export failed: {type(exc).__name__}: {str(exc)[:200]}"}
    out = onnx_latency(path, random_cloud(1, points, 0), **timing)
    out["status"] = "ok"
    try:  # int8 dynamic quantisation of the same graph (weights int8, activations at run time)
        q = quantize_int8(path, tmp / f"model-{grouping}.int8.onnx")
        out["int8"] = onnx_latency(q["path"], random_cloud(1, points, 0), **timing)
        out["int8"]["bytes"], out["bytes"] = q["bytes"], q["fp32_bytes"]
    except Exception as exc:
        out["int8"] = {"status": f"quantisation failed: {type(exc).__name__}: {str(exc)[:200]}"}
    return out


def bench_models(specs, **kwargs) -> dict:
    """Benchmark `specs` side by side; returns {"settings": ..., "models": [...]}."""
    threads = kwargs.get("threads", 1)
    torch.set_num_threads(threads)
    settings = machine_info(threads, kwargs.get("device", "cpu"))
    settings.update(points=kwargs.get("points", 1024), throughput_batch=kwargs.get("batch", 16),
                    flops_batch=kwargs.get("flops_batch", 1), latency_batch=1,
                    warmup=kwargs.get("warmup", 3), runs=kwargs.get("runs", 20),
                    min_seconds=kwargs.get("min_seconds", 1.0),
                    timing="median and IQR (q75-q25) of per-call wall time after warm-up; CUDA synchronised",
                    memory_method="fresh process per model: kernel RSS high-water mark (VmHWM, reset via "
                                  "/proc/self/clear_refs) minus RSS before the call; CUDA: max_memory_allocated "
                                  "minus allocated before",
                    flops_convention="FLOPs = 2 x MACs; matmul-like ops (torch.utils.flop_counter) incl. "
                                     "attention; per cloud = total / flops_batch")
    return {"settings": settings, "models": [bench_one(s, **kwargs) for s in specs]}


def _num(x) -> float:
    return float("nan") if x is None else float(x)


def _ms(x):
    return f"{x * 1e3:.2f}" if x is not None else "-"


def format_report(result: dict) -> str:
    st = result["settings"]
    models = result["models"]
    fb = st["flops_batch"]
    lines = [f"device {st['device']} ({st['cpu']}, {st.get('cpu_count')} cores, load average "
             f"{st.get('load_average_1_5_15min')} at start); torch {st['torch']}, {st['torch_threads']} thread(s); "
             f"{st['points']} points; MACs/FLOPs per cloud at batch {fb}; latency batch 1, throughput batch "
             f"{st['throughput_batch']}", ""]
    head = f"{'model':<18} {'params M':>8} {'GMACs':>7} {'GFLOPs':>7} " + " ".join(f"{s[:8]:>8}" for s in STAGES)
    lines += ["MACs per stage (M) per cloud", head]
    for r in models:
        c = r["cost"]
        lines.append(f"{r['model'][:18]:<18} {r['parameters'] / 1e6:8.2f} {c['total_macs'] / fb / 1e9:7.3f} "
                     f"{c['total_flops'] / fb / 1e9:7.3f} " + " ".join(f"{c['macs'][s] / fb / 1e6:8.1f}" for s in STAGES))
    lines += ["", f"{'model':<18} {'b1 ms':>8} {'IQR ms':>7} {'group ms':>8} {'b' + str(st['throughput_batch']) + ' cl/s':>9} "
                  f"{'peak MB b1':>10} {'peak MB b' + str(st['throughput_batch']):>11} {'ORT b1 ms':>9} {'ORT int8':>8} "
                  f"{'ORT-h ms':>8} {'ORT-h i8':>8} {'x vs 1st':>8}"]
    ref = None
    for r in models:
        lat = r.get("cpu_latency_b1")
        thr = r.get("cpu_throughput")
        m1 = r.get("memory_b1", {})
        mb = r.get("memory_batch", {})
        ort = r.get("onnx", {})
        med = lat["median_s"] if lat else None
        ref = ref or med
        lines.append(
            f"{r['model'][:18]:<18} {_ms(med):>8} {_ms(lat['iqr_s']) if lat else '-':>7} "
            f"{_ms(lat.get('grouping_median_s')) if lat else '-':>8} "
            f"{thr['clouds_per_s'] if thr else float('nan'):9.1f} "
            f"{_num(m1.get('peak_extra_mb')):10.1f} {_num(mb.get('peak_extra_mb')):11.1f} "
            f"{_ms(ort.get('median_s')) if ort.get('status') == 'ok' else '-':>9} "
            f"{_ms((ort.get('int8') or {}).get('median_s')):>8} "
            f"{_ms((ort.get('host') or {}).get('median_s')):>8} "
            f"{_ms(((ort.get('host') or {}).get('int8') or {}).get('median_s')):>8} "
            f"{(ref / med) if (med and ref) else float('nan'):8.2f}")
    gpu_rows = [r for r in models if r.get("gpu")]
    if gpu_rows:
        lines += ["", f"GPU {st.get('gpu', '')}: {'model':<18} {'dtype':>5} {'b1 ms':>8} {'IQR ms':>7} {'cl/s':>9} {'peak MB':>8}"]
        for r in gpu_rows:
            for dtype, g in r["gpu"].items():
                lines.append(f"    {r['model'][:18]:<18} {dtype:>5} {_ms(g['latency_b1']['median_s']):>8} "
                             f"{_ms(g['latency_b1']['iqr_s']):>7} {g['throughput']['clouds_per_s']:9.1f} "
                             f"{g['throughput']['cuda_peak_extra_mb']:8.1f}")
    lines.append("")
    lines.append("peak MB = extra resident RAM during one forward call in a fresh process (weights and input "
                 "excluded); ORT = onnxruntime CPU, same threads (int8: dynamic quantisation), the graph grouping its "
                 "points itself; ORT-h = the graph from the patches with the host's grouping (foundry export "
                 "--grouping host), grouping time included; x vs 1st = batch-1 speed-up over the first model")
    return "\n".join(lines)
