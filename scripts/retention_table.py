"""One retention table for several teacher/student pairs, from their `foundry compare` outputs.

    python scripts/retention_table.py docs/results/A/compare.json:foundry-vits-s16 \
        docs/results/B/compare.json:foundry-small-s16 ... [--out table.md]

For each pair (the compare's teacher and the named student row): teacher and student score per task
(mean over seeds), the student's raw retention (score / teacher) and gain share ((score - floor) /
(teacher - floor)) with their paired 95% intervals as `foundry compare` computed them, and the goals
(default >= 98% raw, >= 90% of the gain; `--raw-goal` / `--gain-goal` set others, e.g. the re-shipped s4's
97 / 85) judged on those intervals: met (the whole interval reaches the goal), within noise of the goal, or
missed; the worse of the two per row (a row without an interval is judged on its point estimate, marked so).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from foundry.eval.paired import GOAL_VERDICTS, fmt_interval, goal_verdict

TASKS = [("svm/accuracy", "SVM"), ("fewshot/acc_5w10s", "5w10s"), ("fewshot/acc_5w20s", "5w20s"),
         ("fewshot/acc_10w10s", "10w10s"), ("fewshot/acc_10w20s", "10w20s"), ("partseg/class_miou", "part cls mIoU"),
         ("partseg/instance_miou", "part inst mIoU"), ("transfer/accuracy", "teacher's classifier"),
         ("transfer/instance_miou", "teacher's part head")]
RAW_GOAL, GAIN_GOAL = 98.0, 90.0


def _cell(paired: dict | None, stat: str, point: float | None) -> str:
    """The paired interval of `stat` where the compare has one, else the compare's point retention."""
    if paired:
        return fmt_interval(paired[stat]) if stat in paired else "-"
    return "-" if point is None else f"{point:.1f}"


def _judge(paired: dict | None, stat: str, point: float, goal: float) -> str:
    if paired and stat in paired:
        return goal_verdict(paired[stat], goal)
    return ("met" if point >= goal else "missed") + " (point)"


def rows_of(path: Path, student: str, raw_goal: float = RAW_GOAL, gain_goal: float = GAIN_GOAL) -> list[str]:
    d = json.loads(path.read_text())
    rows = {r["label"]: r for r in d["rows"]}
    teacher = next(r for r in d["rows"] if r["group"] == "teacher")
    floor = rows.get("random-init")
    s = rows[student]
    out = []
    for key, name in TASKS:
        if key not in s["scores"]:
            continue
        t_score = teacher["scores"][key]["mean"]
        f_score = floor["scores"].get(key, {}).get("mean") if floor else None
        p = s["paired"].get(key)
        raw = _cell(p, "raw", s["retention_raw"][key])
        gain = _cell(p, "gain", s["retention_gain"].get(key))
        judged = [_judge(p, "raw", s["retention_raw"][key], raw_goal)]
        if key in s["retention_gain"]:
            judged.append(_judge(p, "gain", s["retention_gain"][key], gain_goal))
        worst = min(judged, key=lambda v: GOAL_VERDICTS.index(v.removesuffix(" (point)")))
        out.append(f"| {teacher['label']} -> {student} | {teacher['gmacs']:.3f} -> {s['gmacs']:.3f} | {name} | "
                   f"{t_score:.2f} | {'-' if f_score is None else f'{f_score:.2f}'} | {s['scores'][key]['mean']:.2f} | "
                   f"{raw} | {gain} | {worst} |")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("pairs", nargs="+", metavar="COMPARE_JSON:STUDENT")
    ap.add_argument("--out", default=None)
    ap.add_argument("--raw-goal", type=float, default=RAW_GOAL, help="raw retention goal in %% (default %(default)s)")
    ap.add_argument("--gain-goal", type=float, default=GAIN_GOAL, help="gain-share goal in %% (default %(default)s)")
    args = ap.parse_args()
    lines = ["| teacher -> student | GMACs | task | teacher | random init | student | raw % [95%] | gain % [95%] | "
             f">= {args.raw_goal:g}% raw, >= {args.gain_goal:g}% gain |", "|---|---|---|---|---|---|---|---|---|"]
    for pair in args.pairs:
        path, _, student = pair.rpartition(":")
        lines += rows_of(Path(path), student, args.raw_goal, args.gain_goal)
    text = "\n".join(lines) + "\n"
    if args.out:
        Path(args.out).write_text(text)
    print(text, end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
