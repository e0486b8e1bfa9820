"""scripts/s_sweep.py: which compare rows are sweep points, and where the curve flattens."""
import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "s_sweep.py"
spec = importlib.util.spec_from_file_location("s_sweep", SCRIPT)
s_sweep = importlib.util.module_from_spec(spec)
spec.loader.exec_module(s_sweep)


def _row(label, group="Foundry student", high=None):
    row = {"label": label, "group": group, "gmacs": 0.1, "scores": {"svm/accuracy": {"mean": 90.0, "std": 0.1}}}
    if high is not None:
        row["paired_with"] = {"svm/accuracy": {"difference": {"estimate": 0.0, "low": -1.0, "high": high}},
                              "fidelity/cosine": {"difference": {"estimate": -0.1, "low": -0.2, "high": -0.1}}}
    return row


def test_sweep_rows_and_where_the_curve_flattens():
    compare = {"rows": [_row("teacher-vits", "teacher"), _row("random-init", "random init"),
                        _row("w192-t192-s2-seed0", high=-0.5), _row("foundry-vits-s8", high=0.3),
                        _row("w192-t192-seed0", high=0.2), _row("foundry-vits-s32", high=0.0)]}
    rows = s_sweep.sweep_rows([compare], default_s=16)
    assert list(rows) == [2, 8, 16, 32]
    # s = 2 is below s = 32 on a task; s = 8 is within noise on every task (fidelity does not count)
    assert s_sweep.flattens_at(rows, 32) == 8
    assert "| 8 | 0.100 |" in s_sweep.table(rows, ["svm/accuracy"])
