"""One measurement in a fresh process: time and peak memory of a model call at one input size.

Run as `python -m foundry.bench.worker '<json request>'`; prints one JSON line. A fresh process
per measurement keeps peak-memory figures clean and lets the caller enforce a time limit and a
memory cap (an allocation over the cap fails inside torch and is reported as out of memory).

Peak memory on CPU is the kernel's resident-set high-water mark (VmHWM in /proc/self/status),
reset just before the call by writing 5 to /proc/self/clear_refs, minus the resident set right
before the call: the extra RAM the call itself needed (weights and input excluded). Where that
reset is not possible we fall back to ru_maxrss and flag the figure ("rss_method").
On CUDA: torch.cuda.max_memory_allocated() minus memory_allocated() before the call (tensors
only; the CUDA context and allocator cache are not included).
"""
from __future__ import annotations

import json
import os
import statistics
import sys
import time
import traceback

from ..api import resolve_model
from ..ops.accel import preload
from ..runtime import retain_freed_memory
from .flops import _accepts, patch_count, random_cloud
from .hooks import GroupingRecorder
from .latency import device_sync
from .stages import StageTimer

try:  # POSIX only; elsewhere no memory cap and no ru_maxrss fallback
    import resource
except ImportError:  # pragma: no cover - Windows
    resource = None


def build_model(spec: str, **overrides):
    """A model in eval mode from a preset name (untrained) or anything `foundry.load` accepts."""
    return resolve_model(spec, **overrides)


def auto_num_groups(num_points: int, default: int, group_size: int, ratio: int = 16,
                    max_groups: int | None = None) -> int:
    """Patch count growing with the cloud: N // ratio, at least the model's own count, at most
    `max_groups` and at most N."""
    g = max(default, num_points // ratio)
    if max_groups:
        g = min(g, max_groups)
    return max(1, min(g, num_points))


def _status_kb(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_hwm() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _maxrss_kb() -> int | None:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss if resource is not None else None


def _set_memory_cap(gb: float | None) -> None:
    if not gb or resource is None:
        return
    limit = int(gb * (1 << 30))
    resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))


def run(req: dict) -> dict:
    import torch

    threads = int(req.get("threads") or 1)
    torch.set_num_threads(threads)

    device = torch.device(req.get("device", "cpu"))
    model = build_model(req["model"]).to(device)
    n = int(req["points"])
    batch = int(req.get("batch", 1))
    method = req.get("method", "forward_features")
    fn = getattr(model, method)
    cfg = model.config
    default_g = int(getattr(cfg, "num_groups", 64))
    k = int(getattr(cfg, "group_size", 32))
    g = req.get("num_groups")
    if g == "auto":
        g = auto_num_groups(n, default_g, k, int(req.get("group_ratio", 16)), req.get("max_groups"))
    g = int(g) if g is not None else default_g
    note = None
    if g != default_g and not _accepts(fn, "num_groups"):
        note = f"{type(model).__name__}.{method} takes no num_groups: config.num_groups set to {g} for the run"
    points = random_cloud(batch, n, int(req.get("seed", 0)), device)
    sync = device_sync(device)
    preload()  # library imports are not part of the call's time
    with torch.no_grad():  # nor are torch's one-off kernel set-ups: one untimed call on a small cloud
        getattr(model, method)(random_cloud(1, max(getattr(model, "min_points", 64), 64), 1, device))
    out = {"model": req["model"], "kind": model.kind, "points": n, "batch": batch,
           "num_groups": g, "group_size": k, "method": method, "device": str(device), "threads": threads,
           "torch": torch.__version__, "nominal_coverage": g * k / n}
    if note:
        out["note"] = note

    import gc

    gc.collect()
    if device.type == "cuda":
        sync()
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
    rss_before = _status_kb("VmRSS")
    reset_ok = _reset_hwm()
    maxrss_before = _maxrss_kb()
    t0 = time.perf_counter()

    timer = StageTimer(lambda: _status_kb("VmRSS"), lambda: _status_kb("VmHWM"), _reset_hwm) if req.get("stages") \
        else None

    def progress(stage):
        # one line per finished stage, so a run killed at the time limit still tells how far it got
        hwm = _status_kb("VmHWM") if reset_ok else None
        peak = None if hwm is None or rss_before is None else (hwm - rss_before) / 1024
        if timer is not None and timer.peak_mb and peak is not None:  # the timer resets the mark per stage
            peak = max([peak, *timer.peak_mb.values()])
        line = {"progress": stage, "elapsed_s": round(time.perf_counter() - t0, 3), "peak_extra_mb": peak}
        sys.stdout.write(json.dumps(line) + "\n")
        sys.stdout.flush()

    class _Rec(GroupingRecorder):
        def exit(self, name, result, seconds):
            super().exit(name, result, seconds)
            if self._depth == 0 and req.get("progress"):
                progress(f"grouping ({name})")

    rec = _Rec(keep_indices=True)
    hooks = [child.register_forward_hook(lambda m, a, o, _n=name: progress(_n))
             for name, child in model.named_children()] if req.get("progress") else []
    counts = patch_count(model, method, g)
    kwargs = counts.__enter__()  # left in force for the repeats below; the process ends after
    import contextlib

    staged = timer.watch(model, sync=sync if device.type == "cuda" else None) if timer else contextlib.nullcontext()
    with torch.no_grad(), rec.watch(sync=sync if device.type == "cuda" else None), staged:
        fn(points, **kwargs)
    sync()
    first = time.perf_counter() - t0
    for h in hooks:
        h.remove()
    req = {**req, "progress": False}  # progress lines only for the first call
    if reset_ok and rss_before is not None:
        hwm = _status_kb("VmHWM")
        out["peak_extra_mb"] = (hwm - rss_before) / 1024
        out["rss_method"] = "VmHWM after reset (clear_refs) minus VmRSS before the call"
    else:
        maxrss = _maxrss_kb()
        base = rss_before or maxrss_before
        out["peak_extra_mb"] = (maxrss - base) / 1024 if maxrss is not None and base is not None else None
        out["rss_method"] = "ru_maxrss minus RSS before the call (lower bound if an earlier peak was higher)"
    if timer is not None:
        out["stages"] = {"seconds": timer.seconds, "peak_mb": timer.peak_mb or None,
                         "note": "first call; per-stage peak = extra RSS high-water mark while the stage ran"}
        if timer.peak_mb:  # the per-stage resets hide the whole call's mark from the reading above
            out["peak_extra_mb"] = timer.peak_mb["total"]
    out["rss_before_mb"] = (rss_before or 0) / 1024
    if device.type == "cuda":
        out["cuda_peak_extra_mb"] = (torch.cuda.max_memory_allocated(device) - before) / (1 << 20)
    out["first_call_s"] = first
    out["first_call_grouping_s"] = rec.seconds
    out["fps_s"] = rec.per_function.get("farthest_point_sample")
    out["knn_s"] = rec.per_function.get("knn")
    out["coverage"] = rec.coverage(n)
    rec.keep_indices, rec.last_knn = False, None
    # small inputs: a few more calls within a short budget for a steadier median (grouping timed in the
    # same calls, by the difference of the recorder's running total)
    times, groupings = [first], [rec.seconds]
    budget = float(req.get("repeat_budget_s", 3.0))
    spent = first
    with rec.watch(sync=sync if device.type == "cuda" else None):
        while spent + times[-1] < budget and len(times) < 20:
            g0 = rec.seconds
            t0 = time.perf_counter()
            with torch.no_grad():
                fn(points, **kwargs)
            sync()
            times.append(time.perf_counter() - t0)
            groupings.append(rec.seconds - g0)
            spent += times[-1]
    if len(times) > 1:  # drop the cold first call from the medians
        times, groupings = times[1:], groupings[1:]
    out["time_s"] = statistics.median(times)
    out["grouping_s"] = statistics.median(groupings)
    out["time_runs"] = len(times)
    out["status"] = "ok"
    return out


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    req = json.loads(argv[0])
    _set_memory_cap(req.get("max_memory_gb"))
    retain_freed_memory()  # as the `foundry` command does
    try:
        out = run(req)
    except (MemoryError, RuntimeError) as exc:  # torch raises RuntimeError for failed allocations
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        oom = isinstance(exc, MemoryError) or "alloc" in msg.lower() or "out of memory" in msg.lower()
        out = {"status": "out of memory" if oom else "error", "error": msg[:500]}
    except Exception as exc:  # report, never hide
        out = {"status": "error", "error": f"{type(exc).__name__}: {exc}"[:500],
               "traceback": traceback.format_exc()[-2000:]}
    sys.stdout.write("\n" + json.dumps(out) + "\n")
    sys.stdout.flush()
    return 0


def run_in_subprocess(req: dict, timeout: float | None = None) -> dict:
    """Run `req` in a fresh Python; returns its JSON, or a status of "time limit" / "killed"."""
    import subprocess

    cmd = [sys.executable, "-m", "foundry.bench.worker", json.dumps(req)]
    env = dict(os.environ)
    threads = str(req.get("threads") or 1)
    env.setdefault("OMP_NUM_THREADS", threads)
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired as exc:
        partial = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        steps = [json.loads(ln) for ln in partial.splitlines() if ln.startswith('{"progress"')]
        return {"status": "time limit", "error": f"exceeded {timeout:.0f} s", "wall_s": time.perf_counter() - t0,
                "progress": steps}
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip().startswith("{") and '"progress"' not in ln[:13]]
    steps = [json.loads(ln) for ln in proc.stdout.splitlines() if ln.startswith('{"progress"')]
    if proc.returncode != 0 or not lines:
        status = "killed (likely out of memory)" if proc.returncode in (-9, 137) else "error"
        return {"status": status, "returncode": proc.returncode, "error": proc.stderr[-1000:],
                "wall_s": time.perf_counter() - t0, "progress": steps}
    out = json.loads(lines[-1])
    out["wall_s"] = time.perf_counter() - t0
    if steps:
        out["progress"] = steps
    return out


if __name__ == "__main__":
    sys.exit(main())
