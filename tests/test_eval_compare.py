"""`foundry compare` and `foundry eval` through the CLI on tiny models: the table, retention,
the random-init floor, the plot, and resume from saved eval results."""
import json

import pytest
import torch

import foundry
from foundry.cli import main
from foundry.eval.compare import random_init_like
from foundry.validation import FoundryInputError

QUICK = ["--data", "synthetic:32", "--seg-data", "synthetic:32", "--quick", "--seeds", "0", "1", "2",
         "--set", "svm.num_points=256", "--set", "svm.train_per_class=null", "--set", "svm.test_per_class=null",
         "--set", "fewshot.num_points=256", "--set", "fewshot.settings=[[3,2]]", "--set", "fewshot.n_query=1",
         "--set", "fewshot.folds=2", "--set", "fewshot.per_class=null"]


@pytest.fixture(scope="module")
def teacher_file(tmp_path_factory):
    torch.manual_seed(3)
    path = tmp_path_factory.mktemp("w") / "teach.safetensors"
    foundry.save(foundry.create_model("tiny"), path)
    return path


def test_random_init_has_teacher_shape_and_new_weights(teacher_file):
    t = foundry.load(teacher_file)
    r = random_init_like(t, seed=0)
    assert r.config.to_dict() == t.config.to_dict()
    assert not torch.equal(r.encoder.blocks[0].attn.qkv.weight, t.encoder.blocks[0].attn.qkv.weight)
    assert torch.equal(random_init_like(t, 0).encoder.blocks[0].attn.qkv.weight, r.encoder.blocks[0].attn.qkv.weight)


def test_compare_table_retention_and_resume(teacher_file, tmp_path, capsys):
    out = tmp_path / "cmp"
    args = ["compare", "--teacher", str(teacher_file), "--models", "stu=foundry-tiny", "--protocol", "svm",
            "--protocol", "fewshot", "--out", str(out)] + QUICK
    assert main(args) == 0
    res = json.loads((out / "compare.json").read_text())
    rows = {r["label"]: r for r in res["rows"]}
    assert set(rows) == {"teach", "random-init", "stu"}
    assert rows["teach"]["group"] == "teacher" and rows["random-init"]["group"] == "random init"
    assert rows["stu"]["group"] == "Foundry student"
    key = "svm/accuracy"
    t, r, s = (rows[k]["scores"][key]["mean"] for k in ("teach", "random-init", "stu"))
    assert rows["stu"]["retention_raw"][key] == pytest.approx(100 * s / t)
    if abs(t - r) > 1e-9:
        assert rows["stu"]["retention_gain"][key] == pytest.approx(100 * (s - r) / (t - r))
    assert rows["teach"]["retention_raw"][key] == pytest.approx(100.0)
    assert all(row["gmacs"] > 0 for row in rows.values())
    assert (out / "pareto.png").stat().st_size > 1000
    page = (out / "report.html").read_text()  # the interactive page: tables + the student's 3-D view
    assert "<table>" in page and '"scenes":["scene","scene2"]' in page
    md = (out / "compare.md").read_text()
    assert "| stu | Foundry student |" in md and "gain" in md
    assert res["mismatches"] == [] and "same protocol settings and the same data" in md
    assert "acc_3w2s" in rows["stu"]["fewshot_paired"]
    from foundry.eval.compare import compare_markdown
    assert res["split"] == "test" and md.startswith("# foundry compare (teacher: teach, test split)")
    val_md = compare_markdown({**res, "split": "val"})  # a validation run says so, also where it resamples
    assert "validation split" in val_md.splitlines()[0] and "test" not in val_md.split("## Paired")[-1].split("\n\n")[1]

    # rerun: every (protocol, seed) comes from the saved eval results, also from a folder given by --reuse
    (out / "evals" / "stu").rename(tmp_path / "stu-eval")
    capsys.readouterr()
    assert main(args + ["--reuse", f"stu={tmp_path / 'stu-eval'}"]) == 0
    log = capsys.readouterr().out
    assert "running" not in log and log.count("skipped") == 3 * 2 * 3
    # --pair-with: every model also paired with one of them (the best student of a study), from the saved results
    assert main(args + ["--reuse", f"stu={tmp_path / 'stu-eval'}", "--pair-with", "stu"]) == 0
    res = json.loads((out / "compare.json").read_text())
    rows = {r["label"]: r for r in res["rows"]}
    assert res["pair_with"] == "stu" and "paired_with" not in rows["stu"]
    assert set(rows["teach"]["paired_with"]) >= {"svm/accuracy", "fewshot/acc_3w2s"}
    assert "## Paired with stu" in (out / "compare.md").read_text()
    with pytest.raises(FoundryInputError, match="pair-with"):
        from foundry.eval.compare import run_compare
        run_compare(teacher_file, [], tmp_path / "x", protocols=("svm",), quick=True, include_random=False,
                    pair_with="nobody", overrides={"svm": {"data": "synthetic:32"}}, log=lambda *a: None)


def test_compare_skips_fidelity_for_the_random_floor(teacher_file, tmp_path):
    out = tmp_path / "fid"
    assert main(["compare", "--teacher", str(teacher_file), "--models", "stu=foundry-tiny", "--protocol", "svm",
                 "--protocol", "fidelity", "--out", str(out)] + QUICK) == 0
    rows = {r["label"]: r for r in json.loads((out / "compare.json").read_text())["rows"]}
    assert "fidelity/cosine" in rows["stu"]["scores"] and rows["teach"]["scores"]["fidelity/cosine"]["mean"] == pytest.approx(1.0)
    # the floor only serves the gain share of task scores
    assert list(rows["random-init"]["scores"]) == ["svm/accuracy"]


def test_eval_cli_bad_model_and_bad_set(tmp_path, capsys):
    assert main(["eval", "no-such-model", "-p", "svm", "--out", str(tmp_path)]) == 2
    assert "no model named" in capsys.readouterr().err
    assert main(["eval", "tiny", "-p", "svm", "--set", "svm-epochs", "--out", str(tmp_path)]) == 2
    assert "PROTOCOL.KEY=VALUE" in capsys.readouterr().err


def test_eval_into_a_compare_run_shares_its_cache(teacher_file, tmp_path, capsys):
    """`foundry eval --out OUT/evals/<label> --cache-dir OUT/cache` does part of a comparison in another
    process: the compare then reuses every seed it finished."""
    out = tmp_path / "cmp"
    student = tmp_path / "stu.safetensors"
    torch.manual_seed(1)
    foundry.save(foundry.create_model("foundry-tiny"), student)
    assert main(["eval", str(student), "-p", "svm", "--reference", str(teacher_file), "--out",
                 str(out / "evals" / "stu"), "--cache-dir", str(out / "cache")] + QUICK) == 0
    assert list((out / "cache").glob("features_*"))
    capsys.readouterr()
    assert main(["compare", "--teacher", str(teacher_file), "--models", f"stu={student}", "-p", "svm", "--no-random",
                 "--out", str(out)] + QUICK) == 0
    log = capsys.readouterr().out
    assert log.count("done before, skipped") == 3 and log.count("running on stu") == 0


def test_reuse_labels_may_be_run_time_specs():
    from foundry.commands.compare import _label_pairs

    assert _label_pairs(["foundry-vits-s16@outliers=1=/runs/e"], "--reuse", "DIR") == {
        "foundry-vits-s16@outliers=1": "/runs/e"}
    assert _label_pairs(["gate-r8=/runs/g"], "--reuse", "DIR") == {"gate-r8": "/runs/g"}
    with pytest.raises(FoundryInputError, match="LABEL=DIR"):
        _label_pairs(["/runs/e"], "--reuse", "DIR")


def test_partseg_by_category_pairs_each_categorys_shapes():
    """The per-category part-segmentation table: each category's shapes resampled on their own, the
    category names in index order as the protocol records them, and the compare.md section."""
    from foundry.eval.compare import compare_markdown
    from foundry.eval.paired import partseg_by_category

    cats = [0, 0, 0, 0, 1, 1, 1, 1]
    def entry(ious):
        return {"details": {str(s): {"shape_iou": ious, "shape_category": cats,
                                     "per_category_miou": {"pin": 0.0, "cap": 0.0}} for s in (0, 1)}}
    teacher = entry([0.8, 0.7, 0.9, 0.6, 0.5, 0.5, 0.6, 0.4])
    student = entry([0.6, 0.5, 0.7, 0.4, 0.5, 0.5, 0.6, 0.4])  # 20 points lower on "pin", equal on "cap"
    by_cat = partseg_by_category(student, teacher)
    assert list(by_cat) == ["pin", "cap"]
    n, t, pin = by_cat["pin"]
    assert n == 4 and t == pytest.approx(75.0)
    assert pin["difference"]["estimate"] == pytest.approx(-20.0) and not pin["within_noise"]
    assert by_cat["cap"][2]["difference"]["estimate"] == pytest.approx(0.0) and by_cat["cap"][2]["within_noise"]
    assert partseg_by_category({"details": {}}, teacher) == {}

    row = {"label": "stu", "group": "Foundry student", "parameters": 1e6, "gmacs": 0.1, "macs_points": 1024,
           "scores": {}, "retention_raw": {}, "retention_gain": {},
           "partseg_by_category": {k: {"shapes": n, "teacher": t, "paired": iv} for k, (n, t, iv) in by_cat.items()}}
    md = compare_markdown({"columns": [], "rows": [row], "teacher": "teach", "seeds": [0, 1], "quick": False,
                           "mismatches": []})
    assert "## Part segmentation by category, paired with the teacher" in md
    assert "| pin | 4 | 75.0 | **-20.00" in md and "| cap | 4 | 50.0 | 0.00" in md
