"""`foundry compare`: teacher vs students vs baselines under one protocol, in one table.

Every model is evaluated by `run_eval` into `<out>/evals/<label>/` (resumable: finished
(protocol, seed) results there are reused, so a `foundry eval ... --out <out>/evals/<label>`
made before with the same settings counts), with the teacher as the reference (few-shot folds
are paired with the teacher's, fidelity is measured against it). A random-initialised network
of the teacher's shape (built from the teacher's config with a fixed seed, saved in
`<out>/models/`) gives the floor for the second retention measure:

    retention (raw)       = score / teacher score * 100
    retention (gain share) = (score - random) / (teacher - random) * 100

both from the means over seeds, each with its paired 95% bootstrap interval (eval.paired: the
same resample of test clouds / shapes / folds for every model and seed); a difference whose
interval holds zero is reported "within noise". MACs: `foundry.bench.flops.model_macs` at the protocols' point
count, batch 1. Writes compare.json, compare.md and pareto.png (score against GMACs), and with the
robustness protocol robustness.png (accuracy against severity) and its mCE section (eval.corruption_error).
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from ..api import save
from ..bench.flops import model_macs
from ..io import atomic_write, config_dict, write_json
from ..models.kinds import build_model
from ..validation import FoundryInputError
from .corruption_error import plot_robustness, robustness_markdown, robustness_summary
from .paired import fmt_interval, item_scores, paired_interval, partseg_by_category, verdict
from .protocols import LOWER_IS_BETTER
from .runner import fmt, load_model, run_eval

RANDOM_LABEL = "random-init"
GROUP_ORDER = ["teacher", "random init", "Foundry student", "FMD baseline", "KD expert", "ToMe", "other"]
# task metrics that get retention columns (fidelity is a distance to the teacher, not a task)
TASK_METRICS = {"svm": ["accuracy"], "probe": ["accuracy"], "finetune": ["accuracy"], "fewshot": None,
                "partseg": ["class_miou", "instance_miou"], "transfer": ["accuracy", "instance_miou"],
                "robustness": ["clean", "corrupted", "partial", "seg_clean", "seg_partial"]}
FIDELITY_METRICS = ["cosine", "cka_tokens", "smooth_l1"]


def random_init_like(teacher, seed: int = 0):
    """A network of the teacher's shape with fresh random weights (torch seed `seed`)."""
    torch.manual_seed(seed)
    return build_model(teacher.kind, config_dict(teacher)).eval()


def model_group(model, label: str, teacher_label: str) -> str:
    """Which family a model belongs to, from its kind, config and provenance."""
    if label == teacher_label:
        return "teacher"
    if label == RANDOM_LABEL:
        return "random init"
    kind = model.kind
    info = getattr(model, "checkpoint_info", {}) or {}
    text = json.dumps(info).lower()
    if "tome" in kind:
        return "ToMe"
    if '"kd' in text or "kd expert" in text or "logit" in text or info.get("role") == "kd-expert":
        return "KD expert"
    if kind == "student":
        comp = getattr(model.config, "compression", "dso")
        return "Foundry student" if comp == "dso" else "FMD baseline"
    return "other"


def _task_columns(evals: dict) -> list[tuple[str, str]]:
    cols = []
    for proto, metrics in TASK_METRICS.items():
        names = []
        for res in evals.values():
            summ = res["protocols"].get(proto, {}).get("summary", {})
            names += [m for m in summ if m not in names]
        if metrics is None:  # fewshot: every acc_<n>w<k>s
            metrics = [m for m in names if m.startswith("acc_") and not m.endswith("_minus_ref")]
        cols += [(proto, m) for m in metrics if m in names]
    return cols


def run_compare(teacher, models, out_dir, *, protocols=("svm", "fewshot", "partseg", "fidelity"), seeds=(0, 1, 2),
                quick=False, overrides=None, device="cpu", batch_size=32, labels=None, groups=None,
                random_seed=0, include_random=True, macs_points=None, overwrite=False, eval_dirs=None,
                log=print, split: str = "test", pair_with: str | None = None) -> dict:
    """Evaluate teacher, random floor and `models`; write the comparison to `out_dir`.

    eval_dirs: {label: folder} of earlier `foundry eval` runs to use (and complete) instead of
    `<out_dir>/evals/<label>`; their finished seeds are reused when the settings match."""
    eval_dirs = {k: Path(v) for k, v in (eval_dirs or {}).items()}
    t0 = time.time()
    out = Path(out_dir)
    labels, groups = dict(labels or {}), dict(groups or {})
    teacher_model, tname = load_model(teacher)
    tlabel = labels.get(str(teacher), Path(str(teacher)).stem if Path(str(teacher)).exists() else str(teacher))
    teacher_model.eval_name = tlabel
    entries = [(tlabel, teacher_model, str(teacher))]
    # the floor's only use is the gain share of task scores: its token fidelity to the teacher, the
    # teacher's heads on it (transfer) and its robustness are not run
    floor_protocols = [p for p in protocols if p not in ("fidelity", "transfer", "robustness")]
    if include_random and floor_protocols:
        rpath = out / "models" / f"{RANDOM_LABEL}.safetensors"
        rmodel = random_init_like(teacher_model, random_seed)
        if not rpath.exists():
            save(rmodel, rpath, info={"role": "random-init floor", "teacher": tname, "seed": random_seed})
        entries.append((RANDOM_LABEL, rmodel, str(rpath)))
    seen = {e[0] for e in entries}
    for spec in models:
        label = labels.get(str(spec))
        if label is None:
            label = Path(str(spec)).stem if Path(str(spec)).exists() else str(spec)
        if label in seen:
            raise FoundryInputError(f"two models would share the label {label!r}; name them with LABEL=MODEL")
        seen.add(label)
        m, _ = load_model(spec)
        entries.append((label, m, str(spec)))
    if pair_with is not None and pair_with not in seen:
        raise FoundryInputError(f"--pair-with {pair_with!r} is not one of the compared labels: {', '.join(seen)}")
    evals, rows = {}, []
    # the floor last: the models' evaluations come first; it is scored without the teacher as reference
    # (nothing of it is paired with the teacher), so it can also be run apart (`foundry eval`) and reused
    entries.sort(key=lambda e: e[0] == RANDOM_LABEL)
    for label, model, spec in entries:
        log(f"== {label} ({spec})")
        edir = eval_dirs.get(label, out / "evals" / label)
        floor = label == RANDOM_LABEL
        res = run_eval(model, floor_protocols if floor else protocols, seeds, edir, quick=quick,
                       overrides=overrides, reference=None if floor else teacher_model, device=device,
                       batch_size=batch_size, overwrite=overwrite, log=log, name=label, split=split,
                       cache_dir=out / "cache")
        evals[label] = res

        n = macs_points or _points(res) or getattr(model.config, "num_points", 1024)
        macs = model_macs(model.cpu(), n)
        rows.append({"label": label, "spec": spec, "group": groups.get(label, model_group(model, label, tlabel)),
                     "kind": model.kind, "parameters": res["model"]["parameters"],
                     "gmacs": macs / 1e9, "macs_points": n, "eval_dir": str(edir)})
    cols = _task_columns(evals)
    teacher_res, random_res = evals[tlabel], evals.get(RANDOM_LABEL)
    for row in rows:
        res = evals[row["label"]]
        row["scores"], row["retention_raw"], row["retention_gain"], row["paired"] = {}, {}, {}, {}
        for proto, metric in cols + [("fidelity", m) for m in FIDELITY_METRICS]:
            stat = res["protocols"].get(proto, {}).get("summary", {}).get(metric)
            if stat is None:
                continue
            key = f"{proto}/{metric}"
            row["scores"][key] = stat
            if proto == "fidelity":
                continue
            t = teacher_res["protocols"][proto]["summary"].get(metric, {}).get("mean")
            r = (random_res["protocols"].get(proto, {}).get("summary", {}).get(metric, {}).get("mean")
                 if random_res else None)
            if t:
                row["retention_raw"][key] = 100.0 * stat["mean"] / t
            if r is not None and t is not None and t - r > 1e-9:
                row["retention_gain"][key] = 100.0 * (stat["mean"] - r) / (t - r)
            if row["label"] != tlabel:
                interval = _paired(res, teacher_res, random_res, proto, metric)
                if interval is not None:
                    row["paired"][key] = interval
        seg = res["protocols"].get("partseg", {}).get("details", {})
        if seg:
            row["partseg_layers"] = next(iter(seg.values())).get("layers")
            if row["label"] not in (tlabel, RANDOM_LABEL):
                by_cat = partseg_by_category(res["protocols"]["partseg"], teacher_res["protocols"].get("partseg", {}))
                row["partseg_by_category"] = {name: {"shapes": n, "teacher": t, "paired": iv}
                                              for name, (n, t, iv) in by_cat.items()}
        pooled = res["protocols"].get("fewshot", {}).get("pooled", {})
        row["fewshot_paired"] = {k: v["paired_difference_all_folds"] for k, v in pooled.items()
                                 if "paired_difference_all_folds" in v}
    if pair_with is not None:
        for row in rows:
            if row["label"] != pair_with:
                row["paired_with"] = {f"{p}/{m}": iv for p, m in cols
                                      if (iv := _paired(evals[row["label"]], evals[pair_with], None, p, m)) is not None}
    mismatches = _mismatches(evals, tlabel)
    for m in mismatches:
        log(f"WARNING: {m}")
    rows.sort(key=lambda r: (GROUP_ORDER.index(r["group"]) if r["group"] in GROUP_ORDER else 99, r["gmacs"]))
    result = {"format": "foundry-compare", "teacher": tlabel, "split": split, "seeds": list(seeds),
              "protocols": list(protocols), "quick": bool(quick), "columns": [f"{p}/{m}" for p, m in cols],
              "rows": rows,
              "settings": {p: teacher_res["protocols"][p]["settings"] for p in teacher_res["protocols"]},
              "versions": teacher_res["versions"], "git": teacher_res["git"], "device": teacher_res["device"],
              "random_init_seed": random_seed if include_random else None, "mismatches": mismatches,
              "robustness": robustness_summary(evals, tlabel), "pair_with": pair_with, "wall_time_s": time.time() - t0}
    write_json(out / "compare.json", result)

    text = compare_markdown(result)
    atomic_write(out / "compare.md", lambda tmp: Path(tmp).write_text(text))
    plot_pareto(result, out / "pareto.png")
    if result["robustness"]:
        plot_robustness(result["robustness"], out / "robustness.png")
    return result


def _paired(res, teacher_res, random_res, proto: str, metric: str) -> dict | None:
    """The paired interval of one model's score against the teacher's (and the floor's), when
    both recorded their item scores on the same items."""
    items = [item_scores(r["protocols"].get(proto, {}), metric) if r is not None else None
             for r in (res, teacher_res, random_res)]
    if items[0] is None or items[1] is None or items[0][0].shape != items[1][0].shape:
        return None
    return paired_interval(items[0], items[1], items[2])


def _mismatches(evals: dict, teacher_label: str) -> list[str]:
    """Where a model was not evaluated on the teacher's settings and data (e.g. a reused folder)."""
    out = []
    ref = evals[teacher_label]["protocols"]
    for label, res in evals.items():
        for proto, e in res["protocols"].items():
            t = ref.get(proto)
            if t is None:
                continue
            if e["settings"] != t["settings"]:
                out.append(f"{label}: {proto} settings differ from the teacher's")
            if e.get("data_checksums") != t.get("data_checksums"):
                out.append(f"{label}: {proto} data checksums differ from the teacher's")
            if not e.get("data_consistent_across_seeds", True):
                out.append(f"{label}: {proto} data differ between seeds")
    return out


def _points(res) -> int | None:
    for p in ("svm", "fewshot", "probe", "finetune", "fidelity"):
        s = res["protocols"].get(p, {}).get("settings", {})
        if s.get("num_points"):
            return int(s["num_points"])
    return None


def compare_markdown(result: dict) -> str:
    cols = result["columns"]
    fid = [f"fidelity/{m}" for m in FIDELITY_METRICS if any(f"fidelity/{m}" in r["scores"] for r in result["rows"])]
    head = ["model", "group", "params (M)", f"GMACs @{result['rows'][0]['macs_points']} pts"] + cols + fid
    split = result.get("split", "test")
    scored = ("validation" if split == "val" else split) + " split"
    lines = [f"# foundry compare (teacher: {result['teacher']}, {scored})", "",
             f"Mean ± std (sample std, ddof=1) over seeds {result['seeds']}"
             f"{' (quick settings)' if result['quick'] else ''}. "
             "Accuracy / mIoU in percent; fidelity against the teacher "
             f"({', '.join(m + (' (lower is better)' if m in LOWER_IS_BETTER else '') for m in FIDELITY_METRICS)}).",
             "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in result["rows"]:
        cells = [r["label"], r["group"], f"{r['parameters'] / 1e6:.2f}", f"{r['gmacs']:.3f}"]
        cells += [fmt(r["scores"].get(c), c.split("/")[1]) for c in cols + fid]
        lines.append("| " + " | ".join(cells) + " |")
    if result.get("mismatches"):
        lines += ["", "**Not comparable:** " + "; ".join(result["mismatches"]) + "."]
    else:
        lines += ["", "Every model: the same protocol settings and the same data (checksums match the teacher's)."]
    seg = [f"{r['label']}: {'blocks ' + str(r['partseg_layers']) if r['partseg_layers'] else 'final tokens'}"
           for r in result["rows"] if "partseg_layers" in r]
    if seg:
        lines += ["", "Part-segmentation head input (frozen backbone): " + "; ".join(seg) + "."]
    lines += ["", "## Retention of the teacher's score", "",
              "raw = score / teacher; gain share = (score - random init) / (teacher - random init); from the means.",
              "", "| model | group | " + " | ".join(f"{c} raw % / gain %" for c in cols) + " |",
              "|" + "---|" * (len(cols) + 2)]
    for r in result["rows"]:
        cells = [r["label"], r["group"]]
        for c in cols:
            raw, gain = r["retention_raw"].get(c), r["retention_gain"].get(c)
            cells.append(f"{'-' if raw is None else f'{raw:.1f}'} / {'-' if gain is None else f'{gain:.1f}'}")
        lines.append("| " + " | ".join(cells) + " |")
    with_ci = [r for r in result["rows"] if r.get("paired")]
    if with_ci:
        lines += ["", "## Paired with the teacher: 95% bootstrap intervals",
                  "", "Model - teacher in points, raw retention and gain share in %, each `estimate [2.5%, 97.5%]`; "
                  f"resampled over the {scored}'s clouds (SVM), shapes (part segmentation) or folds (few-shot), the "
                  "same resample for every model and seed. *Within noise*: the interval of the difference holds zero.",
                  "", "| model | metric | difference | raw % | gain % | verdict |", "|---|---|---|---|---|---|"]
        for r in with_ci:
            for c, iv in r["paired"].items():
                gain = fmt_interval(iv["gain"]) if "gain" in iv else "-"
                lines.append(f"| {r['label']} | {c} | {fmt_interval(iv['difference'], 2)} | {fmt_interval(iv['raw'])} "
                             f"| {gain} | {verdict(iv)} |")
    against = [r for r in result["rows"] if r.get("paired_with")]
    if against:
        ref = result["pair_with"]
        lines += ["", f"## Paired with {ref}: 95% bootstrap intervals",
                  "", f"Model - {ref} in points, and the model's score as % of {ref}'s, resampled as above. "
                  "*Within noise*: the interval of the difference holds zero.",
                  "", "| model | metric | difference | % of " + ref + " | verdict |", "|---|---|---|---|---|"]
        for r in against:
            for c, iv in r["paired_with"].items():
                lines.append(f"| {r['label']} | {c} | {fmt_interval(iv['difference'], 2)} | {fmt_interval(iv['raw'])} "
                             f"| {verdict(iv, ref)} |")
    paired = [k for r in result["rows"] for k in r.get("fewshot_paired", {})]
    if paired:
        keys = list(dict.fromkeys(paired))
        lines += ["", "## Few-shot, paired with the teacher fold by fold (model - teacher, mean ± std over all folds)",
                  "", "| model | " + " | ".join(keys) + " |", "|" + "---|" * (len(keys) + 1)]
        for r in result["rows"]:
            lines.append("| " + r["label"] + " | " + " | ".join(fmt(r["fewshot_paired"].get(k)) for k in keys) + " |")
    by_cat = [r for r in result["rows"] if r.get("partseg_by_category")]
    if by_cat:
        cats = list(by_cat[0]["partseg_by_category"])
        lines += ["", "## Part segmentation by category, paired with the teacher",
                  "", "Instance mIoU over each category's shapes, model - teacher in points, `estimate [2.5%, 97.5%]` "
                  "(resampled over that category's shapes); **bold**: the interval excludes zero.", "",
                  "| category | shapes | teacher | " + " | ".join(r["label"] for r in by_cat) + " |",
                  "|" + "---|" * (len(by_cat) + 3)]
        for c in cats:
            first = by_cat[0]["partseg_by_category"][c]
            cells = []
            for r in by_cat:
                iv = r["partseg_by_category"].get(c, {}).get("paired")
                text = "-" if iv is None else fmt_interval(iv["difference"], 2)
                cells.append(text if iv is None or iv["within_noise"] else f"**{text}**")
            lines.append(f"| {c} | {first['shapes']} | {first['teacher']:.1f} | " + " | ".join(cells) + " |")
    if result.get("robustness"):
        lines += robustness_markdown(result["robustness"], result["teacher"], split)
    lines += ["", "Per-model results, settings, data checksums and versions: `evals/<model>/results.json`. "
              "Plot: `pareto.png`" + (", `robustness.png`." if result.get("robustness") else ".")]
    return "\n".join(lines) + "\n"


def plot_pareto(result: dict, path) -> Path | None:
    """Score against GMACs, one panel per task metric, the Pareto front drawn as a step line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = [c for c in result["columns"] if any(c in r["scores"] for r in result["rows"])][:4]
    if not cols:
        return None
    fig, axes = plt.subplots(1, len(cols), figsize=(4.6 * len(cols), 4.0), squeeze=False)
    colors = {g: f"C{i}" for i, g in enumerate(GROUP_ORDER)}
    for ax, col in zip(axes[0], cols):
        pts = []
        for r in result["rows"]:
            s = r["scores"].get(col)
            if s is None:
                continue
            g = r["group"]
            ax.errorbar(r["gmacs"], s["mean"], yerr=s["std"], fmt="o", color=colors.get(g, "k"), capsize=3,
                        label=g)
            ax.annotate(r["label"], (r["gmacs"], s["mean"]), fontsize=7, xytext=(4, 3), textcoords="offset points")
            if g != "random init":
                pts.append((r["gmacs"], s["mean"]))
        front, best = [], -np.inf
        for x, y in sorted(pts, key=lambda p: (p[0], -p[1])):
            if y > best:
                front.append((x, y))
                best = y
        if len(front) > 1:
            ax.step([p[0] for p in front], [p[1] for p in front], where="post", color="grey", lw=1, ls="--",
                    label="Pareto front")
        ax.set_xlabel("GMACs per cloud (batch 1)")
        ax.set_ylabel(col)
        ax.grid(alpha=0.3)
        handles, labs = ax.get_legend_handles_labels()
        uniq = dict(zip(labs, handles))
        ax.legend(uniq.values(), uniq.keys(), fontsize=7)
    fig.suptitle(f"Accuracy vs compute (teacher {result['teacher']}, mean ± std over seeds)", fontsize=10)
    fig.tight_layout()

    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=120, format="png"))
    plt.close(fig)
    return Path(path)
