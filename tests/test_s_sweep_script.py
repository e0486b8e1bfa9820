"""scripts/s_sweep.py: which compare rows are sweep points, and where the curve flattens."""
import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "s_sweep.py"
spec = importlib.util.spec_from_file_location("s_sweep", SCRIPT)
s_sweep = importlib.util.module_from_spec(spec)
spec.loader.exec_module(s_sweep)


def _row(label, group="Foundry student"):
    return {"label": label, "group": group, "gmacs": 0.1, "scores": {"svm/accuracy": {"mean": 90.0, "std": 0.1}}}


def _iv(high):
    return {"difference": {"estimate": high - 0.5, "low": high - 1.0, "high": high}}


def test_sweep_rows_and_where_the_curve_flattens():
    compare = {"rows": [_row("teacher-vits", "teacher"), _row("random-init", "random init"),
                        _row("w192-t192-s2-seed0"), _row("foundry-vits-s8"), _row("w192-t192-seed0"),
                        _row("w192-s4-seed0"), _row("foundry-vits-s32")]}
    rows = s_sweep.sweep_rows([compare], default_s=16, only="^(w192-t192|foundry-vits)")
    assert list(rows) == [2, 8, 16, 32]  # w192-s4 is another recipe
    # s = 2 is below s = 32 on a task; s = 8 within noise on every task
    against = {2: {"svm/accuracy": _iv(-0.5), "fewshot/acc_5w10s": _iv(0.2)}, 8: {"svm/accuracy": _iv(0.3)},
               16: {"svm/accuracy": _iv(0.2)}, 32: {}}
    assert s_sweep.flattens_at(against) == 8
    assert s_sweep.below_count(against[2]) == (1, 2)
    against[8] = {"svm/accuracy": _iv(-0.1)}
    assert s_sweep.flattens_at(against) == 16
    assert s_sweep.flattens_at({2: {"svm/accuracy": _iv(-1)}, 32: {}}) is None
    assert "| 8 | 0.100 |" in s_sweep.table(rows, ["svm/accuracy"])
