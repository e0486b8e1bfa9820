"""Wall-clock latency and throughput: warm-up, many runs, median and spread, device stated.

Timing rules: `warmup` untimed calls first; then at least `runs` timed calls (and more until
`min_seconds` have passed, up to `max_runs`); on CUDA `torch.cuda.synchronize()` brackets every
call. We report the median, the inter-quartile range (q75 - q25), min and max, in seconds.
Compare numbers only when measured side by side on the same machine, in the same process
settings (threads, device, dtype); report ratios.
"""
from __future__ import annotations

import contextlib
import statistics
import time

import torch

from ..export.host_grouping import onnx_feed, ort_session, session_grouping
from .hooks import GroupingRecorder


def _quantile(sorted_values: list[float], q: float) -> float:
    if len(sorted_values) == 1:
        return sorted_values[0]
    pos = q * (len(sorted_values) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def summarize(times: list[float]) -> dict:
    """Median, quartiles, IQR, min, max, mean and count of a list of durations (seconds)."""
    s = sorted(times)
    q25, q75 = _quantile(s, 0.25), _quantile(s, 0.75)
    return {"median_s": statistics.median(s), "q25_s": q25, "q75_s": q75, "iqr_s": q75 - q25,
            "min_s": s[0], "max_s": s[-1], "mean_s": statistics.fmean(s), "runs": len(s)}


def device_sync(device) -> callable:
    """A function that waits for queued work on `device` (a no-op on CPU)."""
    device = torch.device(device)
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


def time_call(fn, *, warmup: int = 3, runs: int = 20, min_seconds: float = 0.0, max_runs: int = 1000,
              max_seconds: float | None = None, sync=None) -> dict:
    """Time `fn()`; returns `summarize(times)` plus "warmup"."""
    sync = sync or (lambda: None)
    for _ in range(warmup):
        fn()
    sync()
    times: list[float] = []
    start = time.perf_counter()
    while True:
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
        elapsed = time.perf_counter() - start
        if len(times) >= max_runs:
            break
        if max_seconds is not None and elapsed >= max_seconds and len(times) >= 1:
            break
        if len(times) >= runs and elapsed >= min_seconds:
            break
    out = summarize(times)
    out["warmup"] = warmup
    return out


def autocast_context(device, dtype: str | None):
    """torch.autocast for "bf16"/"fp16" on `device`, or a null context for None/"fp32"."""
    if dtype in (None, "fp32"):
        return contextlib.nullcontext()
    torch_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[dtype]
    return torch.autocast(device_type=torch.device(device).type, dtype=torch_dtype)


def measure_model(model, points: torch.Tensor, *, method: str = "forward_features", amp: str | None = None,
                  warmup: int = 3, runs: int = 20, min_seconds: float = 0.0, max_seconds: float | None = None,
                  grouping: bool = True) -> dict:
    """Latency of `model.<method>(points)` (no grad, eval mode) on the points' device.

    With grouping=True the median time spent inside FPS + kNN per call is reported too
    ("grouping_median_s"), from separate calls watched by `bench.hooks.GroupingRecorder` (the
    timed calls themselves run unwatched, so the watching adds nothing to the latency figure).
    """

    device = points.device
    sync = device_sync(device)
    fn = getattr(model, method)
    model.eval()

    def call():
        with torch.no_grad(), autocast_context(device, amp):
            fn(points)

    out = time_call(call, warmup=warmup, runs=runs, min_seconds=min_seconds, max_seconds=max_seconds, sync=sync)
    if grouping:
        per_call = []
        for _ in range(max(1, min(5, out["runs"]))):
            rec = GroupingRecorder()
            with rec.watch(sync=sync if device.type == "cuda" else None):
                call()
            per_call.append(rec.seconds)
        out["grouping_median_s"] = statistics.median(per_call)
        out["grouping_runs"] = len(per_call)
    batch = points.shape[0]
    out["batch"] = batch
    out["points"] = points.shape[1]
    out["clouds_per_s"] = batch / out["median_s"]
    out["amp"] = amp or "fp32"
    return out


def onnx_latency(onnx_path, points, *, threads: int = 1, warmup: int = 3, runs: int = 20,
                 min_seconds: float = 0.0, max_seconds: float | None = None) -> dict:
    """Latency of an exported model in onnxruntime (CPU execution provider); of a graph that
    leaves the grouping to the host, host grouping + run."""
    import onnxruntime as ort

    sess = ort_session(onnx_path, threads)
    pts = points.detach().cpu().float().numpy()
    spec = session_grouping(sess)
    if spec is None:
        feed = {"points": pts}
        out = time_call(lambda: sess.run(None, feed), warmup=warmup, runs=runs, min_seconds=min_seconds,
                        max_seconds=max_seconds)
    else:  # the host's grouping is part of every call
        out = time_call(lambda: sess.run(None, onnx_feed(sess, pts, spec)), warmup=warmup, runs=runs,
                        min_seconds=min_seconds, max_seconds=max_seconds)
    out["grouping"] = "graph" if spec is None else "host"
    out["batch"] = points.shape[0]
    out["clouds_per_s"] = points.shape[0] / out["median_s"]
    out["onnxruntime"] = ort.__version__
    out["threads"] = threads
    return out
