"""Per-stage time of an exported graph in onnxruntime, from the runtime's own node profiler.

The TorchScript exporter names every node after the module scope it was traced in
("/model/tokenizer/patch_embed/conv1a/Gemm"), so a node's stage is the first module below the
model: tokenizer, dso, encoder, cau (a student) or patch_embed, encoder, ... (a teacher). Nodes in
no module's scope, or in the student tokenizer's scope but outside its mini-PointNet, are the
grouping (FPS + kNN, which are functions, not modules) and glue; they are reported as "grouping".
For a graph that leaves the grouping to the host, "grouping" is the host's time (timed apart) plus
that glue, and the wall time includes the host's grouping.
"""
from __future__ import annotations

import json
import os
import tempfile
from collections import defaultdict

from .host_grouping import onnx_feed, ort_session, session_grouping

STAGE_OF_SCOPE = {"tokenizer": "tokenizer", "patch_embed": "tokenizer", "reduce": "tokenizer", "gate": "gate",
                  "dso": "dso", "encoder": "encoder", "pos_embed": "encoder", "norm": "encoder", "cau": "cau"}


def node_stage(name: str) -> str:
    """Stage of an exported node from its scope name (the wrapper's own "model" level is dropped
    by the exporter, so the first part is the model's top-level module)."""
    parts = [p for p in name.split("/") if p]
    if parts and parts[0] == "model":
        parts = parts[1:]
    if parts and parts[0] == "teacher":  # a wrapped teacher (ToMe): look one level further
        parts = parts[1:]
    if len(parts) < 2:  # outside every module: the teacher's grouping, and glue
        return "grouping"
    if parts[0] == "tokenizer" and parts[1] != "patch_embed":
        return "grouping"
    return STAGE_OF_SCOPE.get(parts[0], "other")


def profile_onnx(path, points, *, threads: int = 1, runs: int = 20, warmup: int = 3) -> dict:
    """Median-free summary: mean milliseconds per call of each stage over `runs` profiled calls,
    the node count per stage, and the mean wall time of the profiled calls (profiling adds a little)."""
    import time

    import numpy as np
    with tempfile.TemporaryDirectory() as tmp:
        sess = ort_session(path, threads, profile_prefix=os.path.join(tmp, "ort"))
        spec = session_grouping(sess)
        feed = onnx_feed(sess, points, spec)
        host_ms = None
        if spec is not None:  # the host's grouping, timed apart (the node profiler does not see it)
            times = []
            for _ in range(warmup + runs):
                t = time.perf_counter()
                onnx_feed(sess, points, spec)
                times.append(time.perf_counter() - t)
            host_ms = float(np.median(times[warmup:])) * 1e3
        for _ in range(warmup):
            sess.run(None, feed)
        t0 = time.perf_counter()
        for _ in range(runs):
            sess.run(None, feed)
        wall = (time.perf_counter() - t0) / runs
        trace = sess.end_profiling()
        with open(trace) as f:
            events = json.load(f)
    per_stage, nodes, calls = defaultdict(float), defaultdict(set), 0
    for ev in events:
        if ev.get("cat") == "Session" and ev.get("name") == "model_run":
            calls += 1
        if ev.get("cat") != "Node" or not ev.get("name", "").endswith("_kernel_time"):
            continue
        name = ev["name"][: -len("_kernel_time")]
        stage = node_stage(name)
        per_stage[stage] += ev["dur"] / 1e3  # microseconds -> ms
        nodes[stage].add(name)
    calls = max(1, calls)
    ms = {k: v / calls for k, v in per_stage.items()}
    if host_ms is not None:  # in-graph "grouping" nodes are then glue only; the host's time is added
        ms["grouping"] = ms.get("grouping", 0.0) + host_ms
        wall += host_ms / 1e3
    return {"ms_per_stage": ms, "nodes_per_stage": {k: len(v) for k, v in nodes.items()},
            "kernel_ms": sum(ms.values()), "wall_ms": wall * 1e3, "profiled_calls": calls, "threads": threads,
            "grouping": "graph" if host_ms is None else "host", "host_grouping_ms": host_ms}


def format_profile(profiles: dict) -> str:
    """Table of `profile_onnx` results keyed by a label (e.g. "fp32", "int8")."""
    stages = sorted({s for r in profiles.values() for s in r["ms_per_stage"]})
    lines = [f"{'graph':<24} {'wall ms':>8} {'kernel ms':>9} " + " ".join(f"{s:>9}" for s in stages) + "  nodes"]
    for label, r in profiles.items():
        lines.append(f"{str(label)[:24]:<24} {r['wall_ms']:8.2f} {r['kernel_ms']:9.2f} "
                     + " ".join(f"{r['ms_per_stage'].get(s, 0.0):9.2f}" for s in stages)
                     + f"  {sum(r['nodes_per_stage'].values())}")
    return "\n".join(lines)
