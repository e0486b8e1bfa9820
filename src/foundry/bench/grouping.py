"""Time of the point grouping (FPS + kNN) per backend and cloud size, on this machine.

Patches follow the scaling rule used everywhere in `foundry bench`: G = max(64, N // 16)
centres (or a fixed G), K = 32 neighbours. Rows: "plain" (the plain-torch FPS loop and chunked
brute-force kNN, any device) and "auto" (what the models run by default: on CPU the `fpsample`
FPS and, from `KDTREE_MIN_POINTS`, an exact k-d tree; see `foundry.ops`), plus any explicit FPS
backend ("fpsample", "bucket") with the automatic kNN. Sizes where a step would pass
`time_limit` are skipped with a note, judged from the previous size (FPS ~ N*G, kNN ~ N*G).
"""
from __future__ import annotations

import time

import torch

from ..ops import fpsample_available
from ..ops.fps import farthest_point_sample
from ..ops.knn import knn
from .flops import random_cloud
from .latency import summarize
from .worker import auto_num_groups


def _timed(fn, budget_s: float, max_runs: int = 10):
    t0 = time.perf_counter()
    out = fn()
    times = [time.perf_counter() - t0]
    if times[0] < budget_s / 4:  # small sizes: one warm-up is already done, take a few more
        while sum(times) < budget_s and len(times) < max_runs:
            t0 = time.perf_counter()
            out = fn()
            times.append(time.perf_counter() - t0)
        if len(times) > 1:
            times = times[1:]  # drop the first (cold) call
    return out, summarize(times)


def grouping_times(sizes=(1024, 8192, 65536, 300_000), *, group_size: int = 32, num_groups: int | None = None,
                   ratio: int = 16, backends=("plain", "auto"), time_limit: float = 240.0,
                   budget_s: float = 2.0, seed: int = 0, device="cpu", share_knn: bool = True) -> list[dict]:
    """One row per (size, backend): FPS and kNN medians (seconds) and their sum.

    The kNN of every row but "plain" is the automatic one; with share_knn it is timed once per size
    and kNN mode and reused for the other rows."""

    rows = []
    last_cost: dict[str, tuple[int, float]] = {}
    knn_done: dict[tuple, tuple] = {}
    for n in sizes:
        g = num_groups or auto_num_groups(n, 64, group_size, ratio)
        points = random_cloud(1, n, seed, device)
        for backend in backends:
            row = {"points": n, "num_groups": g, "group_size": group_size, "backend": backend,
                   "device": str(device), "threads": torch.get_num_threads()}
            if backend in ("fpsample", "bucket") and not fpsample_available():
                rows.append({**row, "status": "fpsample not installed"})
                continue
            if backend in ("fpsample", "bucket") and torch.device(device).type != "cpu":
                rows.append({**row, "status": "fpsample is CPU only"})
                continue
            if backend in last_cost:
                prev_work, prev_s = last_cost[backend]
                est = prev_s * (n * g) / prev_work
                if est > time_limit:
                    rows.append({**row, "status": f"skipped: estimated {est:.0f} s > time limit {time_limit:.0f} s"})
                    continue
            sync = (lambda: torch.cuda.synchronize()) if torch.device(device).type == "cuda" else (lambda: None)

            fps_backend = {"auto": "torch"}.get(backend, backend)
            knn_backend = "plain" if backend == "plain" else "torch"

            def run_fps():
                idx = farthest_point_sample(points, g, backend=fps_backend)
                sync()
                return idx

            idx, fps_t = _timed(run_fps, budget_s)
            centers = torch.gather(points, 1, idx.unsqueeze(-1).expand(-1, -1, 3))

            def run_knn():
                out = knn(centers, points, group_size, backend=knn_backend)
                sync()
                return out

            if (n, knn_backend) in knn_done and share_knn:  # same kNN code and size: timed once
                nn_idx, knn_t = knn_done[(n, knn_backend)]
                row["knn_note"] = "kNN time shared with an earlier row at this size"
            else:
                nn_idx, knn_t = _timed(run_knn, budget_s)
                knn_done[(n, knn_backend)] = (nn_idx, knn_t)
            coverage = torch.unique(nn_idx[0].reshape(-1)).numel() / n
            row.update(status="ok", fps_s=fps_t["median_s"], knn_s=knn_t["median_s"],
                       total_s=fps_t["median_s"] + knn_t["median_s"], fps_runs=fps_t["runs"], knn_runs=knn_t["runs"],
                       coverage=coverage, nominal_coverage=g * group_size / n)
            last_cost[backend] = (n * g, row["total_s"])
            rows.append(row)
    return rows


def format_grouping(rows: list[dict]) -> str:
    lines = [f"{'points':>9} {'G':>6} {'K':>3} {'backend':<11} {'FPS s':>9} {'kNN s':>9} {'total s':>9} "
             f"{'covered':>8}  status"]
    for r in rows:
        if r.get("status") == "ok":
            lines.append(f"{r['points']:>9} {r['num_groups']:>6} {r['group_size']:>3} {r['backend']:<11} "
                         f"{r['fps_s']:>9.4f} {r['knn_s']:>9.4f} {r['total_s']:>9.4f} {r['coverage']:>8.1%}  ok")
        else:
            lines.append(f"{r['points']:>9} {r['num_groups']:>6} {r['group_size']:>3} {r['backend']:<11} "
                         f"{'-':>9} {'-':>9} {'-':>9} {'-':>8}  {r['status']}")
    return "\n".join(lines)
