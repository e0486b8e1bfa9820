"""The demo end to end at a tiny size: distil, evaluate, benchmark, report."""
import json

import foundry
from foundry.demo import run_demo


def test_demo_end_to_end_tiny(tmp_path):
    teacher = foundry.create_model("tiny")
    tpath = foundry.save(teacher, tmp_path / "teacher.safetensors", info={"role": "test teacher"})
    small = {"train_per_class": 3, "test_per_class": 3, "num_points": 256}
    overrides = {"svm": dict(small), "fewshot": {"per_class": 8, "settings": [[3, 2]], "n_query": 3, "folds": 2,
                                                  "num_points": 256},
                 "partseg": dict(small, epochs=1), "fidelity": {"per_class": 2, "num_points": 256},
                 "robustness": dict(small, families=["add_global"])}
    lines = []
    summary = run_demo(tmp_path / "demo", teacher=str(tpath), preset="foundry-tiny", epochs=1, limit=16,
                       batch_size=8, seeds=(0, 1), data=("synthetic:16",), overrides=overrides,
                       seg_data="synthetic:40", cls_data="synthetic:40", bench_points=256, bench_runs=2,
                       bench_memory=False, log=lines.append)
    out = tmp_path / "demo"
    report = (out / "report.md").read_text()
    assert "| teacher" in report or "teacher.safetensors" in report or str(tpath.stem) in report
    for fig in ("pareto", "robustness", "latency", "supertokens", "parts"):
        assert fig in summary["figures"], f"missing figure {fig}"
        assert (out / "figures").exists()
    for path in summary["figures"].values():
        data = open(path, "rb").read(8)
        assert data.startswith(b"\x89PNG")
    page = (out / "report.html").read_text()  # tables, 3-D views (SuperTokens, error, parts) and the figures
    assert summary["html"] == str(out / "report.html") and page.count("<img alt=") == 5
    assert "parts: ground truth" in page and "parts: teacher (" in page and "<table>" in page
    saved = json.loads((out / "report.json").read_text())
    assert saved["student"].endswith("student.safetensors")
    student = foundry.load(saved["student"])
    assert student.kind == "student"
    text = "\n".join(str(x) for x in lines)
    assert "[5/5] summary" in text and "report.md" in text
    assert "Robustness (quick: add_global, partial view at severity [3]" in report and " mCE " in report
