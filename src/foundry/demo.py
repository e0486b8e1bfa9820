"""`foundry demo`: Foundry end to end on the bundled real data, in minutes on a laptop CPU.

1. distil a student from the shipped teacher (short run), or use a shipped student;
2. evaluate teacher, student and a random-initialised floor side by side (linear SVM, few-shot
   with several folds, part segmentation on a small KiCadPart split, token fidelity, and a quick
   robustness check: the SVM on corrupted clouds);
3. benchmark teacher and student (MACs per stage, CPU latency and throughput, peak memory);
4. write a report folder (Markdown + PNG figures) and print the summary table.
"""
from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from . import viz
from .api import load
from .bench.report import bench_models
from .data import load_arrays
from .eval.compare import compare_markdown, run_compare
from .hub import resolve
from .io import atomic_write
from .models.student import create_student
from .models.surgery import init_from_teacher
from .report.pages import first_of_each, student_view, write_page
from .report.views import local_part_ids, part_predictions, supertoken_of_points
from .train.distill import distill

DEMO_PROTOCOLS = ("svm", "fewshot", "partseg", "fidelity", "robustness")
FIGURE_CAPTIONS = {"pareto": "Accuracy against GMACs (Pareto view)", "latency": "CPU latency at batch 1",
                   "robustness": "Accuracy under corruption (quick: outliers, jitter, single-view partial scans)",
                   "supertokens": "SuperToken assignment: each point coloured by the SuperToken its patch joined",
                   "parts": "Part segmentation on KiCadPart test shapes: ground truth (top) vs predictions with the "
                            "student's tokens (bottom)"}


def _log_step(log, n, text):
    log(f"\n[{n}/5] {text}")


def run_demo(out_dir="foundry-demo", *, teacher="teacher-vits", student=None, preset="foundry-s16",
             epochs=6, limit=800, views=1, batch_size=32, seeds=(0, 1, 2), data=("modelnet10:train",),
             overrides=None, seg_data="kicadpart", cls_data="modelnet10", bench_points=1024, bench_runs=10,
             bench_memory=True, threads=None, also_shipped="foundry-vits-s16",
             figures=True, log=print) -> dict:
    """Run the whole demo; returns the summary dict (also written as report.json).

    student: a shipped name / checkpoint to use instead of distilling one (skips step 1).
    also_shipped: a shipped student evaluated beside a freshly distilled one, when it exists
        (the short demo run is a demonstration; the shipped student shows a full run).
    overrides: {protocol: {setting: value}} on top of the quick protocol settings.
    """
    t0 = time.time()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if threads:
        torch.set_num_threads(threads)
    timings = {}

    # 1. the student ------------------------------------------------------------------------
    _log_step(log, 1, "student")
    t = time.time()
    teacher_model = load(teacher)
    if student is None:
        smodel = create_student(preset, **_student_overrides(teacher_model, preset))
        try:
            init_from_teacher(smodel, teacher_model)
        except Exception as exc:  # initialisation is an optional help, never a requirement
            log(f"(student not initialised from the teacher: {exc})")
        log(f"distilling {preset} from {teacher}: {epochs} epochs on {limit or 'all'} clouds of {', '.join(data)}")
        summary = distill(teacher_model, smodel, teacher_name=str(teacher), data=list(data), out_dir=out / "distill",
                          epochs=epochs, batch_size=batch_size, views=views, limit=limit,
                          resume=(out / "distill" / "training_state.pt").exists(),
                          command=f"foundry demo (distil {preset})")
        student_spec = str(out / "distill" / "student.safetensors")
        if not Path(student_spec).exists():
            student_spec = summary.get("checkpoint", student_spec)
        student_label = f"{preset}-demo-{epochs}ep"
    else:
        student_spec = str(student)
        student_label = _label(student_spec)
        log(f"using {student_spec} (no training)")
    timings["student"] = time.time() - t

    # 2. evaluation -------------------------------------------------------------------------
    _log_step(log, 2, "evaluation: teacher vs student vs random-init floor, same quick protocols")
    t = time.time()
    ov = {"partseg": {"data": seg_data}, "svm": {"data": cls_data}, "fewshot": {"data": cls_data},
          "fidelity": {"data": cls_data}, "robustness": {"data": cls_data}}
    for k, v in (overrides or {}).items():
        ov.setdefault(k, {}).update(v)

    models = [student_spec]
    labels = {str(teacher): _label(teacher), student_spec: student_label}
    if (student is None and also_shipped and resolve(also_shipped) is not None
            and load(also_shipped).config.teacher == str(teacher)):  # only a student of this very teacher
        models.append(also_shipped)
        labels[also_shipped] = also_shipped
    cmp = run_compare(teacher, models, out / "compare", protocols=DEMO_PROTOCOLS, seeds=seeds, quick=True,
                      overrides=ov, labels=labels,
                      batch_size=batch_size, log=log)
    timings["evaluation"] = time.time() - t

    # 3. benchmark --------------------------------------------------------------------------
    _log_step(log, 3, f"benchmark: MACs, CPU latency and memory at {bench_points} points")
    t = time.time()
    bench = _bench(teacher, student_spec, bench_points, bench_runs, bench_memory, log)
    bench["labels"] = {str(teacher): _label(teacher), student_spec: student_label}
    timings["benchmark"] = time.time() - t

    # 4. figures and report -----------------------------------------------------------------
    _log_step(log, 4, "figures and report")
    t = time.time()
    smodel = load(student_spec)
    figs = {}
    if figures:
        figs = _figures(out, cmp, bench, smodel, student_label, cls_data, seg_data, log)
    timings["report"] = time.time() - t
    timings["total"] = time.time() - t0
    summary = {"teacher": str(teacher), "student": student_spec, "student_label": student_label,
               "compare": str(out / "compare" / "compare.json"), "bench": bench, "figures": figs,
               "timings_s": timings, "machine": {"platform": platform.platform(), "threads": torch.get_num_threads(),
                                                 "torch": torch.__version__},
               "seeds": list(seeds)}
    text = report_markdown(cmp, bench, figs, summary)
    atomic_write(out / "report.md", lambda tmp: Path(tmp).write_text(text))
    html_page = write_html(out, cmp, bench, figs, summary, teacher_model, smodel, seg_data, cls_data, log) if figures else None
    summary["html"] = str(html_page) if html_page else None
    atomic_write(out / "report.json", lambda tmp: Path(tmp).write_text(json.dumps(summary, indent=2, default=str)))

    # 5. summary ----------------------------------------------------------------------------
    _log_step(log, 5, "summary")
    log(summary_table(cmp, bench))
    log(f"\nReport: {out / 'report.md'} (figures in {out / 'figures'})"
        + (f", interactive: {html_page}" if html_page else "") + f"; wall time {timings['total'] / 60:.1f} min.")
    log("Full protocols (all data, more epochs): foundry compare --teacher teacher-vits --models foundry-vits-s16 "
        "foundry-vits-s1 --out runs/compare   (see README, 'Results')")
    return summary


def _label(spec) -> str:
    """A short display name (and folder name) for a model spec."""
    return Path(str(spec)).stem if Path(str(spec)).exists() else str(spec)


def _student_overrides(teacher_model, preset) -> dict:
    """Fit a student preset to the teacher's patches and width."""
    c = teacher_model.config
    return dict(teacher_width=teacher_model.token_dim, num_points=c.num_points, num_groups=c.num_groups,
                group_size=c.group_size, teacher_pooling=getattr(c, "pooling", "mean+max"),
                patch_order=getattr(c, "patch_order", "fps"))


def _bench(teacher, student_spec, points, runs, memory, log) -> dict:
    res = bench_models([str(teacher), student_spec], points=points, batch=16, runs=runs, warmup=2,
                       min_seconds=0.5, max_seconds=15.0, onnx=False, memory=memory, log=log)
    return res


def _bench_rows(bench) -> list[dict]:
    rows = []
    names = bench.get("labels", {})
    for rec in bench.get("models", []):
        rows.append({"model": names.get(rec["model"], rec["model"]),
                     "gmacs": rec["cost"]["total_macs"] / rec["cost"].get("batch", 1) / 1e9,
                     "params_m": rec["parameters"] / 1e6,
                     "lat_ms": rec.get("cpu_latency_b1", {}).get("median_s", float("nan")) * 1e3,
                     "thr": rec.get("cpu_throughput", {}).get("clouds_per_s", float("nan")),
                     "mem_mb": (rec.get("memory_b1") or {}).get("peak_extra_mb") or float("nan")})
    return rows


def summary_table(cmp, bench) -> str:
    lines = [compare_markdown(cmp), "", robustness_line(cmp), "", "| model | params (M) | GMACs | CPU latency b1 (ms) | b16 clouds/s | peak extra RSS b1 (MB) |",
             "|---|---|---|---|---|---|"]
    for r in _bench_rows(bench):
        lines.append(f"| {r['model']} | {r['params_m']:.2f} | {r['gmacs']:.3f} | {r['lat_ms']:.1f} | {r['thr']:.1f} | "
                     f"{r['mem_mb']:.0f} |")
    return "\n".join(lines)


def robustness_line(cmp) -> str:
    """The summary's robustness row: each model's corruption error relative to the teacher (mCE) and
    its accuracy under corruption and on partial views as a share of the teacher's."""
    rob = cmp.get("robustness")
    if not rob:
        return "Robustness: not run."
    parts = []
    for label, r in rob["models"].items():
        if label == cmp["teacher"]:
            continue
        ret = r["retention"]
        parts.append(f"{label} mCE {r['mce']:.2f}" if r["mce"] is not None else f"{label} mCE -")
        parts[-1] += "".join(f", {what} {ret[key]:.0f}% of the teacher" for key, what in
                             (("corrupted", "corrupted"), ("partial", "partial view")) if ret.get(key) is not None)
    fams = ", ".join(rob["families"]) + (", partial view" if "partial" in rob["models"][cmp["teacher"]]["scores"] else "")
    return (f"Robustness (quick: {fams} at severity {rob['severities']}; SVM fitted on clean clouds; teacher = 1.00): "
            + ("; ".join(parts) or "no student") + ".")


def report_markdown(cmp, bench, figs, summary) -> str:
    m = summary["machine"]
    parts = [
        "# Foundry demo report", "",
        f"Teacher `{summary['teacher']}`, student `{summary['student_label']}` (`{summary['student']}`). "
        f"Seeds {summary['seeds']}. Machine: {m['platform']}, torch {m['torch']}, {m['threads']} threads.", "",
        "Quick protocols (small subsets: numbers are noisier than the full protocols; see README). Retention: raw = "
        "% of the teacher's score; gain = share of the teacher's gain over a random-initialised network of the "
        "teacher's shape.", "",
        summary_table(cmp, bench), "",
        "Timings (s): " + ", ".join(f"{k} {v:.0f}" for k, v in summary["timings_s"].items()), "",
    ]
    for key, path in figs.items():
        parts += [f"## {FIGURE_CAPTIONS.get(key, key)}", "",
                  f"![{key}]({Path(path).relative_to(Path(summary['compare']).parents[1])})", ""]
    return "\n".join(parts)


def write_html(out, cmp, bench, figs, summary, teacher_model, smodel, seg_data, cls_data, log) -> Path | None:
    """report.html: the tables, the 3-D views (SuperTokens, token error, parts) and the figures."""
    try:
        view = student_view(teacher_model, smodel, teacher_label=_label(summary["teacher"]),
                            student_label=summary["student_label"], eval_root=out / "compare" / "evals",
                            seg={"data": seg_data, "test_split": "test"}, cls_data=cls_data)
        text = report_markdown(cmp, bench, {}, summary)
        return write_page(out / "report.html", "Foundry demo report", text, view,
                          [(FIGURE_CAPTIONS.get(k, k), p) for k, p in figs.items()])
    except Exception as exc:  # the page is an extra: report.md is written already
        log(f"(report.html not written: {exc})")
        return None


def _figures(out, cmp, bench, smodel, student_label, cls_data, seg_data, log) -> dict:
    fig_dir = out / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    figs = {}
    for key in ("pareto", "robustness"):
        src = out / "compare" / f"{key}.png"
        if src.exists():
            figs[key] = str(src)
    rows = _bench_rows(bench)
    if rows:
        figs["latency"] = str(viz.bar_chart([r["model"] for r in rows], [r["lat_ms"] for r in rows],
                                            [0.0] * len(rows), fig_dir / "latency.png", ylabel="ms per cloud",
                                            title="CPU latency, batch 1 (median)"))
    # SuperToken assignments on a few ModelNet10 test shapes
    test = load_arrays(cls_data, "test", num_points=smodel.config.num_points)
    pick = first_of_each(test["labels"], 4)
    pts = torch.from_numpy(test["points"][pick]).float()
    colours = supertoken_of_points(smodel, pts)
    if colours is not None:
        names = test["class_names"]
        figs["supertokens"] = str(viz.scatter_clouds(
            list(pts.numpy()), list(colours),
            [f"{names[test['labels'][i]]}: {len(np.unique(c))} SuperTokens used" for i, c in zip(pick, colours)],
            fig_dir / "supertokens.png", vmax=smodel.config.num_supertokens - 1,
            suptitle=f"{student_label}: SuperToken assignment"))
    # part predictions next to ground truth
    heads = sorted((out / "compare" / "evals").glob("*/heads/partseg_seed0.safetensors"))
    head_file = next((h for h in heads if h.parts[-3] == student_label), None)
    if head_file is not None:
        try:
            figs["parts"] = str(_part_figure(head_file, smodel, seg_data, fig_dir / "parts.png", student_label))
        except Exception as exc:  # a figure must never sink the demo
            log(f"(part figure skipped: {exc})")
    return figs


def _part_figure(head_file, model, seg_data, path, label):
    test = load_arrays(seg_data, "test", num_points=model.config.num_points)
    cats = test["labels"]
    pick = first_of_each(cats, 4)
    pts = test["points"][pick]
    cp = {int(k): v for k, v in test.get("category_parts", {}).items()} if test.get("category_parts") else None
    pred = part_predictions(head_file, model, label, pts, cats[pick], cp)
    gt = test["parts"][pick]
    gt, pred = local_part_ids(gt, cp), local_part_ids(pred, cp)  # each category's parts in distinct colours
    names = test["class_names"]
    titles = [f"{names[cats[i]]}: ground truth" for i in pick] + [
        f"prediction ({100 * (p == g).mean():.0f}% points)" for p, g in zip(pred, gt)]
    return viz.scatter_clouds(list(pts) + list(pts), list(gt) + list(pred), titles, path, cmap="tab10", vmax=9,
                              suptitle=f"Part segmentation, frozen {label} tokens + trained head")
