"""Cost versus input size (1k ... 1M points), teacher versus student, one fresh process per point.

The patch count grows with the cloud: G = max(model's own G, N // ratio) (ratio 16 by default),
optionally clipped at `max_groups`; K stays the model's group size. The tokens then cover
G x K point slots, i.e. a nominal coverage of G*K/N (2x at ratio 16 with K = 32, patches
overlap); the measured coverage is the fraction of input points inside at least one patch.
kNN runs in chunks (ops.knn), so grouping memory stays bounded; full attention over the G tokens
is the teacher's memory and time problem at 300k points, while the student's encoder only sees
its s SuperTokens.

Each (model, size) runs in a fresh Python (`bench.worker`) under a wall-clock time limit and an
optional memory cap (RLIMIT_DATA); a model's curve stops at its first failure. MACs at each size
come from the FLOP counter run at small patch counts and extrapolated exactly in G (see
`extrapolated_macs`), so that they are available even where running the model is out of reach.
"""
from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

from ..io import atomic_write
from ..validation import FoundryInputError
from .flops import STAGES, stage_costs
from .stages import TIMED_STAGES
from .worker import auto_num_groups, build_model, run_in_subprocess

DEFAULT_SIZES = (1024, 8192, 65536, 300_000, 1_000_000)


def _fit_quadratic(xs, ys):
    """Exact coefficients (a, b, c) of y = a + b x + c x^2 through three points (Fractions)."""
    (x0, x1, x2), (y0, y1, y2) = [Fraction(x) for x in xs], [Fraction(y) for y in ys]
    d01 = (y1 - y0) / (x1 - x0)
    d12 = (y2 - y1) / (x2 - x1)
    c = (d12 - d01) / (x2 - x0)
    b = d01 - c * (x0 + x1)
    a = y0 - b * x0 - c * x0 * x0
    return a, b, c


def extrapolated_macs(model, num_points: int, num_groups: int, *, base_groups: int = 8) -> dict | None:
    """MACs per stage (batch 1) of `forward_features` at (num_points, num_groups) without running it.

    For patch-based models every counted stage costs a + b*G + c*G^2 MACs at fixed N (attention
    is the G^2 term) and the kNN distance product adds 3*G*N. We count at G = g, 2g, 4g on a small
    cloud, fit the quadratic exactly, check it at 8g (must match to the MAC, else None: the model is
    not of that form), and evaluate at the wanted size.
    """
    k = int(getattr(model.config, "group_size", 32))
    base_groups = max(base_groups, int(getattr(model.config, "num_supertokens", 0) or 0))  # student: G >= s
    gs = [base_groups, 2 * base_groups, 4 * base_groups, 8 * base_groups]
    n_fit = max(16 * gs[-1], k)
    counts = [stage_costs(model, n_fit, 1, num_groups=g)["macs"] for g in gs]
    out = {}
    for stage in STAGES:
        ys = [c[stage] for c in counts]
        if stage == "grouping":  # 3*G*N: linear in G through the origin, linear in N
            per_gn = Fraction(ys[0], gs[0] * n_fit)
            if any(Fraction(y) != per_gn * g * n_fit for g, y in zip(gs, ys)):
                return None
            out[stage] = int(per_gn * num_groups * num_points)
            continue
        a, b, c = _fit_quadratic(gs[:3], ys[:3])
        if a + b * gs[3] + c * gs[3] ** 2 != ys[3]:
            return None
        out[stage] = int(a + b * num_groups + c * num_groups * num_groups)
    out["total"] = sum(out[s] for s in STAGES)
    return out


def run_scaling(models, sizes=DEFAULT_SIZES, *, ratio: int = 16, max_groups: int | None = None,
                time_limit: float = 240.0, max_memory_gb: float | None = 8.0, threads: int = 1,
                device: str = "cpu", method: str = "forward_features", log=print) -> list[dict]:
    """One record per (model, size) until the model fails or passes the time limit."""
    records = []
    for spec in models:
        model = build_model(spec)
        default_g = int(getattr(model.config, "num_groups", 64))
        k = int(getattr(model.config, "group_size", 32))
        stopped = None
        for n in sizes:
            g = auto_num_groups(n, default_g, k, ratio, max_groups)
            rec = {"model": spec, "points": n, "num_groups": g, "group_size": k, "nominal_coverage": g * k / n}
            try:
                macs = extrapolated_macs(model, n, g)
            except Exception as exc:  # cost figures are a bonus: never block the timing
                macs, rec["macs_error"] = None, f"{type(exc).__name__}: {exc}"
            rec["macs"] = macs
            if stopped:
                rec["status"] = f"not run ({stopped} at a smaller size)"
                records.append(rec)
                continue
            req = {"model": spec, "points": n, "batch": 1, "num_groups": g, "threads": threads, "device": device,
                   "method": method, "max_memory_gb": max_memory_gb, "repeat_budget_s": 3.0, "progress": True,
                   "stages": True}
            res = run_in_subprocess(req, timeout=time_limit + 30)  # + start-up and model build
            rec.update({k2: v for k2, v in res.items() if k2 not in ("model", "points", "num_groups")})
            if res.get("status") == "ok" and res.get("first_call_s", 0) > time_limit:
                rec["over_time_limit"] = True  # finished, so its figures stand; larger sizes are not run
                stopped = "over the time limit"
            elif res.get("status") != "ok":
                stopped = res.get("status")
                steps = res.get("progress") or []
                if steps:  # how far the killed/failed run got, stage by stage
                    rec["reached"] = ", ".join(f"{p['progress']} done at {p['elapsed_s']:.0f} s" for p in steps)
                    peaks = [p["peak_extra_mb"] for p in steps if p.get("peak_extra_mb") is not None]
                    if peaks:
                        rec["peak_extra_mb_before_stop"] = max(peaks)
            records.append(rec)
            if log:
                log(format_scaling([rec], header=False))
    return records


def format_scaling(records: list[dict], header: bool = True) -> str:
    lines = []
    if header:
        lines.append(f"{'model':<14} {'points':>9} {'G':>6} {'cover':>6} {'GMACs':>9} {'time s':>9} "
                     f"{'group s':>8} {'peak MB':>8}  status")
    for r in records:
        macs = r.get("macs") or {}
        gm = f"{macs['total'] / 1e9:9.2f}" if macs else f"{'-':>9}"
        ok = r.get("status") == "ok"
        t = f"{r['time_s']:9.3f}" if ok else f"{'-':>9}"
        gs = f"{r['grouping_s']:8.3f}" if ok and r.get("grouping_s") is not None else f"{'-':>8}"
        mem = f"{r['peak_extra_mb']:8.0f}" if ok and r.get("peak_extra_mb") is not None else f"{'-':>8}"
        cov = f"{r['coverage']:6.1%}" if ok and r.get("coverage") is not None else f"{'-':>6}"
        status = str(r.get("status", "?"))
        if r.get("over_time_limit"):
            status += " (over the time limit: larger sizes not run)"
        if r.get("reached"):
            status += f" [{r['reached']}; peak so far {r.get('peak_extra_mb_before_stop', float('nan')):.0f} MB]"
        lines.append(f"{str(r['model'])[:14]:<14} {r['points']:>9} {r['num_groups']:>6} {cov} {gm} {t} {gs} {mem}  "
                     f"{status}")
    return "\n".join(lines)


MIN_RATIO_MB = 5.0  # peak-memory figures below this are allocator noise (1024 points: 0-2 MB)


def format_ratios(records: list[dict]) -> str:
    """Time and peak-memory ratios of every model to the reference, per size (both finished): the
    first teacher-like model (kind "backbone") listed, else the first model."""
    models = list(dict.fromkeys(r["model"] for r in records))
    if len(models) < 2:
        return ""
    teachers = [r["model"] for r in records if r.get("kind") == "backbone"]
    first = teachers[0] if teachers else models[0]  # (not inside the key: list.sort empties the list meanwhile)
    models.sort(key=lambda m: m != first)
    ref = {r["points"]: r for r in records if r["model"] == models[0] and r.get("status") == "ok"}
    lines = [f"ratios to {models[0]} (time, peak extra RAM, GMACs)",
             f"{'model':<18} {'points':>9} {'time':>8} {'memory':>8} {'MACs':>8}"]
    for r in records:
        base = ref.get(r["points"])
        if r["model"] == models[0] or base is None or r.get("status") != "ok":
            continue
        # a reference that needed under MIN_RATIO_MB extra gives no meaningful memory ratio ("-")
        mem = f"{(r.get('peak_extra_mb') or 0) / base['peak_extra_mb']:8.1%}" \
            if (base.get("peak_extra_mb") or 0) >= MIN_RATIO_MB else f"{'-':>8}"
        macs = r["macs"]["total"] / base["macs"]["total"] if r.get("macs") and base.get("macs") else float("nan")
        lines.append(f"{str(r['model'])[:18]:<18} {r['points']:>9} {r['time_s'] / base['time_s']:8.1%} {mem} "
                     f"{macs:8.1%}")
    return "\n".join(lines)


def plot_scaling(records: list[dict], path, title: str = "") -> None:
    """Time, peak extra RAM and GMACs versus points (log-log), one line per model; PNG via Agg."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(20, 4.2))
    models = list(dict.fromkeys(r["model"] for r in records))
    for spec in models:
        rows = [r for r in records if r["model"] == spec]
        ok = [r for r in rows if r.get("status") == "ok"]
        line = None
        for ax, key in ((axes[0], "time_s"), (axes[1], "peak_extra_mb")):
            pts = [r for r in ok if r.get(key) is not None]
            if pts:
                (line,) = ax.plot([r["points"] for r in pts], [r[key] for r in pts], "o-", label=str(spec))
        grp = [r for r in ok if r.get("grouping_s")]
        if grp and line is not None:
            axes[0].plot([r["points"] for r in grp], [r["grouping_s"] for r in grp], ":", color=line.get_color(),
                         label=f"{spec}: FPS + kNN part")
        failed = [r for r in rows if r.get("status") not in ("ok", None) and not str(r["status"]).startswith("not run")]
        for r in failed:
            for ax in axes[:2]:
                ax.axvline(r["points"], color=line.get_color() if line else "grey", ls=":", alpha=0.7)
            axes[0].annotate(str(r["status"]).split(" (")[0], (r["points"], axes[0].get_ylim()[1]),
                             rotation=90, va="top", ha="right", fontsize=7)
        macs = [r for r in rows if r.get("macs")]
        if macs:
            axes[2].plot([r["points"] for r in macs], [r["macs"]["total"] / 1e9 for r in macs], "s--", label=str(spec))
    _plot_stages(axes[3], records)
    for ax, label in zip(axes[:3], ("latency, batch 1 (s)", "peak extra RAM during the call (MB)",
                                "GMACs (counted, extrapolated in G)")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("points per cloud (G = N/16 patches)")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)


def _plot_stages(ax, records: list[dict]) -> None:
    """Stacked per-stage seconds of each model at the largest size where both it and the first
    model have a stage breakdown."""
    staged = [r for r in records if r.get("status") == "ok" and r.get("stages")]
    if not staged:
        ax.set_axis_off()
        return
    common = set.intersection(*({r["points"] for r in staged if r["model"] == m}
                                for m in dict.fromkeys(r["model"] for r in staged)))
    n = max(common) if common else max(r["points"] for r in staged)
    rows = [r for r in staged if r["points"] == n]
    bottom = [0.0] * len(rows)
    for stage in TIMED_STAGES:
        vals = [max(0.0, r["stages"]["seconds"].get(stage, 0.0)) for r in rows]
        if any(vals):
            ax.bar(range(len(rows)), vals, bottom=bottom, label=stage)
            bottom = [b + v for b, v in zip(bottom, vals)]
    ax.set_xticks(range(len(rows)), [str(r["model"])[:16] for r in rows], fontsize=7)
    ax.set_ylabel(f"seconds per stage at {n:,} points")
    ax.legend(fontsize=7)


def merge_scaling_runs(paths) -> tuple[list[dict], list[dict]]:
    """(settings of each run, their records sorted by model and size) from scaling.json files of
    earlier runs; points a run did not reach are left out."""
    runs = []
    for path in paths:
        try:
            runs.append(json.loads(Path(path).read_text()))
        except (OSError, ValueError) as exc:
            raise FoundryInputError(f"cannot read scaling results {path!r}: {exc}") from exc
    records = sorted((r for run in runs for r in run["scaling"]), key=lambda r: (str(r["model"]), r["points"]))
    records = [r for r in records if not str(r.get("status", "")).startswith("not run")]
    return [run["settings"] for run in runs], records
