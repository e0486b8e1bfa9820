"""The HTML pages `foundry demo` and `foundry compare` write beside their Markdown (report.html).

Both show the comparison's tables, its figures, and one 3-D view of a few test clouds for the
first SuperToken student against the teacher: on the part-segmentation data when `partseg` ran
(ground truth and the saved heads' predictions beside the SuperTokens and the token error),
else on the classification data.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..data import load_arrays
from ..eval.runner import load_model
from .html import write_html_report
from .views import cloud_views


def first_of_each(labels: np.ndarray, count: int) -> list[int]:
    """Index of the first cloud of each of the first `count` classes (one shape per class)."""
    return [int(np.flatnonzero(labels == c)[0]) for c in np.unique(labels)[:count]]


def student_view(teacher, student, *, teacher_label: str, student_label: str, eval_root, seg: dict | None,
                 cls_data: str | None, clouds: int = 4) -> tuple[dict, str] | None:
    """(view, caption) for the 3-D block, or None when there is nothing to show.

    eval_root: the compare folder's evals/ (heads in <label>/heads/partseg_seed0.safetensors);
    seg: the partseg settings (data, test_split, num_points) when that protocol ran."""

    num_points = student.config.num_points
    if seg:
        arrays = load_arrays(seg["data"], seg.get("test_split", "test"), num_points=num_points)
        pick = first_of_each(arrays["labels"], clouds)
        cp = arrays.get("category_parts")
        cp = {int(k): v for k, v in cp.items()} if cp else None
        heads = {label: Path(eval_root) / label / "heads" / "partseg_seed0.safetensors"
                 for label in (teacher_label, student_label)}
        names = arrays["class_names"]
        view = cloud_views(student, teacher, arrays["points"][pick], [f"{names[arrays['labels'][i]]} #{i}" for i in pick],
                           student_label=student_label, teacher_label=teacher_label, parts=arrays["parts"][pick],
                           categories=arrays["labels"][pick], category_parts=cp,
                           teacher_head=heads[teacher_label] if heads[teacher_label].exists() else None,
                           student_head=heads[student_label] if heads[student_label].exists() else None)
        return view, (f"{seg['data']} {seg.get('test_split', 'test')} shapes. Student `{student_label}`: its SuperTokens "
                      f"and its token error against the teacher `{teacher_label}`; then part labels: ground truth and "
                      "the predictions of teacher and student (frozen tokens + the partseg head of seed 0).")
    if cls_data:
        arrays = load_arrays(cls_data, "test", num_points=num_points)
        pick = first_of_each(arrays["labels"], clouds)
        names = arrays["class_names"]
        view = cloud_views(student, teacher, arrays["points"][pick], [f"{names[arrays['labels'][i]]} #{i}" for i in pick],
                           student_label=student_label, teacher_label=teacher_label)
        return view, (f"{cls_data} test shapes. Student `{student_label}`: its SuperTokens and its token error "
                      f"against the teacher `{teacher_label}`.")
    return None


def write_page(path, title: str, markdown: str, view: tuple[dict, str] | None, figures: list[tuple[str, str]]) -> Path:
    """markdown first, then the 3-D view, then the PNG figures [(caption, path)]."""
    lines = markdown.splitlines()
    if lines and lines[0].lstrip("# ").strip() == title:  # the page's own title is the h1 already
        markdown = "\n".join(lines[1:])
    blocks = [{"markdown": markdown}]
    if view is not None:
        blocks.append({"view": view[0], "caption": view[1]})
    blocks += [{"image": p, "caption": c} for c, p in figures]
    return write_html_report(path, title, blocks)


def write_compare_page(out_dir, result: dict, *, log=print) -> Path | None:
    """report.html for a `foundry compare` folder (never fails the comparison: problems are logged)."""

    out = Path(out_dir)
    try:
        rows = {r["label"]: r for r in result["rows"]}
        teacher_row = rows[result["teacher"]]
        student_row = next((r for r in result["rows"] if r["kind"] == "student"), None)
        view = None
        if student_row is not None:
            (teacher, _), (student, _) = load_model(teacher_row["spec"]), load_model(student_row["spec"])
            settings = result.get("settings", {})
            cls = next((settings[p]["data"] for p in ("svm", "fewshot", "fidelity") if p in settings), None)
            view = student_view(teacher, student, teacher_label=teacher_row["label"], student_label=student_row["label"],
                                eval_root=out / "evals", seg=settings.get("partseg"), cls_data=cls)
        markdown = (out / "compare.md").read_text()
        figures = [("Score against GMACs (Pareto view)", str(out / "pareto.png"))]
        if (out / "robustness.png").exists() and result.get("robustness"):
            figures.append(("Accuracy under corruption, by severity", str(out / "robustness.png")))
        return write_page(out / "report.html", f"Foundry compare: {result['teacher']} and its compressions",
                          markdown, view, figures)
    except Exception as exc:  # the page is an extra: the comparison itself is already written
        log(f"(report.html not written: {exc})")
        return None
