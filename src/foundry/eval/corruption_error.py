"""Corruption error relative to the teacher: the `robustness` protocol across the models of a comparison.

With the teacher as ModelNet-C's reference model, per corruption family f (means over seeds,
accuracies A in percent, severities s run):

    CE_f   = sum_s (100 - A_model[f, s]) / sum_s (100 - A_teacher[f, s])      mCE  = mean_f CE_f
    RCE_f  = sum_s (A_model[clean] - A_model[f, s]) / sum_s (A_teacher[clean] - A_teacher[f, s])
                                                                              RmCE = mean_f RCE_f
    retention_f = mean_s A_model[f, s] / mean_s A_teacher[f, s] * 100        (raw retention)

mCE 1.05 means 5% more error under corruption than the teacher; RCE is left out for a family
where the teacher loses nothing. The partial view and each density get CE and retention of
their own (not in the mCE); part segmentation the same from instance mIoU. Each condition's
difference to the teacher also gets its paired 95% interval (`eval.paired`, over the test clouds
or shapes, the same resample for every seed), so a gap under one corruption is judged as the
summary scores are.
Writes the Markdown section of compare.md and robustness.png (accuracy against severity).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..data.corruptions import PARTIAL
from ..io import atomic_write
from .paired import fmt_interval, item_scores, paired_interval
from .robustness import conditions

PROTOCOL = "robustness"


def _mean(summary: dict, metric: str):
    stat = summary.get(metric)
    return None if stat is None or not stat.get("n") else stat["mean"]


def _ratio(num, den):
    return None if num is None or den is None or abs(den) < 1e-9 else num / den


def robustness_summary(evals: dict, teacher_label: str) -> dict | None:
    """{"families", "severities", "density", "seg_families", "models": {label: {...}}} from the
    eval results of a comparison, or None when the robustness protocol was not run."""
    ref = evals[teacher_label]["protocols"].get(PROTOCOL)
    if ref is None:
        return None
    s = ref["settings"]
    conds = conditions(s)
    families = list(dict.fromkeys(f for _, f, _ in conds if f != PARTIAL))
    sevs = sorted({v for _, f, v in conds if f != PARTIAL})
    seg_conds = conditions(s, "seg_") if s.get("seg") else []
    seg_families = list(dict.fromkeys(f for _, f, _ in seg_conds if f != PARTIAL))
    t = ref["summary"]
    out = {"families": families, "severities": sevs, "density": [int(n) for n in s["density"]],
           "num_points": s["num_points"],
           "seg_families": seg_families, "seg_severities": sorted({v for _, f, v in seg_conds if f != PARTIAL}),
           "outlier_filter": bool(s.get("outlier_filter")), "density_patches": s.get("density_patches"),
           "models": {}}
    for label, res in evals.items():
        entry = res["protocols"].get(PROTOCOL)
        if entry is None:
            continue
        m = entry["summary"]
        row = {"scores": {k: v for k, v in m.items()}, "ce": {}, "rce": {}, "retention": {},
               "grouping_filter": _grouping_filter(res)}
        for prefix, fams, clean in (("", families, "clean"), ("seg_", seg_families, "seg_clean")):
            for f in fams:
                names = [f"{prefix}{f}_s{v}" for v in (out["seg_severities"] if prefix else sevs)]
                am, at = [_mean(m, n) for n in names], [_mean(t, n) for n in names]
                if any(v is None for v in am + at):
                    continue
                row["ce"][prefix + f] = _ratio(sum(100 - v for v in am), sum(100 - v for v in at))
                cm, ct = _mean(m, clean), _mean(t, clean)
                if cm is not None and ct is not None:
                    row["rce"][prefix + f] = _ratio(sum(cm - v for v in am), sum(ct - v for v in at))
                row["retention"][prefix + f] = _ratio(100 * np.mean(am), np.mean(at))
            singles = [prefix + "clean", prefix + PARTIAL] + ([f"density_{n}" for n in out["density"]] + ["corrupted"]
                                                             if not prefix else [])
            for name in singles:
                am, at = _mean(m, name), _mean(t, name)
                if am is None or at is None:
                    continue
                row["retention"].setdefault(name, _ratio(100 * am, at))
                if name not in (prefix + "clean", "corrupted"):
                    row["ce"].setdefault(name, _ratio(100 - am, 100 - at))
        if label != teacher_label:
            row["paired"] = _paired_conditions(entry, ref, _condition_names(out))
        ce = [row["ce"][f] for f in families if row["ce"].get(f) is not None]
        rce = [row["rce"][f] for f in families if row["rce"].get(f) is not None]
        row["mce"] = float(np.mean(ce)) if ce else None
        row["rmce"] = float(np.mean(rce)) if rce else None
        out["models"][label] = row
    return out


def _condition_names(summary: dict) -> list[str]:
    """The per-condition scores a comparison pairs: each family (its mean over severities), the partial
    view and each density; then the same for part segmentation."""
    names = summary["families"] + [PARTIAL] + [f"density_{n}" for n in summary["density"]]
    return names + ["seg_" + f for f in summary["seg_families"]] + ["seg_" + PARTIAL]


def _paired_conditions(entry: dict, teacher_entry: dict, names: list[str]) -> dict:
    """{condition: paired interval against the teacher} for the conditions both recorded per item."""
    out = {}
    for name in names:
        mine, theirs = item_scores(entry, name), item_scores(teacher_entry, name)
        if mine is not None and theirs is not None and mine[0].shape == theirs[0].shape:
            out[name] = paired_interval(mine, theirs)
    return out


def _f(v, digits=1) -> str:
    return "-" if v is None or not np.isfinite(v) else f"{v:.{digits}f}"


def _stat(row, name) -> str:
    s = row["scores"].get(name)
    return "-" if s is None or not s.get("n") else f"{s['mean']:.1f} ± {s['std']:.1f}"


def _grouping_filter(res: dict) -> bool | None:
    """The model's own outlier filter before its grouping (its config), None when the results do not say."""
    value = ((res.get("model") or {}).get("config") or {}).get("outlier_filter")
    return None if value is None else bool(value)


def _filters_phrase(summary: dict, short: bool = False) -> str:
    """Both filters named apart: the protocol's pre-filter on every cloud (a setting of the protocol) and each
    model's own grouping filter (its config, FOUNDRY_OUTLIER_FILTER); "outlier filter off" alone misread the second."""
    own = {label: r.get("grouping_filter") for label, r in summary["models"].items()}
    known = {v for v in own.values() if v is not None}
    if not known:
        models = "models' own grouping filter not recorded"
    elif len(known) == 1:
        models = f"every model's own grouping filter {'on' if known.pop() else 'off'}"
    elif short:  # a figure's title: the per-model list is in compare.md
        models = "own grouping filter on for some models, off for others"
    else:
        models = "own grouping filter " + ", ".join(f"{k} {'on' if v else 'off'}" for k, v in own.items() if v is not None)
    return f"the protocol's outlier pre-filter {'on' if summary['outlier_filter'] else 'off'}, {models}"


def robustness_markdown(summary: dict, teacher_label: str, split: str = "test") -> list[str]:
    """Lines of the robustness section of compare.md (split: the one scored, "test" or "val")."""
    fams, models = summary["families"], summary["models"]
    scored = "validation" if split == "val" else split
    note = (f"Linear SVM fitted on clean train clouds, scored on corrupted {scored} clouds (the same clouds for every "
            f"model); severities {summary['severities']}; {_filters_phrase(summary)}. mCE / RmCE (over the families run) relative to the teacher "
            f"({teacher_label} = 1.00; lower is better); retention = accuracy / the teacher's accuracy, %.")
    lines = ["", "## Robustness: accuracy under corruption (ModelNet-C families, partial view, density)", "", note, "",
             "| " + " | ".join(["model", "clean", *fams, "corrupted", "partial", "mCE", "RmCE", "retention corrupted %",
                                "retention partial %"]) + " |", "|" + "---|" * (len(fams) + 8)]
    for label, r in models.items():
        cells = [label, _stat(r, "clean")] + [_stat(r, f) for f in fams] + [
            _stat(r, "corrupted"), _stat(r, PARTIAL), _f(r["mce"], 3), _f(r["rmce"], 3),
            _f(r["retention"].get("corrupted")), _f(r["retention"].get(PARTIAL))]
        lines.append("| " + " | ".join(cells) + " |")
    if fams or summary["density"]:
        head = fams + ["partial"] + [f"density {n}" for n in summary["density"]]
        lines += ["", "Corruption error per family relative to the teacher (CE_f; partial and density: error ratio):",
                  "", "| model | " + " | ".join(head) + " |", "|" + "---|" * (len(head) + 1)]
        for label, r in models.items():
            cells = [_f(r["ce"].get(k), 3) for k in fams + [PARTIAL] + [f"density_{n}" for n in summary["density"]]]
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    sevs = summary["severities"]
    if fams and len(sevs) > 1:  # the curves of robustness.png as numbers
        lines += ["", "Accuracy per family and severity (the family column above is the mean over severities):", "",
                  "| model | family | clean | " + " | ".join(f"severity {s}" for s in sevs) + " |",
                  "|" + "---|" * (len(sevs) + 3)]
        for label, r in models.items():
            for f in fams:
                lines.append(f"| {label} | {f} | {_stat(r, 'clean')} | "
                             + " | ".join(_stat(r, f"{f}_s{s}") for s in sevs) + " |")
    if summary["density"]:
        lines += ["", f"Density (points per cloud; patches {summary['density_patches']}; above the clouds' own count "
                  "by interpolation between neighbours):", "",
                  "| model | clean | " + " | ".join(str(n) for n in summary["density"]) + " |",
                  "|" + "---|" * (len(summary["density"]) + 2)]
        for label, r in models.items():
            lines.append(f"| {label} | {_stat(r, 'clean')} | "
                         + " | ".join(_stat(r, f"density_{n}") for n in summary["density"]) + " |")
    if summary["seg_families"] or any("seg_partial" in r["scores"] for r in models.values()):
        seg = summary["seg_families"]
        lines += ["", "Part segmentation (instance mIoU, head trained on clean tokens), retention % in brackets:", "",
                  "| model | clean | " + " | ".join(seg) + " | partial |", "|" + "---|" * (len(seg) + 3)]
        for label, r in models.items():
            cells = [f"{_stat(r, 'seg_' + k)} ({_f(r['retention'].get('seg_' + k))})" for k in seg + [PARTIAL]]
            lines.append(f"| {label} | {_stat(r, 'seg_clean')} | " + " | ".join(cells) + " |")
    paired = [(label, r["paired"]) for label, r in models.items() if r.get("paired")]
    if paired:
        names = [n for n in _condition_names(summary) if any(n in p for _, p in paired)]
        lines += ["", "Paired with the teacher per condition: model - teacher in points (part segmentation: instance "
                  f"mIoU), `estimate [2.5%, 97.5%]`, resampled over the {scored} clouds or shapes; **bold**: the interval "
                  "excludes zero (not within noise).", "",
                  "| model | " + " | ".join(n.replace("_", " ") for n in names) + " |", "|" + "---|" * (len(names) + 1)]
        for label, p in paired:
            cells = [("-" if n not in p else fmt_interval(p[n]["difference"]) if p[n]["within_noise"]
                      else f"**{fmt_interval(p[n]['difference'])}**") for n in names]
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def plot_robustness(summary: dict, path, title: str = "") -> Path | None:
    """Accuracy against severity (0 = clean), one panel per family, plus partial view, density and
    part segmentation panels; one line per model, error bars = std over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = summary["models"]
    panels = [(f, "", "accuracy %") for f in summary["families"]]
    panels += [(f, "seg_", "instance mIoU %") for f in summary["seg_families"]]
    extra = [k for k, ok in (("partial", any(PARTIAL in r["scores"] for r in models.values())),
                             ("density", bool(summary["density"]))) if ok]
    n = len(panels) + len(extra)
    if not n or not models:
        return None
    cols = min(4, n)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 3.0 * rows), squeeze=False)
    flat = list(axes.ravel())
    for ax, (fam, prefix, ylabel) in zip(flat, panels):
        sevs = summary["seg_severities"] if prefix else summary["severities"]
        for i, (label, r) in enumerate(models.items()):
            stats = [r["scores"].get(prefix + "clean")] + [r["scores"].get(f"{prefix}{fam}_s{v}") for v in sevs]
            xs = [x for x, s in zip([0] + sevs, stats) if s]
            ax.errorbar(xs, [s["mean"] for s in stats if s], yerr=[s["std"] for s in stats if s], marker="o", ms=3,
                        capsize=2, color=f"C{i}", label=label)
        ax.set_title(("part seg: " if prefix else "") + fam, fontsize=9)
        ax.set_xticks([0] + list(sevs))
        ax.set_xlabel("severity (0 = clean)", fontsize=8)
        ax.set_ylabel(ylabel, fontsize=8)
        ax.grid(alpha=0.3)
    rest = flat[len(panels):]
    for ax, kind in zip(rest, extra):
        if kind == "partial":
            labels = list(models)
            for i, label in enumerate(labels):
                for j, name in enumerate(("clean", PARTIAL)):
                    s = models[label]["scores"].get(name)
                    if s:
                        ax.bar(i + 0.4 * j - 0.2, s["mean"], 0.38, yerr=s["std"], color=f"C{i}",
                               alpha=1.0 if j else 0.45, capsize=2)
            ax.set_xticks(range(len(labels)), labels, rotation=30, fontsize=6, ha="right")
            ax.set_title("clean (light) vs single-view partial", fontsize=9)
            ax.set_ylabel("accuracy %", fontsize=8)
        else:
            for i, (label, r) in enumerate(models.items()):
                pts = [(d, r["scores"].get(f"density_{d}")) for d in summary["density"]]
                pts.append((summary.get("num_points"), r["scores"].get("clean")))  # the clouds as they are
                pts = sorted(((d, s) for d, s in pts if d and s), key=lambda p: p[0])
                ax.errorbar([d for d, _ in pts], [s["mean"] for _, s in pts], yerr=[s["std"] for _, s in pts],
                            marker="o", ms=3, capsize=2, color=f"C{i}", label=label)
            ax.set_xscale("log", base=2)
            ax.set_title(f"density (patches {summary['density_patches']})", fontsize=9)
            ax.set_xlabel("points per cloud", fontsize=8)
            ax.set_ylabel("accuracy %", fontsize=8)
        ax.grid(alpha=0.3)
    for ax in flat[n:]:
        ax.axis("off")
    flat[0].legend(fontsize=6)
    fig.suptitle(title or f"Robustness ({_filters_phrase(summary, short=True)}; mean ± std over seeds)", fontsize=10)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)
    return Path(path)
