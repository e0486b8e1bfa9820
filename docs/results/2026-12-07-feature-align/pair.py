"""The feature-aligned JEPA students paired with the unaligned one and with the teacher, on the global-feature
tasks (own SVM, the teacher's SVM on the student = transfer, few-shot), the seeds and clouds / folds kept paired.

    python docs/results/2026-12-07-feature-align/pair.py SPLIT TEACHER_EVAL BASE_EVAL FLOOR_EVAL|- VARIANT_EVAL...

Each *_EVAL is a `foundry eval` folder (results.json); FLOOR_EVAL the random-init floor's (- for none). Prints
estimate [95% interval] of variant - base (points), of variant / teacher (raw retention, %) and, with a floor, of
the variant's gain share (variant - floor) / (teacher - floor) in %."""
import json
import sys
from pathlib import Path

from foundry.eval.paired import item_scores, paired_interval

METRICS = [("svm", "accuracy"), ("transfer", "accuracy"), ("fewshot", "acc_5w10s"), ("fewshot", "acc_5w20s"),
           ("fewshot", "acc_10w10s"), ("fewshot", "acc_10w20s")]


def load(folder):
    return json.loads((Path(folder) / "results.json").read_text())["protocols"]


def fmt(s, key):
    v = s[key]
    return f"{v['estimate']:.2f} [{v['low']:.2f}, {v['high']:.2f}]"


def main(split, teacher, base, floor, *variants):
    t, b = load(teacher), load(base)
    f = None if floor == "-" else load(floor)
    print(f"split {split}; teacher {teacher}; base {base}")
    for v in variants:
        m = load(v)
        print(f"\n{v}")
        print("| metric | variant | base | teacher | variant - base | variant / teacher % | base / teacher % | "
              "variant gain % |")
        print("|---|---|---|---|---|---|---|---|")
        for proto, metric in METRICS:
            if proto not in m or proto not in b or proto not in t:
                continue
            ms, bs, ts = (item_scores(x[proto], metric) for x in (m, b, t))
            vb = paired_interval(ms, bs)
            fs = item_scores(f[proto], metric) if f is not None and proto in f else None
            vt = paired_interval(ms, ts, fs)
            bt = paired_interval(bs, ts)
            mean = lambda s: s[1](s[0]).mean()  # noqa: E731
            print(f"| {proto}/{metric} | {mean(ms):.2f} | {mean(bs):.2f} | {mean(ts):.2f} | {fmt(vb, 'difference')} | "
                  f"{fmt(vt, 'raw')} | {fmt(bt, 'raw')} | {fmt(vt, 'gain') if 'gain' in vt else '-'} |")


if __name__ == "__main__":
    main(*sys.argv[1:])
