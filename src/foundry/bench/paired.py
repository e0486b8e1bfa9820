"""Paired latency: several models timed in one process, round by round, so their ratio is measured
on the same machine state.

Timing models one after the other (`bench_one`) leaves minutes between them, and a shared or
loaded CPU drifts over minutes by more than the differences a latency goal asks about (on the
project's 2-core VMs: 10-20% between processes). Here every round times each model for a few
calls, in an order that reverses every round (A B, B A, ...: a linear drift within a round then
cancels over two rounds), and keeps each model's median of that round. The ratio of each model to
the first is taken round by round; its median over rounds is reported with a 95% percentile
bootstrap interval over rounds (resampled rounds keep their models together: the pairing).
"""
from __future__ import annotations

import functools
import statistics

import numpy as np
import torch

from .latency import device_sync, time_call

N_BOOT = 2000
BOOT_SEED = 0


def ratio_interval(ratios: list[float], n_boot: int = N_BOOT, seed: int = BOOT_SEED) -> dict:
    """Median of per-round ratios with a 95% percentile bootstrap interval over rounds."""
    r = np.asarray(ratios, dtype=np.float64)
    rng = np.random.default_rng(seed)
    boot = np.median(r[rng.integers(0, len(r), size=(n_boot, len(r)))], axis=1)
    lo, hi = np.percentile(boot, [2.5, 97.5])
    return {"median": float(np.median(r)), "low": float(lo), "high": float(hi), "rounds": len(r),
            "min": float(r.min()), "max": float(r.max())}


def paired_latency(models: dict, points: torch.Tensor, *, rounds: int = 30, calls: int = 10, warmup: int = 5,
                   method: str = "forward_features", log=None) -> dict:
    """Batch latency of every model of `models` (name -> model) on the same `points`, interleaved.

    CUDA calls are synchronised. Returns {"models": {name: {"median_s", "round_medians_s"}},
    "ratios": {name: ratio_interval of name / first model}, "rounds", "calls"}; every call under
    no_grad, models in eval mode.
    """
    if rounds < 2 or calls < 1:
        raise ValueError(f"paired timing needs at least 2 rounds and 1 call per round, got {rounds} and {calls}")
    names = list(models)
    sync = device_sync(points.device)
    fns = {}
    for name, model in models.items():
        model.eval()
        fns[name] = functools.partial(getattr(model, method), points)
    per_round: dict[str, list[float]] = {name: [] for name in names}
    with torch.no_grad():
        for name in names:
            for _ in range(warmup):
                fns[name]()
        for r in range(rounds):
            for name in (names if r % 2 == 0 else names[::-1]):
                # one untimed call (the model's weights back in cache after the other's), then `calls` timed
                timed = time_call(fns[name], warmup=1, runs=calls, max_runs=calls, sync=sync)
                per_round[name].append(timed["median_s"])
            if log and (r + 1) % max(1, rounds // 5) == 0:
                log(f"  round {r + 1}/{rounds}")
    first = names[0]
    out = {"rounds": rounds, "calls": calls, "warmup": warmup, "batch": points.shape[0], "points": points.shape[1],
           "models": {n: {"median_s": statistics.median(v), "round_medians_s": v} for n, v in per_round.items()},
           "ratios": {}}
    for name in names[1:]:
        out["ratios"][name] = ratio_interval([b / a for a, b in zip(per_round[first], per_round[name])])
    return out


def format_paired(result: dict) -> str:
    """A table: model, median latency, ratio to the first model [95% interval over rounds]."""
    names = list(result["models"])
    lines = [(f"paired batch-{result['batch']} latency at {result['points']} points, {result['rounds']} rounds x "
              f"{result['calls']} calls (order reversed every round)"),
             "| model | median latency | ratio to " + names[0] + " [95% interval] |", "|---|---|---|"]
    for name in names:
        ms = result["models"][name]["median_s"] * 1e3
        if name == names[0]:
            lines.append(f"| {name} | {ms:.2f} ms | 100% |")
        else:
            r = result["ratios"][name]
            lines.append(f"| {name} | {ms:.2f} ms | {100 * r['median']:.1f}% [{100 * r['low']:.1f}, "
                         f"{100 * r['high']:.1f}] |")
    return "\n".join(lines)
