"""Training seeds pooled in the paired bootstrap (foundry.eval.paired) and scripts/training_seeds.py's table."""
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from foundry.eval.paired import matched_rows, paired_interval, pooled_item_scores, seed_and_item_interval
from foundry.validation import FoundryInputError

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "training_seeds.py"
spec = importlib.util.spec_from_file_location("training_seeds", SCRIPT)
training_seeds = importlib.util.module_from_spec(spec)
spec.loader.exec_module(training_seeds)


def _svm(correct_per_seed):
    acc = [100.0 * c.count("1") / len(c) for c in correct_per_seed]
    return {"settings": {"num_points": 8}, "data_checksums": {"test": "abc"},
            "details": {str(s): {"correct": c} for s, c in enumerate(correct_per_seed)},
            "summary": {"accuracy": {"mean": float(np.mean(acc)), "std": float(np.std(acc)), "n": len(acc)}}}


def _write(folder: Path, correct_per_seed, **extra) -> str:
    folder.mkdir(parents=True)
    res = {"finished": "2026-12-08T00:00:00+00:00", "protocols": {"svm": _svm(correct_per_seed)}}
    for k, v in extra.items():
        res["protocols"]["svm"]["settings"][k] = v
    (folder / "results.json").write_text(json.dumps(res))
    return str(folder)


def test_pooled_scores_stack_every_run_and_a_single_run_tiles_to_match():
    a, b = _svm(["1100", "1110"]), _svm(["1111", "0000"])
    scores, agg = pooled_item_scores([a, b], "accuracy")
    assert scores.shape == (4, 4)
    assert agg(scores).mean() == pytest.approx(np.mean([50, 75, 100, 0]))
    teacher = pooled_item_scores([_svm(["1111", "1111"])], "accuracy")
    tiled = matched_rows(teacher[0], 4)
    assert tiled.shape == (4, 4) and tiled.mean() == teacher[0].mean()
    iv = paired_interval((scores, agg), (tiled, teacher[1]), n_boot=200)
    assert iv["seeds"] == 4 and iv["difference"]["estimate"] == pytest.approx(56.25 - 100)
    with pytest.raises(ValueError):
        matched_rows(teacher[0], 3)
    assert pooled_item_scores([a, _svm(["11", "10"])], "accuracy") is None  # other items


def test_script_table_pairs_recipes_seed_by_seed(tmp_path, capsys):
    t = _write(tmp_path / "teacher", ["1111", "1110"])
    a = [_write(tmp_path / f"a{k}", ["1110", "1110"]) for k in range(2)]
    b = [_write(tmp_path / f"b{k}", ["1100", "1110"]) for k in range(2)]
    out = tmp_path / "t.md"
    assert training_seeds.main(["--teacher", t, "--model", "a=" + ",".join(a), "--model", "b=" + ",".join(b),
                                "--pair-with", "a", "--out", str(out)]) == 0
    text = out.read_text()
    assert "| b | SVM | 87.50 | 62.50 / 62.50 | 62.50 +- 0.00 |" in text
    rows = json.loads(out.with_suffix(".json").read_text())["rows"]
    assert rows[1]["vs_other"]["difference"]["estimate"] == pytest.approx(-12.5)
    with pytest.raises(FoundryInputError, match="exists"):
        training_seeds.main(["--teacher", t, "--model", "a=" + a[0], "--out", str(out)])
    odd = _write(tmp_path / "odd", ["1110", "1110"], num_points=16)
    with pytest.raises(FoundryInputError, match="other settings"):
        training_seeds.main(["--teacher", t, "--model", "a=" + odd])


def _mean(scores, idx=None):
    return (scores if idx is None else scores[:, idx]).mean(axis=1)


def test_two_level_interval_holds_the_training_seeds_spread():
    rng = np.random.default_rng(0)
    base = rng.random((3, 400)) < 0.8
    # three training seeds that disagree by +-3 points; the items alone would call +3 certain
    runs = [100.0 * (base | (rng.random((3, 400)) < shift)) for shift in (0.0, 0.15, 0.3)]
    teacher = [100.0 * base]
    iv = seed_and_item_interval(runs, teacher, _mean, n_boot=300)
    pooled = paired_interval((np.concatenate(runs), _mean), (matched_rows(teacher[0], 9), _mean), n_boot=300)
    width = lambda d: d["difference"]["high"] - d["difference"]["low"]  # noqa: E731
    assert iv["difference"]["estimate"] == pytest.approx(pooled["difference"]["estimate"])
    assert width(iv) > 2 * width(pooled)
    assert iv["runs"] == [3, 1]


def test_script_adds_the_two_level_column_from_three_seeds(tmp_path):
    t = _write(tmp_path / "teacher", ["1111", "1110"])
    a = [_write(tmp_path / f"a{k}", ["1110", "1100"]) for k in range(3)]
    b = [_write(tmp_path / f"b{k}", [c, "1110"]) for k, c in enumerate(["1100", "1110", "1000"])]
    out = tmp_path / "t.md"
    training_seeds.main(["--teacher", t, "--model", "a=" + ",".join(a), "--model", "b=" + ",".join(b),
                         "--pair-with", "a", "--out", str(out)])
    assert "(items + seeds)" in out.read_text()
    rows = json.loads(out.with_suffix(".json").read_text())["rows"]
    assert rows[1]["vs_other_seeds"]["runs"] == [3, 3]
